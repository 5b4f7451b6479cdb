"""Order: an ordered endpoint only ever has its oldest unfinished delivery claimed, once due;
a head that keeps failing holds back everything behind it."""

from __future__ import annotations

from tests.contract.build import NOW, attempt, claim, endpoints, event, settle
from tillhook.models import DeliveryState
from tillhook.store.port import OrderedHead, Outbox


async def test_only_the_head_of_an_ordered_endpoint_is_claimed(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a", ordered=True)
    await outbox.enqueue([event(f"msg_{i}", [a.id], at=NOW - 100 + i) for i in range(3)])
    (head,) = await claim(outbox, {a.id: 3}, ordered=[a.id])
    assert head.event_id == "msg_0"
    assert await claim(outbox, {a.id: 3}, ordered=[a.id]) == []  # the head is in flight: nothing else
    for expected in ("msg_1", "msg_2"):
        await settle(outbox, attempt(head, DeliveryState.DELIVERED))
        (head,) = await claim(outbox, {a.id: 3}, ordered=[a.id])
        assert head.event_id == expected
    await settle(outbox, attempt(head, DeliveryState.DELIVERED))
    assert await claim(outbox, {a.id: 3}, ordered=[a.id]) == []


async def test_a_failing_head_holds_back_the_rest(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a", ordered=True)
    await outbox.enqueue([event(f"msg_{i}", [a.id], at=NOW - 100 + i) for i in range(3)])
    (head,) = await claim(outbox, {a.id: 1}, ordered=[a.id])
    await settle(outbox, attempt(head, DeliveryState.PENDING, status=500, error=None, retry_at=NOW + 60))
    # The others are due, and wait: the head is not due yet.
    assert await claim(outbox, {a.id: 3}, ordered=[a.id], now=NOW + 30) == []
    heads = await outbox.ordered_heads([a.id])
    assert heads == {
        a.id: OrderedHead(
            id=head.id,
            event_id="msg_0",
            state=DeliveryState.PENDING,
            attempts=1,
            next_attempt_at=NOW + 60,
            last_status=500,
            last_error=None,
        )
    }
    (again,) = await claim(outbox, {a.id: 3}, ordered=[a.id], now=NOW + 60)
    assert again.id == head.id
    # Given up on, it is finished: the next one becomes the head.
    await settle(outbox, attempt(again, DeliveryState.FAILED, status=500, at=NOW + 60))
    (following,) = await claim(outbox, {a.id: 3}, ordered=[a.id], now=NOW + 60)
    assert following.event_id == "msg_1"


async def test_order_is_per_endpoint(outbox: Outbox) -> None:
    a, b = await endpoints(outbox, "a", "b", ordered=True)
    (c,) = await endpoints(outbox, "c")
    await outbox.enqueue([event(f"msg_{i}", [a.id, b.id, c.id], at=NOW - 100 + i) for i in range(3)])
    (head_a,) = await claim(outbox, {a.id: 3}, ordered=[a.id, b.id])
    await settle(outbox, attempt(head_a, DeliveryState.PENDING, status=500, retry_at=NOW + 600))
    claimed = await claim(outbox, {a.id: 3, b.id: 3, c.id: 3}, ordered=[a.id, b.id])
    assert sorted((d.endpoint_id, d.event_id) for d in claimed) == sorted(
        [(b.id, "msg_0"), (c.id, "msg_0"), (c.id, "msg_1"), (c.id, "msg_2")]
    )
    assert set(await outbox.ordered_heads([a.id, b.id, c.id])) == {a.id, b.id, c.id}
