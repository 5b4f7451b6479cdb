"""What ingest stores beside an event for the catalogue: how a non-strict type's data broke its
schema, and whether the event is an admin's test; both read back with the event and its
deliveries, and the database's own count of every type it has taken (tests left out)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from tests.contract.build import NOW, endpoints, event
from tests.contract.conftest import Opener, Place
from tillhook.models import NewEvent
from tillhook.store.port import LogFilter, Outbox

BROKEN = json.dumps(
    [
        {"field": "data.total", "message": "is required"},
        {"field": "data.items[0].price", "message": '"1.50" is not of type "number"'},
    ]
)


def mismatched(event_id: str, to: list[str], **how: Any) -> NewEvent:
    return replace(event(event_id, to, **how), schema_errors=BROKEN)


def admins_test(event_id: str, to: list[str], **how: Any) -> NewEvent:
    return replace(event(event_id, to, **how), test=True)


async def test_schema_errors_and_test_come_back_with_the_event_and_its_deliveries(
    outbox: Outbox, opened: Opener
) -> None:
    (shop,) = await endpoints(outbox, "shop")
    await outbox.enqueue(
        [
            event("msg_1", [shop.id], at=NOW - 30),
            mismatched("msg_2", [shop.id], at=NOW - 20),
            admins_test("msg_3", [shop.id], type_="tillhook.ping", at=NOW - 10),
        ]
    )
    await outbox.close()
    again = await opened()  # written, not only kept in memory
    plain, broken, tested = [await again.get_event(f"msg_{i}") for i in (1, 2, 3)]
    assert (plain.event.schema_errors, plain.event.test) == (None, False)
    assert (broken.event.schema_errors, broken.event.test) == (BROKEN, False)
    assert (tested.event.schema_errors, tested.event.test) == (None, True)
    listed = {e.id: (e.schema_errors, e.test) for e in await again.list_events(LogFilter())}
    assert listed == {"msg_1": (None, False), "msg_2": (BROKEN, False), "msg_3": (None, True)}
    deliveries = await again.list_deliveries(LogFilter())
    assert {d.event_id: d.event_schema_errors for d in deliveries} == {"msg_1": None, "msg_2": BROKEN, "msg_3": None}
    one = next(d for d in deliveries if d.event_id == "msg_2")
    assert (await again.get_delivery(one.id)).event_schema_errors == BROKEN


async def test_the_database_counts_each_type_taken_and_its_mismatches_but_not_tests(
    outbox: Outbox, place: Place
) -> None:
    (shop,) = await endpoints(outbox, "shop")
    await outbox.enqueue(
        [
            event("msg_1", [shop.id], type_="sale.completed", at=NOW - 50),
            mismatched("msg_2", [shop.id], type_="sale.completed", at=NOW - 40),
            event("msg_3", [], type_="customer.created", at=NOW - 30),  # no delivery: counted all the same
            admins_test("msg_4", [shop.id], type_="sale.completed", at=NOW - 5),
            admins_test("msg_5", [shop.id], type_="tillhook.ping", at=NOW - 5),
        ]
    )
    # In statements of their own, as requests come in; the repeat of a key is no new event.
    await outbox.enqueue([mismatched("msg_6", [shop.id], type_="sale.completed", key="k-1", at=NOW - 20)])
    await outbox.enqueue([mismatched("msg_7", [shop.id], type_="sale.completed", key="k-1", at=NOW - 20)])
    # PostgreSQL keeps a row per writing connection, summed when read; SQLite one per type.
    seen = await place.query(
        "SELECT type, sum(count), sum(mismatched), min(first_seen), max(last_seen) FROM event_types_seen"
        " GROUP BY type ORDER BY type"
    )
    assert [(t, int(n), int(bad), float(first), float(last)) for t, n, bad, first, last in seen] == [
        ("customer.created", 1, 0, NOW - 30, NOW - 30),
        ("sale.completed", 3, 2, NOW - 50, NOW - 20),
    ]
