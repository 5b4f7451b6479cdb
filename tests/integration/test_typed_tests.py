"""Typed tests: POST /v1/endpoints/{id}/test with {"event_type": T} sends T's catalogue example
to that endpoint alone, marked "test": true, and refuses a type it cannot send, against the
real app on loopback with a fake clock."""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.conftest import make_config
from tests.integration.test_admin_api import api, create, post
from tests.integration.test_endpoint_pages import _page, _signed_in
from tillhook.catalogue import EventTypeSpec

SALE_EXAMPLE = {"total": 9.5, "items": [{"sku": "A-1", "qty": 2}]}
CATALOGUE = [
    {
        "name": "sale.completed",
        "description": "A sale was paid",
        "schema": {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}},
        "example": SALE_EXAMPLE,
        "strict": True,
    },
    {"name": "sale.voided", "description": "A sale was voided"},
]


@pytest.fixture
async def typed(tmp_path, receivers, make_harness, clock):
    """A daemon whose catalogue has one type with an example and one without."""
    receiver = await receivers()
    config = make_config(tmp_path, [], delivery={"retry_schedule": ["1m"], "give_up_after": "10m"})
    config = config.model_copy(update={"event_types": [EventTypeSpec.model_validate(t) for t in CATALOGUE]})
    h = await make_harness(config, clock=clock)
    return h, receiver


async def test_a_typed_test_sends_the_example_to_that_endpoint_only_whatever_its_events_and_filter(typed, receivers):
    h, receiver = typed
    bystander = await receivers()
    # Neither its events nor its filter take the example: a test consults neither.
    shop = await create(h, receiver.url, events=["refund.*"], filter="data.total > 100.0")
    receiver.secret = shop["secret"]
    await create(h, bystander.url, name="bystander", events=["sale.*"])
    code, sent = await api(h, "POST", "/v1/endpoints/shop/test", {"event_type": "sale.completed"})
    assert code == 202 and sent["event_type"] == "sale.completed"
    assert await h.step() == 1
    (got,) = receiver.received
    assert got.verified and got.event_id == sent["event_id"]
    body = json.loads(got.body)
    assert list(body) == ["id", "type", "timestamp", "data", "test"]
    assert body["id"] == sent["event_id"] and body["type"] == "sale.completed"
    assert body["data"] == SALE_EXAMPLE and body["test"] is True
    assert bystander.received == []
    code, delivery = await api(h, "GET", f"/v1/deliveries/{sent['delivery_id']}")
    assert code == 200 and delivery["state"] == "delivered" and delivery["event_type"] == "sale.completed"


async def test_a_typed_test_is_shaped_by_the_endpoints_transform_which_sees_that_it_is_one(typed, receivers):
    h, receiver = typed
    # The transform makes the body, and says whether it is a test: the POS's sale has no key.
    await create(h, receiver.url, events=["sale.*"], transform='{"kind": type, "total": data.total, "test": test}')
    code, sent = await api(h, "POST", "/v1/endpoints/shop/test", {"event_type": "sale.completed"})
    assert code == 202
    await h.step()
    (got,) = receiver.received
    assert json.loads(got.body) == {"kind": "sale.completed", "total": 9.5, "test": True}
    assert got.event_id == sent["event_id"]  # webhook-id stays the event's
    await post(h, total=3.0)
    await h.step()
    assert json.loads(receiver.received[-1].body) == {"kind": "sale.completed", "total": 3.0, "test": False}
    # A preview of the stored test shows what it got.
    code, preview = await api(h, "POST", "/v1/endpoints/shop/preview", {"event_id": sent["event_id"]})
    assert code == 200 and preview["request"]["body"]["test"] is True


@pytest.mark.parametrize(
    ("preset", "where"),
    [
        ("slack", lambda body: body["blocks"][0]["text"]["text"]),
        ("discord", lambda body: body["embeds"][0]["title"]),
        ("teams", lambda body: body["attachments"][0]["content"]["body"][0]["text"]),
        ("google-chat", lambda body: body["text"].splitlines()[0]),
    ],
)
async def test_a_chat_preset_names_a_typed_test_as_one(typed, preset, where):
    h, receiver = typed
    await create(h, receiver.url, preset=preset)
    code, _ = await api(h, "POST", "/v1/endpoints/shop/test", {"event_type": "sale.completed"})
    assert code == 202
    await h.step()
    assert "[test] Sale completed" in where(json.loads(receiver.received[0].body))


@pytest.mark.parametrize("body", [None, {}, {"event_type": None}])
async def test_without_a_type_the_test_is_the_ping_marked_test_too(typed, body):
    h, receiver = typed
    await create(h, receiver.url)
    code, sent = await api(h, "POST", "/v1/endpoints/shop/test", body)
    assert code == 202 and sent["event_type"] == "tillhook.ping"
    await h.step()
    (got,) = receiver.received
    envelope = json.loads(got.body)
    assert envelope["type"] == "tillhook.ping" and envelope["test"] is True
    assert envelope["data"] == {"endpoint": "shop", "message": "a test event from tillhook"}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        # Not catalogued: the detail names the type and how to add it.
        ({"event_type": "sale.refunded"}, "event_type", "sale.refunded is not in the event-type catalogue: add an"),
        ({"event_type": "sale.voided"}, "event_type", "sale.voided has no example in the catalogue"),
        ({"event_type": "not a type"}, "event_type", "event_type"),
        ({"event_type": 7}, "event_type", "event_type"),
        ({"type": "sale.completed"}, "type", "type"),
    ],
)
async def test_a_type_that_cannot_be_sent_is_a_422_that_stores_and_sends_nothing(typed, body, field, words):
    h, receiver = typed
    await create(h, receiver.url)
    code, problem = await api(h, "POST", "/v1/endpoints/shop/test", body)
    assert code == 422, problem
    assert [e["field"] for e in problem["errors"]] == [field]
    assert words in problem["detail"]
    if "catalogue" in words:
        assert "[[event_types]]" in problem["detail"] and "[[event_types]]" in problem["errors"][0]["message"]
    assert (await api(h, "GET", "/v1/events"))[1]["data"] == []
    assert await h.step() == 0 and receiver.received == []


async def test_a_disabled_endpoint_refuses_a_typed_test_after_checking_the_type(typed):
    h, receiver = typed
    await create(h, receiver.url, enabled=False)
    code, problem = await api(h, "POST", "/v1/endpoints/shop/test", {"event_type": "sale.completed"})
    assert code == 409 and "disabled" in problem["detail"]
    assert (await api(h, "POST", "/v1/endpoints/shop/test", {"event_type": "sale.voided"}))[0] == 422
    assert (await api(h, "GET", "/v1/events"))[1]["data"] == []


async def test_the_openapi_document_describes_the_optional_body(typed):
    h, _ = typed
    async with h.session.get(h.server.make_url("/openapi.json")) as response:
        document = await response.json()
    operation = document["paths"]["/v1/endpoints/{id}/test"]["post"]
    assert operation["requestBody"]["required"] is False
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert (
        set(schema["properties"]) == {"event_type"} and "catalogue" in schema["properties"]["event_type"]["description"]
    )
    assert {"404", "409", "422"} <= set(operation["responses"])
    reply = document["components"]["schemas"]["PingOut"]
    assert "event_type" in reply["required"]


async def test_the_endpoint_page_offers_the_types_with_an_example_and_sends_one(typed):
    h, receiver = typed
    await create(h, receiver.url)
    headers, csrf = _signed_in(h)
    status, page, _ = await _page(h, "GET", "/ui/endpoints/shop", headers)
    assert status == 200
    options = re.findall(r'<option value="([^"]*)">', page.split('id="test-type"', 1)[1].split("</select>", 1)[0])
    assert options == ["", "sale.completed"]  # the ping, then each type with an example
    status, _, response = await _page(
        h, "POST", "/ui/endpoints/shop/test", headers, {"csrf": csrf, "event_type": "sale.completed"}
    )
    assert status == 303 and "sale.completed" in response.headers["Location"]
    await h.step()
    (got,) = receiver.received
    assert json.loads(got.body)["data"] == SALE_EXAMPLE and json.loads(got.body)["test"] is True
    status, page, _ = await _page(
        h, "POST", "/ui/endpoints/shop/test", headers, {"csrf": csrf, "event_type": "sale.voided"}
    )
    assert status == 422 and "sale.voided has no example in the catalogue" in page


async def test_without_a_catalogue_the_page_sends_the_ping_with_no_choice(tmp_path, receivers, make_harness, clock):
    receiver = await receivers()
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    await create(h, receiver.url)
    headers, csrf = _signed_in(h)
    status, page, _ = await _page(h, "GET", "/ui/endpoints/shop", headers)
    assert status == 200 and 'data-action="test"' in page and 'id="test-type"' not in page
    status, _, _ = await _page(h, "POST", "/ui/endpoints/shop/test", headers, {"csrf": csrf})
    assert status == 303
    await h.step()
    assert json.loads(receiver.received[0].body)["type"] == "tillhook.ping"
