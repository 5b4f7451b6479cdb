"""Ingest: what `enqueue` stores and answers, that it is there after a reopen, and the
deliveries it is told to start."""

from __future__ import annotations

from tests.contract.build import NOW, claim, endpoints, event
from tests.contract.conftest import Opener
from tillhook.models import AcceptedEvent, DeliveryState
from tillhook.store.port import LogFilter, Outbox


async def test_enqueue_answers_each_event_in_order_with_its_deliveries(outbox: Outbox) -> None:
    a, b = await endpoints(outbox, "a", "b")
    done = await outbox.enqueue(
        [
            event("msg_1", [a.id, b.id], at=NOW - 30),
            event("msg_2", [b.id], type_="order.refunded", at=NOW - 20),
            event("msg_3", [], at=NOW - 10),  # nobody subscribes: stored all the same
        ]
    )
    assert done.accepted == [
        AcceptedEvent(id="msg_1", type="order.paid", deliveries=2, duplicate=False),
        AcceptedEvent(id="msg_2", type="order.refunded", deliveries=1, duplicate=False),
        AcceptedEvent(id="msg_3", type="order.paid", deliveries=0, duplicate=False),
    ]
    assert (done.started, done.not_started, done.queued) == ([], [], frozenset({a.id, b.id}))
    rows = await outbox.list_deliveries(LogFilter())
    assert sorted((r.event_id, r.endpoint_id) for r in rows) == sorted(
        [("msg_1", a.id), ("msg_1", b.id), ("msg_2", b.id)]
    )
    for row in rows:
        assert row.state is DeliveryState.PENDING
        assert (row.attempts, row.last_status, row.last_error, row.first_attempt_at) == (0, None, None, None)
        assert row.endpoint == {a.id: "a", b.id: "b"}[row.endpoint_id] and row.endpoint_enabled is True
        assert row.created_at == {"msg_1": NOW - 30, "msg_2": NOW - 20}[row.event_id]
    assert [e.id for e in await outbox.list_events(LogFilter())] == ["msg_3", "msg_2", "msg_1"]
    # Due as soon as they are stored.
    assert len(await claim(outbox, {a.id: 10, b.id: 10})) == 3


async def test_what_enqueue_answered_is_there_after_a_reopen(outbox: Outbox, opened: Opener) -> None:
    (a,) = await endpoints(outbox, "a")
    sent = [event(f"msg_{i}", [a.id], key=f"order-{i}", at=NOW - 100 + i) for i in range(5)]
    await outbox.enqueue(sent)
    await outbox.close()
    again = await opened()
    for original in sent:
        stored = await again.get_event(original.id)
        assert stored.body == original.body
        assert (stored.event.type, stored.event.idempotency_key, stored.event.created_at) == (
            original.type,
            original.idempotency_key,
            original.created_at,
        )
    rows = await again.list_deliveries(LogFilter())
    assert sorted(r.event_id for r in rows) == [e.id for e in sent]
    assert await again.count_by_state() == {DeliveryState.PENDING: 5}
    assert [e.id for e in await again.list_endpoints()] == [a.id]
    # And they are still delivered: claimable on the reopened outbox.
    assert sorted(d.event_id for d in await claim(again, {a.id: 10})) == [e.id for e in sent]


async def test_deliveries_asked_to_start_come_back_delivering_and_are_never_claimed(outbox: Outbox) -> None:
    a, b = await endpoints(outbox, "a", "b")
    first = event("msg_1", [a.id, b.id])
    done = await outbox.enqueue([first, event("msg_2", [a.id])], start=[[True, False], [False]])
    assert done.accepted == [
        AcceptedEvent(id="msg_1", type="order.paid", deliveries=2, duplicate=False),
        AcceptedEvent(id="msg_2", type="order.paid", deliveries=1, duplicate=False),
    ]
    (started,) = done.started
    assert (started.event_id, started.endpoint_id, started.attempts, started.first_attempt_at) == (
        "msg_1",
        a.id,
        0,
        None,
    )
    assert started.body == first.body
    assert done.not_started == []
    assert done.queued == frozenset({a.id, b.id})  # b got msg_1, a got msg_2 as pending
    assert (await outbox.get_delivery(started.id)).state is DeliveryState.DELIVERING
    claimed = await claim(outbox, {a.id: 10, b.id: 10})
    assert sorted((d.event_id, d.endpoint_id) for d in claimed) == [("msg_1", b.id), ("msg_2", a.id)]
    assert started.id not in {d.id for d in claimed}
    assert await claim(outbox, {a.id: 10, b.id: 10}, now=NOW + 3600) == []


async def test_every_delivery_asked_to_start_is_started(outbox: Outbox) -> None:
    a, b = await endpoints(outbox, "a", "b")
    done = await outbox.enqueue(
        [event(f"msg_{i}", [a.id, b.id]) for i in range(3)], start=[[True, True]] * 3, batch=True
    )
    assert sorted((d.event_id, d.endpoint_id) for d in done.started) == sorted(
        (f"msg_{i}", e) for i in range(3) for e in (a.id, b.id)
    )
    assert len({d.id for d in done.started}) == 6
    assert done.queued == frozenset() and done.not_started == []
    assert await outbox.count_by_state() == {DeliveryState.DELIVERING: 6}
    assert await claim(outbox, {a.id: 10, b.id: 10}) == []


async def test_a_duplicate_asked_to_start_names_its_endpoint_in_not_started(outbox: Outbox) -> None:
    a, b = await endpoints(outbox, "a", "b")
    await outbox.enqueue([event("msg_1", [a.id, b.id], key="order-1")])
    done = await outbox.enqueue([event("msg_2", [a.id, b.id], key="order-1")], start=[[True, False]])
    assert done.accepted == [AcceptedEvent(id="msg_1", type="order.paid", deliveries=2, duplicate=True)]
    assert done.started == [] and done.not_started == [a.id]
    assert done.queued == frozenset()
    assert await outbox.count_by_state() == {DeliveryState.PENDING: 2}
