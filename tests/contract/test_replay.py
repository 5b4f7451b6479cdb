"""Replays and manual retries: new deliveries of past events to an endpoint, counted the same
before as made; failed deliveries made due again, one or all that a filter matches."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.contract.build import NOW, claim, endpoints, event, finish
from tillhook.errors import Conflict, NotFound
from tillhook.models import DeliveryState, Endpoint
from tillhook.store.port import LogFilter, Outbox, RetriedMatching


async def _history(outbox: Outbox) -> tuple[Endpoint, Endpoint]:
    """Four events to `shop` and one type it does not take, all finished: msg_0 at NOW-400
    delivered, msg_1 at NOW-300 failed, msg_2 (stock.low) at NOW-200 only to `stock`, msg_3 at
    NOW-100 failed, msg_4 at NOW-50 delivered."""
    shop, stock = await endpoints(outbox, "shop", "stock")
    shop = await outbox.update_endpoint(shop.id, {"events": ("order.*",)}, NOW - 3600)
    await outbox.enqueue(
        [
            event("msg_0", [shop.id, stock.id], at=NOW - 400),
            event("msg_1", [shop.id, stock.id], at=NOW - 300),
            event("msg_2", [stock.id], type_="stock.low", at=NOW - 200),
            event("msg_3", [shop.id], at=NOW - 100),
            event("msg_4", [shop.id], at=NOW - 50),
        ]
    )
    states = {"msg_0": DeliveryState.DELIVERED, "msg_1": DeliveryState.FAILED, "msg_3": DeliveryState.FAILED}
    for delivery in await claim(outbox, {shop.id: 10, stock.id: 10}):
        mine = delivery.endpoint_id == shop.id
        await finish(
            outbox,
            delivery,
            states.get(delivery.event_id, DeliveryState.DELIVERED) if mine else DeliveryState.DELIVERED,
        )
    return shop, stock


async def test_replay_makes_a_new_delivery_of_each_event_in_the_window(outbox: Outbox) -> None:
    shop, _ = await _history(outbox)
    window = (NOW - 300, NOW - 50)  # msg_1 at its start is in, msg_4 at its end is out
    assert await outbox.replay_count(shop, *window, False) == 2
    assert await outbox.replay(shop, *window, False, NOW) == 2
    made = await outbox.list_deliveries(LogFilter(endpoint_id=shop.id, state=DeliveryState.PENDING))
    assert sorted(r.event_id for r in made) == ["msg_1", "msg_3"]
    assert all(r.attempts == 0 for r in made)
    # The earlier deliveries stay as they were, and the new ones are due now.
    assert len(await outbox.list_deliveries(LogFilter(event_id="msg_1"))) == 3
    assert sorted(d.event_id for d in await claim(outbox, {shop.id: 10})) == ["msg_1", "msg_3"]


async def test_replay_of_only_the_failed_leaves_the_delivered_out(outbox: Outbox) -> None:
    shop, _ = await _history(outbox)
    window = (NOW - 1000, NOW)
    assert await outbox.replay_count(shop, *window, True) == 2
    assert await outbox.replay(shop, *window, True, NOW) == 2
    made = await outbox.list_deliveries(LogFilter(endpoint_id=shop.id, state=DeliveryState.PENDING))
    assert sorted(r.event_id for r in made) == ["msg_1", "msg_3"]


async def test_replay_to_another_endpoint_takes_only_the_types_it_subscribes_to(outbox: Outbox) -> None:
    await _history(outbox)
    (audit,) = await endpoints(outbox, "audit", events=("stock.*",))
    window = (NOW - 1000, NOW)
    assert await outbox.replay_count(audit, *window, True) == 0  # nothing of it failed there
    assert await outbox.replay_count(audit, *window, False) == 1
    assert await outbox.replay(audit, *window, False, NOW) == 1
    (made,) = await outbox.list_deliveries(LogFilter(endpoint_id=audit.id))
    assert (made.event_id, made.state) == ("msg_2", DeliveryState.PENDING)


async def test_replay_leaves_an_admins_tests_out(outbox: Outbox) -> None:
    """A typed test is of a real type, but was sent to one endpoint to try it: a replay, there
    or to another endpoint taking that type, is of the POS's events only."""
    shop, _ = await _history(outbox)
    (audit,) = await endpoints(outbox, "audit", events=("order.*",))
    tested = replace(event("msg_t", [shop.id], at=NOW - 30), test=True)
    await outbox.enqueue([tested])
    (sent,) = await claim(outbox, {shop.id: 10})
    await finish(outbox, sent, DeliveryState.FAILED)
    window = (NOW - 1000, NOW)
    assert await outbox.replay_count(audit, *window, False) == 4  # msg_0, 1, 3, 4
    assert await outbox.replay(audit, *window, False, NOW) == 4
    made = await outbox.list_deliveries(LogFilter(endpoint_id=audit.id))
    assert sorted(d.event_id for d in made) == ["msg_0", "msg_1", "msg_3", "msg_4"]
    # Nor again to the endpoint it was sent to, though its delivery there failed.
    assert await outbox.replay_count(shop, *window, True) == 2
    assert await outbox.replay(shop, *window, True, NOW) == 2
    again = await outbox.list_deliveries(LogFilter(endpoint_id=shop.id, state=DeliveryState.PENDING))
    assert sorted(d.event_id for d in again) == ["msg_1", "msg_3"]


async def test_retry_delivery_makes_a_finished_delivery_due_now(outbox: Outbox) -> None:
    shop, _ = await _history(outbox)
    (failed,) = await outbox.list_deliveries(LogFilter(endpoint_id=shop.id, event_id="msg_1"))
    row = await outbox.retry_delivery(failed.id, NOW + 10)
    assert (row.id, row.state, row.next_attempt_at, row.attempts) == (failed.id, DeliveryState.PENDING, NOW + 10, 1)
    assert await claim(outbox, {shop.id: 10}, now=NOW + 9) == []
    (again,) = await claim(outbox, {shop.id: 10}, now=NOW + 10)
    assert again.id == failed.id
    with pytest.raises(Conflict):  # in flight: its outcome is on its way
        await outbox.retry_delivery(failed.id, NOW + 11)
    with pytest.raises(NotFound):
        await outbox.retry_delivery(10_000, NOW)


async def test_retry_matching_retries_the_failed_deliveries_a_filter_matches(outbox: Outbox) -> None:
    shop, _ = await _history(outbox)
    everything = LogFilter(endpoint_id=shop.id)
    assert await outbox.count_failed_matching(everything) == 2
    assert await outbox.count_failed_matching(LogFilter(endpoint_id=shop.id, since=NOW - 200)) == 1
    done = await outbox.retry_matching(everything, NOW + 5, at_most=1)
    assert done == RetriedMatching(matched=2, retried=1, endpoint_ids=(shop.id,))
    assert await outbox.count_failed_matching(everything) == 1
    done = await outbox.retry_matching(everything, NOW + 5, at_most=10)
    assert done == RetriedMatching(matched=1, retried=1, endpoint_ids=(shop.id,))
    assert sorted(d.event_id for d in await claim(outbox, {shop.id: 10}, now=NOW + 5)) == ["msg_1", "msg_3"]
    assert await outbox.retry_matching(everything, NOW + 6, at_most=10) == RetriedMatching(0, 0, ())
