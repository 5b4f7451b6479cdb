"""What the POS really sends: `event_types_seen` counts every type stored, by name, as the
database wrote the events (so it reads none of them, and the counts outlive retention)."""

from __future__ import annotations

from tests.contract.build import NOW, endpoints, event
from tests.contract.conftest import Opener, Place
from tillhook.store.port import LogFilter, Outbox, SeenType


async def test_an_empty_outbox_has_seen_no_type(outbox: Outbox) -> None:
    assert await outbox.event_types_seen() == []


async def test_each_type_is_counted_with_when_it_was_first_and_last_seen(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    await outbox.enqueue([event("msg_1", [shop.id], type_="sale.completed", at=NOW - 50)])
    # A batch is one write: its types are counted each by its own events.
    await outbox.enqueue(
        [
            event("msg_2", [shop.id], type_="sale.completed", at=NOW - 40),
            event("msg_3", [], type_="refund.issued", at=NOW - 40),
            event("msg_4", [shop.id], type_="sale.completed", at=NOW - 40),
        ],
        batch=True,
    )
    await outbox.enqueue([event("msg_5", [shop.id], type_="sale.completed", at=NOW - 10)])
    assert await outbox.event_types_seen() == [
        SeenType("refund.issued", count=1, mismatched=0, first_seen=NOW - 40, last_seen=NOW - 40),
        SeenType("sale.completed", count=4, mismatched=0, first_seen=NOW - 50, last_seen=NOW - 10),
    ]


async def test_types_come_in_code_point_order_whatever_the_locale(outbox: Outbox) -> None:
    names = ["b.x", "a_z", "B.y", "a.z", "a-z", "Z"]
    await outbox.enqueue([event(f"msg_{i}", [], type_=name, at=NOW - 60 + i) for i, name in enumerate(names)])
    assert [seen.type for seen in await outbox.event_types_seen()] == sorted(names)


async def test_a_repeated_idempotency_key_is_not_counted_again(outbox: Outbox) -> None:
    await outbox.enqueue([event("msg_1", [], type_="sale.completed", key="pos-1", at=NOW - 30)])
    done = await outbox.enqueue([event("msg_2", [], type_="sale.completed", key="pos-1", at=NOW - 30)])
    assert done.accepted[0].duplicate
    (seen,) = await outbox.event_types_seen()
    assert (seen.type, seen.count) == ("sale.completed", 1)


async def test_the_counts_outlive_the_events_retention_purges(outbox: Outbox) -> None:
    old = NOW - 40 * 86400
    await outbox.enqueue([event(f"msg_{i}", [], type_="sale.completed", at=old + i) for i in range(3)])
    while await outbox.purge_before(NOW - 30 * 86400):
        pass
    assert await outbox.list_events(LogFilter()) == []
    assert await outbox.event_types_seen() == [
        SeenType("sale.completed", count=3, mismatched=0, first_seen=old, last_seen=old + 2)
    ]


async def test_the_counts_are_kept_across_reopens_and_every_writer_of_a_shared_outbox(
    place: Place, opened: Opener
) -> None:
    first = await opened()
    await first.enqueue([event("msg_1", [], type_="sale.completed", at=NOW - 30)])
    if not place.shared:
        await first.close()  # one daemon per file: the next writer comes after it
    second = await opened()
    await second.enqueue(
        [
            event("msg_2", [], type_="sale.completed", at=NOW - 20),
            event("msg_3", [], type_="refund.issued", at=NOW - 10),
        ]
    )
    expected = [
        SeenType("refund.issued", count=1, mismatched=0, first_seen=NOW - 10, last_seen=NOW - 10),
        SeenType("sale.completed", count=2, mismatched=0, first_seen=NOW - 30, last_seen=NOW - 20),
    ]
    assert await second.event_types_seen() == expected
    if place.shared:  # any daemon reads the whole outbox's counts
        assert await first.event_types_seen() == expected
