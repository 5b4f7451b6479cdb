"""The log: deliveries and events newest first, filtered, a page at a time (one row beyond the
page says there is another; the cursor is the last row shown); an event's body exactly as
stored."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.contract.build import NOW, claim, endpoints, event, finish
from tillhook.errors import NotFound
from tillhook.models import DeliveryState, Endpoint
from tillhook.store.port import DeliveryRow, EventRow, LogFilter, Outbox


async def _log(outbox: Outbox) -> tuple[Endpoint, Endpoint]:
    """msg_0..msg_5 at NOW-600, NOW-500, … each to shop and stock; msg_i of type
    order.paid for even i, stock.low for odd. Shop's deliveries of msg_0 and msg_1 are
    delivered (200) and failed (500)."""
    shop, stock = await endpoints(outbox, "shop", "stock")
    await outbox.enqueue(
        [
            event(
                f"msg_{i}",
                [shop.id, stock.id],
                type_="order.paid" if i % 2 == 0 else "stock.low",
                at=NOW - 600 + 100 * i,
                key=f"key-{i}",
            )
            for i in range(6)
        ]
    )
    first, second = await claim(outbox, {shop.id: 2})
    await finish(outbox, first, DeliveryState.DELIVERED)
    await finish(outbox, second, DeliveryState.FAILED)
    return shop, stock


async def _pages(outbox: Outbox, f: LogFilter) -> list[list[DeliveryRow]]:
    """Every page of `f`, walked as the dashboard does."""
    pages: list[list[DeliveryRow]] = []
    while True:
        rows = await outbox.list_deliveries(f)
        assert len(rows) <= f.limit + 1
        pages.append(rows[: f.limit])
        if len(rows) <= f.limit:
            return pages
        f = replace(f, before=rows[f.limit - 1].id)


async def test_deliveries_are_listed_newest_first_a_page_at_a_time(outbox: Outbox) -> None:
    await _log(outbox)
    everything = await outbox.list_deliveries(LogFilter(limit=100))
    assert len(everything) == 12
    ids = [r.id for r in everything]
    assert ids == sorted(ids, reverse=True)
    first = await outbox.list_deliveries(LogFilter(limit=5))
    assert [r.id for r in first] == ids[:6]  # the page and one more
    pages = await _pages(outbox, LogFilter(limit=5))
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [r.id for page in pages for r in page] == ids
    exact = await _pages(outbox, LogFilter(limit=6))
    assert [len(p) for p in exact] == [6, 6]  # no empty page after a full last one


async def test_deliveries_are_filtered(outbox: Outbox) -> None:
    shop, stock = await _log(outbox)

    async def events_of(**asked: object) -> list[tuple[str, str]]:
        rows = await outbox.list_deliveries(LogFilter(limit=100, **asked))  # type: ignore[arg-type]
        return [(r.event_id, r.endpoint) for r in rows]

    assert await events_of(endpoint_id=stock.id) == [(f"msg_{i}", "stock") for i in range(5, -1, -1)]
    assert await events_of(state=DeliveryState.FAILED) == [("msg_1", "shop")]
    assert await events_of(state=DeliveryState.PENDING, endpoint_id=shop.id) == [
        (f"msg_{i}", "shop") for i in range(5, 1, -1)
    ]
    assert await events_of(last_status=200) == [("msg_0", "shop")]
    assert sorted(await events_of(event_id="msg_3")) == [("msg_3", "shop"), ("msg_3", "stock")]
    assert [e for e, _ in await events_of(type_pattern="stock.*", endpoint_id=shop.id)] == ["msg_5", "msg_3", "msg_1"]
    # since and until bound the time the delivery was made: [since, until).
    window = await events_of(since=NOW - 400, until=NOW - 200, endpoint_id=shop.id)
    assert window == [("msg_3", "shop"), ("msg_2", "shop")]
    assert await events_of(event_id="msg_nothing") == []


async def test_a_delivery_is_read_with_its_event_and_endpoint(outbox: Outbox) -> None:
    shop, _ = await _log(outbox)
    (failed,) = await outbox.list_deliveries(LogFilter(state=DeliveryState.FAILED))
    row = await outbox.get_delivery(failed.id)
    assert row == failed
    assert (row.event_id, row.event_type, row.endpoint_id, row.endpoint) == ("msg_1", "stock.low", shop.id, "shop")
    assert (row.attempts, row.last_status, row.last_error, row.next_attempt_at) == (1, 500, None, None)
    assert (row.endpoint_enabled, row.endpoint_disabled_reason) == (True, None)
    assert row.created_at == NOW - 500
    with pytest.raises(NotFound):
        await outbox.get_delivery(10_000)
    assert await outbox.attempts_of_delivery(10_000) == []


async def test_events_are_listed_newest_first_filtered_a_page_at_a_time(outbox: Outbox) -> None:
    await _log(outbox)
    everything = await outbox.list_events(LogFilter(limit=100))
    assert [e.id for e in everything] == [f"msg_{i}" for i in range(5, -1, -1)]
    assert [e.seq for e in everything] == sorted((e.seq for e in everything), reverse=True)
    assert everything[-1] == EventRow(
        seq=everything[-1].seq, id="msg_0", type="order.paid", idempotency_key="key-0", created_at=NOW - 600
    )
    page = await outbox.list_events(LogFilter(limit=4))
    assert [e.id for e in page] == ["msg_5", "msg_4", "msg_3", "msg_2", "msg_1"]
    rest = await outbox.list_events(LogFilter(limit=4, before=page[3].seq))
    assert [e.id for e in rest] == ["msg_1", "msg_0"]
    assert [e.id for e in await outbox.list_events(LogFilter(type_pattern="order.paid"))] == ["msg_4", "msg_2", "msg_0"]
    assert [e.id for e in await outbox.list_events(LogFilter(idempotency_key="key-3"))] == ["msg_3"]
    assert [e.id for e in await outbox.list_events(LogFilter(event_id="msg_2"))] == ["msg_2"]
    assert [e.id for e in await outbox.list_events(LogFilter(since=NOW - 300, until=NOW - 100))] == ["msg_4", "msg_3"]


async def test_an_event_comes_back_with_its_exact_bytes(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    sent = event("msg_1", [shop.id], data={"total": 12.5, "note": "caf\u00e9 \u2615"})
    # Bytes no JSON writer would produce again: spacing, key order and escapes are kept as given.
    odd = b'{ "type":"order.paid",\n "id": "msg_2", "data": {"z": 1, "a": "caf\\u00e9", "n": 10000000000000000000001}}'
    await outbox.enqueue([sent, replace(event("msg_2", [shop.id], filtered_out=["ep_other"]), body=odd)])
    assert (await outbox.get_event("msg_1")).body == sent.body
    stored = await outbox.get_event("msg_2")
    assert stored.body == odd
    assert stored.filtered_out == ("ep_other",)
    assert (await outbox.get_event("msg_1")).filtered_out == ()
    assert stored.event == EventRow(
        seq=stored.event.seq, id="msg_2", type="order.paid", idempotency_key=None, created_at=NOW - 60
    )
    with pytest.raises(NotFound):
        await outbox.get_event("msg_nothing")
