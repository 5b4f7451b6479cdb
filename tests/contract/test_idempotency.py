"""Idempotency keys: a repeat of the same event is answered with the first, a key reused for
other content refuses the whole call and writes nothing of it."""

from __future__ import annotations

import pytest

from tests.contract.build import NOW, endpoints, event
from tillhook.errors import InvalidInput
from tillhook.models import AcceptedEvent, DeliveryState
from tillhook.store.port import LogFilter, Outbox


async def _stored(outbox: Outbox) -> tuple[list[str], dict[DeliveryState, int]]:
    return [e.id for e in await outbox.list_events(LogFilter(limit=1000))], await outbox.count_by_state()


async def test_a_repeat_with_the_same_content_is_the_first_event_and_adds_nothing(outbox: Outbox) -> None:
    a, b = await endpoints(outbox, "a", "b")
    first = await outbox.enqueue([event("msg_1", [a.id, b.id], key="order-1", data={"total": 12})])
    assert first.accepted == [AcceptedEvent(id="msg_1", type="order.paid", deliveries=2, duplicate=False)]
    before = await _stored(outbox)
    again = await outbox.enqueue([event("msg_2", [a.id, b.id], key="order-1", data={"total": 12})])
    assert again.accepted == [AcceptedEvent(id="msg_1", type="order.paid", deliveries=2, duplicate=True)]
    assert again.queued == frozenset() and again.started == []
    assert await _stored(outbox) == before == (["msg_1"], {DeliveryState.PENDING: 2})
    assert [e.id for e in await outbox.list_events(LogFilter(idempotency_key="order-1"))] == ["msg_1"]


async def test_a_key_reused_with_other_content_refuses_the_whole_call(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id], key="order-1", data={"total": 12})])
    before = await _stored(outbox)
    with pytest.raises(InvalidInput):
        await outbox.enqueue(
            [
                event("msg_2", [a.id], key="order-2"),  # fine on its own: refused with the rest
                event("msg_3", [a.id], key="order-1", data={"total": 13}),
            ],
            start=[[True], [True]],
        )
    assert await _stored(outbox) == before
    assert (await outbox.get_event("msg_1")).body == event("msg_1", [a.id], key="order-1", data={"total": 12}).body
    # The refusal changed nothing: the fine event goes in once sent alone.
    done = await outbox.enqueue([event("msg_2", [a.id], key="order-2")])
    assert done.accepted == [AcceptedEvent(id="msg_2", type="order.paid", deliveries=1, duplicate=False)]


async def test_other_type_or_timestamp_is_other_content(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id], key="order-1", at=NOW - 60)])
    before = await _stored(outbox)
    with pytest.raises(InvalidInput):
        await outbox.enqueue([event("msg_2", [a.id], key="order-1", at=NOW - 60, type_="order.refunded")])
    with pytest.raises(InvalidInput):
        await outbox.enqueue([event("msg_3", [a.id], key="order-1", at=NOW - 59)])
    assert await _stored(outbox) == before


async def test_within_one_call_a_repeat_is_a_duplicate_of_the_first(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    done = await outbox.enqueue(
        [event("msg_1", [a.id], key="order-1"), event("msg_2", [a.id], key="order-1")],
        start=[[False], [True]],
        batch=True,
    )
    assert done.accepted == [
        AcceptedEvent(id="msg_1", type="order.paid", deliveries=1, duplicate=False),
        AcceptedEvent(id="msg_1", type="order.paid", deliveries=1, duplicate=True),
    ]
    assert done.started == [] and done.not_started == [a.id]
    assert await _stored(outbox) == (["msg_1"], {DeliveryState.PENDING: 1})


async def test_within_one_call_a_reused_key_refuses_it_all_naming_the_event_by_index(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    with pytest.raises(InvalidInput) as refused:
        await outbox.enqueue(
            [
                event("msg_1", [a.id], key="order-1", data={"total": 12}),
                event("msg_2", [a.id], key="order-1", data={"total": 13}),
            ],
            batch=True,
        )
    assert "[1]" in str(refused.value)
    assert await _stored(outbox) == ([], {})
