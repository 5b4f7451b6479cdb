"""Claims: only what is due, the longest due first, no more than each endpoint's quota, and
never a delivery twice; `requeue_in_flight` puts back what was left delivering."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tests.contract.build import NOW, attempt, claim, endpoints, event, settle
from tests.contract.conftest import Opener, Place
from tillhook.models import DeliveryState
from tillhook.store.port import ClaimRequest, LogFilter, Outbox


async def test_only_due_deliveries_are_claimed(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id], at=NOW - 10), event("msg_2", [a.id], at=NOW + 10)])
    assert await claim(outbox, {a.id: 10}, now=NOW - 11) == []
    (due,) = await claim(outbox, {a.id: 10}, now=NOW)
    assert due.event_id == "msg_1"
    (later,) = await claim(outbox, {a.id: 10}, now=NOW + 10)
    assert later.event_id == "msg_2"


async def test_a_claim_hands_out_the_delivery_as_stored(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    sent = event("msg_1", [a.id], data={"total": "12.50", "note": "caf\u00e9 \u2615"})
    await outbox.enqueue([sent])
    (claimed,) = await claim(outbox, {a.id: 1})
    assert (claimed.event_id, claimed.endpoint_id, claimed.attempts, claimed.first_attempt_at) == (
        "msg_1",
        a.id,
        0,
        None,
    )
    assert claimed.body == sent.body
    assert claimed.check_filter is False
    assert (await outbox.get_delivery(claimed.id)).state is DeliveryState.DELIVERING


async def test_a_delivery_whose_filter_could_not_be_evaluated_says_so_when_claimed(outbox: Outbox) -> None:
    a, b = await endpoints(outbox, "a", "b")
    unsure = replace(event("msg_1", [a.id, b.id]), check_filter=(a.id,))
    done = await outbox.enqueue(
        [unsure, replace(event("msg_2", [a.id, b.id]), check_filter=(a.id,))], start=[[False, False], [True, False]]
    )
    assert [(d.endpoint_id, d.check_filter) for d in done.started] == [(a.id, True)]
    claimed = await claim(outbox, {a.id: 10, b.id: 10})
    assert sorted((d.event_id, d.endpoint_id, d.check_filter) for d in claimed) == sorted(
        [("msg_1", a.id, True), ("msg_1", b.id, False), ("msg_2", b.id, False)]
    )


async def test_the_longest_due_go_first(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event(f"msg_{i}", [a.id], at=NOW - 100 + i) for i in range(3)])
    first = await claim(outbox, {a.id: 3}, now=NOW - 90)
    assert [d.event_id for d in first] == ["msg_0", "msg_1", "msg_2"]  # oldest first
    # Retried at other times: due order is no longer creation order.
    due_at = {"msg_0": NOW + 30, "msg_1": NOW + 10, "msg_2": NOW + 20}
    await settle(outbox, *(attempt(d, DeliveryState.PENDING, status=503, retry_at=due_at[d.event_id]) for d in first))
    assert await claim(outbox, {a.id: 3}, now=NOW + 9) == []
    two = await claim(outbox, {a.id: 2}, now=NOW + 40)
    assert sorted(d.event_id for d in two) == ["msg_1", "msg_2"]
    (last,) = await claim(outbox, {a.id: 2}, now=NOW + 40)
    assert last.event_id == "msg_0"


async def test_quotas_are_kept_per_endpoint(outbox: Outbox) -> None:
    a, b, c = await endpoints(outbox, "a", "b", "c")
    await outbox.enqueue([event(f"msg_{i}", [a.id, b.id, c.id], at=NOW - 100 + i) for i in range(5)])
    claimed = await claim(outbox, {a.id: 2, b.id: 3, c.id: 0})
    per_endpoint = {e: [d.event_id for d in claimed if d.endpoint_id == e] for e in (a.id, b.id, c.id)}
    assert per_endpoint == {a.id: ["msg_0", "msg_1"], b.id: ["msg_0", "msg_1", "msg_2"], c.id: []}
    # An endpoint left out of the quotas gets nothing either.
    (more,) = await claim(outbox, {a.id: 1})
    assert (more.endpoint_id, more.event_id) == (a.id, "msg_2")
    assert await claim(outbox, {}) == []


async def test_no_delivery_is_claimed_twice(outbox: Outbox) -> None:
    a, b = await endpoints(outbox, "a", "b")
    await outbox.enqueue([event(f"msg_{i}", [a.id, b.id], at=NOW - 100 + i) for i in range(25)])
    seen: list[int] = []
    while batch := await claim(outbox, {a.id: 4, b.id: 3}):
        seen += [d.id for d in batch]
    assert len(seen) == len(set(seen)) == 50
    assert await outbox.count_by_state() == {DeliveryState.DELIVERING: 50}
    assert {r.id for r in await outbox.list_deliveries(LogFilter(limit=100))} == set(seen)


async def test_claims_made_together_share_nothing(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event(f"msg_{i}", [a.id], at=NOW - 100 + i) for i in range(12)])
    (first,) = await claim(outbox, {a.id: 1})
    # Claims of their own and one along with an outcome, all queued at once.
    along = outbox.write_outcomes([attempt(first, DeliveryState.DELIVERED)], NOW, ClaimRequest({a.id: 3}, NOW))
    batches = await asyncio.gather(*(claim(outbox, {a.id: 3}) for _ in range(4)))
    batches.append(await along)
    ids = [d.id for batch in batches for d in batch]
    assert len(ids) == len(set(ids)) == 11
    assert first.id not in ids
    assert all(len(batch) <= 3 for batch in batches)


async def test_requeue_puts_in_flight_deliveries_back_due_then(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    done = await outbox.enqueue(
        [event(f"msg_{i}", [a.id], at=NOW - 100 + i) for i in range(4)], start=[[True], [False], [False], [False]]
    )
    claimed = await claim(outbox, {a.id: 2})
    assert [d.event_id for d in claimed] == ["msg_1", "msg_2"]
    assert await outbox.requeue_in_flight(NOW + 5) == 3
    assert await outbox.count_by_state() == {DeliveryState.PENDING: 4}
    for delivery_id in [done.started[0].id, *(d.id for d in claimed)]:
        row = await outbox.get_delivery(delivery_id)
        assert (row.state, row.next_attempt_at, row.attempts) == (DeliveryState.PENDING, NOW + 5, 0)
    assert await outbox.requeue_in_flight(NOW + 6) == 0
    again = await claim(outbox, {a.id: 10}, now=NOW + 5)
    assert sorted(d.event_id for d in again) == ["msg_0", "msg_1", "msg_2", "msg_3"]


async def test_what_a_crash_left_delivering_is_requeued_at_the_next_open(
    outbox: Outbox, opened: Opener, place: Place
) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id])], start=[[True]])
    await outbox.enqueue([event("msg_2", [a.id])])
    await claim(outbox, {a.id: 1})
    await outbox.close()  # no outcome was written for either
    again = await opened()
    assert await again.count_by_state() == {DeliveryState.DELIVERING: 2}
    assert await claim(again, {a.id: 10}) == []  # still nobody else's
    if place.shared:
        # Another daemon's claims, while their lease lasts: not this one's to take back.
        assert await again.requeue_in_flight(NOW - 120) == 0
        assert await again.count_by_state() == {DeliveryState.DELIVERING: 2}
        assert await again.requeue_in_flight(NOW + 3600) == 2  # long after: that daemon is gone
    else:
        assert await again.requeue_in_flight(NOW) == 2
    due = NOW + 3600 if place.shared else NOW
    assert sorted(d.event_id for d in await claim(again, {a.id: 10}, now=due)) == ["msg_1", "msg_2"]
