"""POST /v1/events against the catalogue, through the real app on loopback: a strict type's
mismatch is a 422 naming each field by its JSON path and stores nothing (a batch all or
nothing); a lenient type's is accepted, stored, and said by the log's routes and pages."""

from __future__ import annotations

import html

import pytest

from tests.integration.conftest import Harness, make_config
from tests.integration.test_admin_api import api
from tests.integration.test_endpoint_pages import _page, _signed_in
from tillhook.catalogue import Catalogue, EventTypeSpec
from tillhook.store.port import LogFilter

PROBLEM = "application/problem+json"
SALE = {
    "type": "object",
    "required": ["total", "items"],
    "properties": {
        "total": {"type": "number"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "price"],
                "properties": {"sku": {"type": "string"}, "price": {"type": "number", "minimum": 0}},
            },
        },
    },
}
GOOD = {"total": 3.0, "items": [{"sku": "A-1", "price": 3.0}]}


@pytest.fixture
async def h(tmp_path, make_harness, clock) -> Harness:
    config = make_config(tmp_path, [{"name": "shop", "url": "http://127.0.0.1:9/hook"}])
    types = [
        {"name": "sale.completed", "schema": SALE, "strict": True, "example": GOOD},
        {"name": "sale.refunded", "schema": SALE, "description": "checked, not enforced"},
        {"name": "note.added", "description": "no schema: anything goes"},
    ]
    config = config.model_copy(update={"event_types": [EventTypeSpec.model_validate(t) for t in types]})
    harness: Harness = await make_harness(config, clock=clock)
    return harness


async def nothing_stored(h: Harness) -> None:
    assert await h.services.store.list_events(LogFilter()) == []
    assert await h.services.store.count_by_state() == {}


async def test_a_strict_types_mismatch_is_a_422_naming_each_field_and_stores_nothing(h: Harness) -> None:
    sent = {"type": "sale.completed", "data": {"items": [{"sku": "A-1", "price": -1}, {"sku": 7, "price": 1}]}}
    code, problem, response = await h.post_events(sent)
    assert (code, response.content_type) == (422, PROBLEM)
    assert problem["type"] == "urn:tillhook:problem:schema-mismatch" and problem["status"] == 422
    assert problem["errors"] == [
        {"field": "data.items[0].price", "message": "-1 is less than the minimum of 0"},
        {"field": "data.items[1].sku", "message": '7 is not of type "string"'},
        {"field": "data.total", "message": "is required"},
    ]
    assert "does not match its type's schema" in problem["detail"] and "data.total: is required" in problem["detail"]
    await nothing_stored(h)
    # The same event, fixed, goes in.
    code, reply, _ = await h.post_events({**sent, "data": GOOD})
    assert code == 202 and reply["deliveries"] == 1


async def test_a_batch_with_a_strict_mismatch_is_refused_whole_with_each_events_path(h: Harness) -> None:
    good = {"type": "sale.completed", "data": GOOD}
    batch = [good, good, {"type": "sale.completed", "data": {"total": "3", "items": []}}, {"type": "note.added"}]
    batch[3]["data"] = {}
    batch.append({"type": "sale.completed", "data": {"items": [{"price": 1}]}})
    code, problem, _ = await h.post_events(batch)
    assert code == 422 and problem["type"] == "urn:tillhook:problem:schema-mismatch"
    assert problem["errors"] == [
        {"field": "[2].data.total", "message": '"3" is not of type "number"'},
        {"field": "[4].data.items[0].sku", "message": "is required"},
        {"field": "[4].data.total", "message": "is required"},
    ]
    assert problem["detail"].startswith("2 of the batch's events do not match")
    await nothing_stored(h)


async def test_a_malformed_event_and_a_mismatch_together_are_one_invalid_event_422(h: Harness) -> None:
    code, problem, _ = await h.post_events([{"type": "sale.completed", "data": {}}, {"type": "x y", "data": {}}])
    assert code == 422 and problem["type"] == "urn:tillhook:problem:invalid-event"
    assert [e["field"] for e in problem["errors"]] == ["[0].data.items", "[0].data.total", "[1].type"]
    await nothing_stored(h)


async def test_a_lenient_types_mismatch_is_stored_and_said_by_the_log(h: Harness) -> None:
    code, reply, _ = await h.post_events({"type": "sale.refunded", "data": {"total": "<b>3</b>", "items": []}})
    assert code == 202, reply
    broken = [{"field": "data.total", "message": '"<b>3</b>" is not of type "number"'}]
    fine = [(await h.post_events({"type": t, "data": d}))[1]["id"] for t, d in [("sale.refunded", GOOD), ("x.y", {})]]

    code, event = await api(h, "GET", f"/v1/events/{reply['id']}")
    assert code == 200 and (event["schema_errors"], event["test"]) == (broken, False)
    assert event["payload"]["data"]["total"] == "<b>3</b>"  # stored as sent
    code, page = await api(h, "GET", "/v1/events")
    assert {e["id"]: e["schema_errors"] for e in page["data"]} == {reply["id"]: broken, fine[0]: None, fine[1]: None}
    code, page = await api(h, "GET", "/v1/deliveries")
    by_event = {d["event_id"]: d for d in page["data"]}
    assert {e: d["event_schema_errors"] for e, d in by_event.items()} == {
        reply["id"]: broken,
        fine[0]: None,
        fine[1]: None,
    }
    delivery_id = by_event[reply["id"]]["id"]
    code, delivery = await api(h, "GET", f"/v1/deliveries/{delivery_id}")
    assert code == 200 and delivery["event_schema_errors"] == broken
    assert event["deliveries"][0]["event_schema_errors"] == broken


async def test_the_dashboard_says_an_event_did_not_match_escaped(h: Harness) -> None:
    _, reply, _ = await h.post_events({"type": "sale.refunded", "data": {"total": "<b>3</b>", "items": []}})
    _, other, _ = await h.post_events({"type": "sale.refunded", "data": GOOD})
    headers, _ = _signed_in(h, "viewer")
    said = "data.total</code>: &#34;&lt;b&gt;3&lt;/b&gt;&#34; is not of type &#34;number&#34;"

    def mismatch_shown(page: str) -> bool:
        return 'data-schema-error="data.total"' in page and said in page and "<b>3</b>" not in page

    status, page, _ = await _page(h, "GET", f"/ui/events/{reply['id']}", headers)
    assert status == 200 and mismatch_shown(page), page
    status, page, _ = await _page(h, "GET", f"/ui/events/{other['id']}", headers)
    assert status == 200 and "data-schema-error" not in page
    status, page, _ = await _page(h, "GET", "/ui/events", headers)
    rows = page.split("<tr data-event=")[1:]
    marked = {html.unescape(row.split('"')[1]): "data-schema-mismatch" in row for row in rows}
    assert marked == {reply["id"]: True, other["id"]: False}

    (delivery,) = [d for d in await h.services.store.list_deliveries(LogFilter()) if d.event_id == reply["id"]]
    status, page, _ = await _page(h, "GET", f"/ui/deliveries/{delivery.id}", headers)
    assert status == 200 and mismatch_shown(page), page
    status, page, _ = await _page(h, "GET", "/ui/deliveries", headers)
    assert page.count("data-schema-mismatch") == 1


async def test_a_repeat_of_an_event_accepted_before_its_type_was_made_strict_is_a_duplicate(h: Harness) -> None:
    bad = {"type": "sale.refunded", "id": "pos-1", "data": {"total": "3"}}
    code, first, _ = await h.post_events(bad)
    assert code == 202 and not first["duplicate"]
    # The config now makes the type strict (as after a restart with it so).
    strict = [
        s.model_copy(update={"strict": True}) if s.name == "sale.refunded" else s
        for s in h.services.catalogue.specs.values()
    ]
    h.services.catalogue = Catalogue(strict)

    code, again, _ = await h.post_events(bad)
    assert code == 202 and again == {**first, "duplicate": True}
    code, batch, _ = await h.post_events([bad, {"type": "note.added", "data": {}}])
    assert code == 202 and [b["duplicate"] for b in batch] == [True, False]
    # The same key with other data is the reuse it always was; a new key is refused by the schema.
    code, reused, _ = await h.post_events({**bad, "data": {"total": "4"}})
    assert (code, reused["type"]) == (422, "urn:tillhook:problem:idempotency-key-reused")
    code, refused, _ = await h.post_events([bad, {**bad, "id": "pos-2"}])
    assert (code, refused["type"]) == (422, "urn:tillhook:problem:schema-mismatch")
    assert [e["field"] for e in refused["errors"]] == [
        "[0].data.items",
        "[0].data.total",
        "[1].data.items",
        "[1].data.total",
    ]
    assert len(await h.services.store.list_events(LogFilter())) == 2
