"""The figures the status page and the dashboard show: deliveries per state, backlogs and
deliveries in flight per endpoint, ordered heads, each endpoint's last success and failure,
attempts per hour, and the daemons sharing the outbox."""

from __future__ import annotations

import os
import socket
import time

from tests.contract.build import NOW, attempt, claim, endpoints, event, finish, settle
from tests.contract.conftest import Opener, Place
from tillhook.models import DeliveryState
from tillhook.store.port import Backlog, EndpointStats, Outbox


async def test_count_by_state_leaves_out_states_without_any(outbox: Outbox) -> None:
    assert await outbox.count_by_state() == {}
    shop, stock = await endpoints(outbox, "shop", "stock")
    await outbox.enqueue([event(f"msg_{i}", [shop.id, stock.id], at=NOW - 100 + i) for i in range(5)])
    assert await outbox.count_by_state() == {DeliveryState.PENDING: 10}
    one, two, three, four = await claim(outbox, {shop.id: 4})
    await finish(outbox, one, DeliveryState.DELIVERED)
    await finish(outbox, two, DeliveryState.DELIVERED)
    await finish(outbox, three, DeliveryState.FAILED)
    assert await outbox.count_by_state() == {
        DeliveryState.PENDING: 6,
        DeliveryState.DELIVERING: 1,
        DeliveryState.DELIVERED: 2,
        DeliveryState.FAILED: 1,
    }
    await outbox.delete_endpoint(stock.id, NOW)
    assert await outbox.count_by_state() == {
        DeliveryState.PENDING: 1,
        DeliveryState.DELIVERING: 1,
        DeliveryState.DELIVERED: 2,
        DeliveryState.FAILED: 1,
        DeliveryState.CANCELLED: 5,
    }
    await finish(outbox, four, DeliveryState.DELIVERED)
    assert (await outbox.count_by_state()).get(DeliveryState.DELIVERING) is None


async def test_pending_by_endpoint_and_the_oldest_pending(outbox: Outbox) -> None:
    shop, stock, idle = await endpoints(outbox, "shop", "stock", "idle")
    assert await outbox.pending_by_endpoint() == {}
    assert await outbox.oldest_pending([shop.id, stock.id, idle.id]) is None
    await outbox.enqueue([event(f"msg_{i}", [shop.id], at=NOW - 300 + i) for i in range(3)])
    await outbox.enqueue([event(f"msg_{i}", [stock.id], at=NOW - 200 + i) for i in range(3, 5)])
    assert await outbox.pending_by_endpoint() == {
        shop.id: Backlog(pending=3, oldest_created_at=NOW - 300),
        stock.id: Backlog(pending=2, oldest_created_at=NOW - 197),
    }
    assert await outbox.oldest_pending([shop.id, stock.id, idle.id]) == (shop.id, NOW - 300)
    assert await outbox.oldest_pending([stock.id, idle.id]) == (stock.id, NOW - 197)
    assert await outbox.oldest_pending([idle.id]) is None
    # In flight is no longer pending: the backlog is what waits.
    (first,) = await claim(outbox, {shop.id: 1})
    assert (await outbox.pending_by_endpoint())[shop.id] == Backlog(pending=2, oldest_created_at=NOW - 299)
    assert await outbox.oldest_pending([shop.id]) == (shop.id, NOW - 299)
    await finish(outbox, first, DeliveryState.DELIVERED)
    rest = await claim(outbox, {stock.id: 2})
    for delivery in rest:
        await finish(outbox, delivery, DeliveryState.DELIVERED)
    assert set(await outbox.pending_by_endpoint()) == {shop.id}


async def test_in_flight_by_endpoint_counts_what_is_delivering(outbox: Outbox) -> None:
    shop, stock, _idle = await endpoints(outbox, "shop", "stock", "idle")
    assert await outbox.in_flight_by_endpoint() == {}
    await outbox.enqueue([event(f"msg_{i}", [shop.id, stock.id], at=NOW - 100 + i) for i in range(4)])
    assert await outbox.in_flight_by_endpoint() == {}  # waiting is not in flight
    claimed = await claim(outbox, {shop.id: 3, stock.id: 1})
    # Started at ingest is in flight as much as claimed.
    started = (await outbox.enqueue([event("msg_now", [stock.id])], start=[[True]])).started
    assert len(started) == 1
    assert await outbox.in_flight_by_endpoint() == {shop.id: 3, stock.id: 2}
    one, two, three = [d for d in claimed if d.endpoint_id == shop.id]
    await finish(outbox, one, DeliveryState.DELIVERED)
    await finish(outbox, two, DeliveryState.PENDING, retry_at=NOW + 60)  # to be tried again: waiting
    await finish(outbox, three, DeliveryState.FAILED)
    assert await outbox.in_flight_by_endpoint() == {stock.id: 2}
    assert await outbox.requeue_in_flight(NOW) == 2
    assert await outbox.in_flight_by_endpoint() == {}


async def test_the_daemons_are_those_sharing_the_outbox(outbox: Outbox, opened: Opener, place: Place) -> None:
    if not place.shared:
        # Kept by one daemon, shared with nobody.
        assert await outbox.daemons(time.time()) == []
        return
    (me,) = await outbox.daemons(time.time())
    assert (me.live, me.pid, me.host) == (True, os.getpid(), socket.gethostname())
    assert me.started_at <= me.seen_at <= time.time()
    (later,) = await outbox.daemons(me.seen_at + 86400)  # long after its last beat: its lease ran out
    assert (later.id, later.live) == (me.id, False)
    other = await opened()
    first, second = await other.daemons(time.time())  # each adapter sees both, oldest started first
    assert first.id == me.id and second.id != me.id and second.live and second.started_at >= me.started_at
    assert [d.id for d in await outbox.daemons(time.time())] == [me.id, second.id]
    await other.close()  # a daemon that stops leaves
    assert [d.id for d in await outbox.daemons(time.time())] == [me.id]


async def test_ordered_heads_are_the_oldest_unfinished(outbox: Outbox) -> None:
    shop, idle = await endpoints(outbox, "shop", "idle", ordered=True)
    await outbox.enqueue([event(f"msg_{i}", [shop.id], at=NOW - 100 + i) for i in range(3)])
    heads = await outbox.ordered_heads([shop.id, idle.id])
    assert set(heads) == {shop.id}
    head = heads[shop.id]
    assert (head.event_id, head.state, head.attempts, head.next_attempt_at) == (
        "msg_0",
        DeliveryState.PENDING,
        0,
        NOW - 100,
    )
    (claimed,) = await claim(outbox, {shop.id: 1}, ordered=[shop.id])
    in_flight = (await outbox.ordered_heads([shop.id]))[shop.id]
    assert (in_flight.id, in_flight.state) == (claimed.id, DeliveryState.DELIVERING)
    await finish(outbox, claimed, DeliveryState.DELIVERED)
    assert (await outbox.ordered_heads([shop.id]))[shop.id].event_id == "msg_1"


async def test_endpoint_stats_keep_the_last_success_and_failure(outbox: Outbox) -> None:
    shop, stock = await endpoints(outbox, "shop", "stock")
    await outbox.enqueue([event(f"msg_{i}", [shop.id], at=NOW - 100 + i) for i in range(3)])
    one, two, three = await claim(outbox, {shop.id: 3})
    await settle(outbox, attempt(one, DeliveryState.DELIVERED, at=NOW + 1))
    await settle(
        outbox,
        attempt(two, DeliveryState.PENDING, at=NOW + 2, status=None, error="connection refused", retry_at=NOW + 60),
    )
    stats = await outbox.endpoint_stats()
    assert stats[shop.id] == EndpointStats(
        last_success_at=NOW + 1, last_failure_at=NOW + 2, last_failure_reason="connection refused"
    )
    assert stats.get(stock.id, EndpointStats(None, None, None)) == EndpointStats(None, None, None)
    await settle(outbox, attempt(three, DeliveryState.FAILED, at=NOW + 3, status=500))
    later = (await outbox.endpoint_stats())[shop.id]
    assert (later.last_success_at, later.last_failure_at) == (NOW + 1, NOW + 3)
    assert later.last_failure_reason is not None and "500" in later.last_failure_reason


async def test_attempts_are_counted_per_hour(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    hour = 3600.0
    top = NOW - NOW % hour  # the current hour began here
    await outbox.enqueue([event(f"msg_{i}", [shop.id], at=top - 2 * hour) for i in range(4)])
    one, two, three, four = await claim(outbox, {shop.id: 4}, now=top - 2 * hour)
    await settle(outbox, attempt(one, DeliveryState.DELIVERED, at=top - 2 * hour + 5))
    await settle(outbox, attempt(two, DeliveryState.PENDING, at=top - 2 * hour + 6, status=500, retry_at=top + 10))
    await settle(outbox, attempt(three, DeliveryState.DELIVERED, at=top + 7))
    await settle(outbox, attempt(four, DeliveryState.FAILED, at=top + 8, status=400))
    hours = await outbox.attempts_by_hour(top + 60, hours=3)
    assert [h.start for h in hours] == [top - 2 * hour, top - hour, top]
    assert [(h.delivered, h.failed) for h in hours] == [(1, 1), (0, 0), (1, 1)]
    assert (hours[1].p50_ms, hours[1].p95_ms) == (None, None)
    for h in (hours[0], hours[2]):
        assert h.p50_ms is not None and h.p95_ms is not None
        assert 20 <= h.p50_ms <= h.p95_ms <= 80  # each attempt took 40 ms
    assert len(await outbox.attempts_by_hour(top + 60)) == 24
