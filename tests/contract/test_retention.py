"""Retention: `purge_before` deletes, a batch at a time, the events older than the cutoff whose
deliveries are all finished, with their history; anything unfinished stays, however old."""

from __future__ import annotations

import pytest

from tests.contract.build import NOW, attempt, claim, endpoints, event, finish, settle
from tillhook.errors import NotFound
from tillhook.models import DeliveryState
from tillhook.store.port import LogFilter, Outbox

OLD = NOW - 10 * 86400
CUTOFF = NOW - 86400


async def test_purge_removes_finished_history_older_than_the_cutoff_only(outbox: Outbox) -> None:
    shop, stock, audit = await endpoints(outbox, "shop", "stock", "audit")
    await outbox.enqueue(
        [
            event("msg_delivered", [shop.id], at=OLD),
            event("msg_failed", [shop.id], at=OLD + 1),
            event("msg_cancelled", [stock.id], at=OLD + 2),
            event("msg_nobody", [], at=OLD + 3),
            event("msg_pending", [shop.id], at=OLD + 4),
            event("msg_delivering", [shop.id], at=OLD + 5),
            event("msg_half", [shop.id, audit.id], at=OLD + 6),  # delivered to shop, pending to audit
            event("msg_recent", [shop.id], at=NOW - 60),
        ]
    )
    claimed = {d.event_id: d for d in await claim(outbox, {shop.id: 10})}
    for event_id in ("msg_delivered", "msg_half", "msg_recent"):
        await finish(outbox, claimed[event_id], DeliveryState.DELIVERED)
    await finish(outbox, claimed["msg_failed"], DeliveryState.FAILED)
    await settle(outbox, attempt(claimed["msg_pending"], DeliveryState.PENDING, status=500, retry_at=NOW + 60))
    await outbox.delete_endpoint(stock.id, NOW)
    gone = ("msg_delivered", "msg_failed", "msg_cancelled", "msg_nobody")
    kept = ("msg_pending", "msg_delivering", "msg_half", "msg_recent")

    purged = [await outbox.purge_before(CUTOFF, limit=2)]
    while purged[-1]:
        purged.append(await outbox.purge_before(CUTOFF, limit=2))
    assert purged == [2, 2, 0]

    for event_id in gone:
        with pytest.raises(NotFound):
            await outbox.get_event(event_id)
        assert await outbox.list_deliveries(LogFilter(event_id=event_id)) == []
    assert await outbox.attempts_of_delivery(claimed["msg_delivered"].id) == []
    for event_id in kept:
        assert (await outbox.get_event(event_id)).event.id == event_id
    assert sorted(e.id for e in await outbox.list_events(LogFilter())) == sorted(kept)
    assert await outbox.count_by_state() == {
        DeliveryState.PENDING: 2,
        DeliveryState.DELIVERING: 1,
        DeliveryState.DELIVERED: 2,
    }
    # What stayed keeps its history.
    assert len(await outbox.attempts_of_delivery(claimed["msg_half"].id)) == 1
    assert len(await outbox.attempts_of_delivery(claimed["msg_pending"].id)) == 1
    assert (await outbox.get_delivery(claimed["msg_delivering"].id)).state is DeliveryState.DELIVERING


async def test_nothing_newer_than_the_cutoff_is_purged(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    await outbox.enqueue([event("msg_1", [shop.id], at=CUTOFF)])
    (delivery,) = await claim(outbox, {shop.id: 1})
    await finish(outbox, delivery, DeliveryState.DELIVERED)
    assert await outbox.purge_before(CUTOFF) == 0
    assert await outbox.purge_before(CUTOFF + 0.001) == 1
