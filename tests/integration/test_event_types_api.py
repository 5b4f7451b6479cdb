"""GET /v1/event-types and /v1/event-types/{name}: the catalogue beside what the POS really
sends, against the real app on loopback with a real SQLite file."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.conftest import ADMIN_TOKEN, VIEWER_TOKEN, Harness, make_config
from tests.support import FakeClock
from tillhook.api.dashboard.guard import SESSIONS
from tillhook.catalogue import EventTypeSpec
from tillhook.models import format_time

SALE_SCHEMA = {
    "type": "object",
    "required": ["amount"],
    "properties": {
        "amount": {"type": "number"},
        "customer_id": {"type": "string", "description": "<script>alert('the loyalty id')</script>"},
    },
}
CATALOGUE = [
    {
        "name": "sale.completed",
        "description": "A sale was paid and closed",
        "schema": SALE_SCHEMA,
        "example": {"amount": 55.39, "customer_id": "c_1"},
        "strict": True,
    },
    # Described, never sent: the shop sees that nothing of it came.
    {"name": "refund.issued", "description": "Money went back to a customer <b>&</b>"},
]


async def get(h: Any, path: str, token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    async with h.session.get(h.server.make_url(path), headers={"Authorization": f"Bearer {token}"}) as r:
        if r.status >= 400:
            assert r.content_type == "application/problem+json"
        return r.status, await r.json(content_type=None)


@pytest.fixture
async def shop(tmp_path, receivers, make_harness, clock: FakeClock):
    receiver = await receivers()
    config = make_config(tmp_path, [{"name": "pos-sink", "url": receiver.url}])
    config = config.model_copy(update={"event_types": [EventTypeSpec.model_validate(t) for t in CATALOGUE]})
    return await make_harness(config, clock=clock)


async def send(h: Any, event_type: str, data: dict[str, Any]) -> None:
    code, reply, _ = await h.post_events({"type": event_type, "data": data})
    assert code == 202, reply


async def test_the_list_is_the_catalogue_and_every_type_received_by_name(shop, clock: FakeClock) -> None:
    first = clock.now()
    await send(shop, "sale.completed", {"amount": 10.0})
    clock.advance(60)
    await send(shop, "stock.counted", {"sku": "A1"})  # sent, never described
    clock.advance(60)
    await send(shop, "sale.completed", {"amount": 12.5})
    # The ping is tillhook's own: not a type the POS sends.
    async with shop.session.post(
        shop.server.make_url("/v1/endpoints/pos-sink/test"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as r:
        assert r.status == 202

    code, body = await get(shop, "/v1/event-types")
    assert code == 200
    assert body == {
        "data": [
            {
                "name": "refund.issued",
                "description": "Money went back to a customer <b>&</b>",
                "in_catalogue": True,
                "strict": False,
                "has_schema": False,
                "has_example": False,
                "count": 0,
                "mismatched": 0,
                "first_seen": None,
                "last_seen": None,
            },
            {
                "name": "sale.completed",
                "description": "A sale was paid and closed",
                "in_catalogue": True,
                "strict": True,
                "has_schema": True,
                "has_example": True,
                "count": 2,
                "mismatched": 0,
                "first_seen": format_time(first),
                "last_seen": format_time(first + 120),
            },
            {
                "name": "stock.counted",
                "description": None,
                "in_catalogue": False,
                "strict": False,
                "has_schema": False,
                "has_example": False,
                "count": 1,
                "mismatched": 0,
                "first_seen": format_time(first + 60),
                "last_seen": format_time(first + 60),
            },
        ]
    }


async def test_one_type_has_the_catalogues_schema_and_example(shop, clock: FakeClock) -> None:
    await send(shop, "sale.completed", {"amount": 10.0})
    code, body = await get(shop, "/v1/event-types/sale.completed")
    assert code == 200
    assert body["schema"] == SALE_SCHEMA and body["example"] == {"amount": 55.39, "customer_id": "c_1"}
    assert (body["count"], body["in_catalogue"], body["strict"]) == (1, True, True)
    assert body["first_seen"] == body["last_seen"] == format_time(clock.now())

    await send(shop, "stock.counted", {"sku": "A1"})
    code, body = await get(shop, "/v1/event-types/stock.counted")
    assert code == 200
    assert (body["in_catalogue"], body["schema"], body["example"], body["count"]) == (False, None, None, 1)

    code, body = await get(shop, "/v1/event-types/refund.issued")
    assert code == 200 and (body["count"], body["last_seen"], body["schema"]) == (0, None, None)


@pytest.mark.parametrize("name", ["order.shipped", "no such type", "sale.*", "SALE.COMPLETED"])
async def test_a_type_neither_catalogued_nor_received_is_not_found(shop, name: str) -> None:
    await send(shop, "sale.completed", {"amount": 10.0})
    code, body = await get(shop, "/v1/event-types/" + quote(name, safe=""))
    assert code == 404 and body["type"] == "urn:tillhook:problem:not-found"
    assert repr(name) in body["detail"] and "GET /v1/event-types" in body["detail"]


async def test_tillhooks_own_types_are_not_listed_and_say_why(shop) -> None:
    async with shop.session.post(
        shop.server.make_url("/v1/endpoints/pos-sink/test"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as r:
        assert r.status == 202
    code, body = await get(shop, "/v1/event-types")
    assert code == 200 and [t["name"] for t in body["data"]] == ["refund.issued", "sale.completed"]
    code, body = await get(shop, "/v1/event-types/tillhook.ping")
    assert code == 404 and "tillhook's own" in body["detail"]


async def test_the_viewer_reads_them_and_a_bad_token_does_not(shop) -> None:
    code, body = await get(shop, "/v1/event-types", token=VIEWER_TOKEN)
    assert code == 200 and len(body["data"]) == 2
    code, body = await get(shop, "/v1/event-types/sale.completed", token=VIEWER_TOKEN)
    assert code == 200 and body["schema"] == SALE_SCHEMA
    code, body = await get(shop, "/v1/event-types", token="not-a-token")
    assert code == 401


async def test_without_a_catalogue_the_list_is_what_was_received(tmp_path, make_harness, clock: FakeClock) -> None:
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    code, body = await get(h, "/v1/event-types")
    assert code == 200 and body == {"data": []}
    await send(h, "b.second", {})
    await send(h, "a.first", {})
    code, body = await get(h, "/v1/event-types")
    assert [(t["name"], t["count"], t["in_catalogue"]) for t in body["data"]] == [
        ("a.first", 1, False),
        ("b.second", 1, False),
    ]


async def page(h: Harness, path: str, role: str | None = "viewer") -> tuple[int, str]:
    headers = {"Cookie": f"tillhook_session={h.app[SESSIONS].create(role).id}"} if role else {}
    async with h.session.get(h.server.make_url(path), headers=headers, allow_redirects=False) as r:
        return r.status, await r.text()


async def test_the_pages_show_every_type_and_one_with_its_schema_escaped(shop) -> None:
    await send(shop, "stock.counted", {"sku": "A1"})
    code, html = await page(shop, "/ui/event-types")
    assert code == 200
    rows = re.findall(r'<tr data-event-type="([^"]+)" data-catalogued="(yes|no)">', html)
    assert rows == [("refund.issued", "yes"), ("sale.completed", "yes"), ("stock.counted", "no")]
    assert "Money went back to a customer &lt;b&gt;&amp;&lt;/b&gt;" in html and "<b>&</b>" not in html
    assert 'href="/ui/event-types"' in html and 'aria-current="page">Event types' in html

    code, html = await page(shop, "/ui/event-types/sale.completed")
    assert code == 200
    schema = re.search(r'<pre data-field="schema">(.*?)</pre>', html, re.S)
    assert schema is not None and "<script>" not in html
    assert json.loads(unescape(schema.group(1))) == SALE_SCHEMA
    assert schema.group(1).startswith("{\n  &#34;type&#34;: &#34;object&#34;,\n")  # pretty, and escaped
    assert "&lt;script&gt;alert(&#39;the loyalty id&#39;)&lt;/script&gt;" in schema.group(1)
    example = re.search(r'<pre data-field="example">(.*?)</pre>', html, re.S)
    assert example is not None and json.loads(unescape(example.group(1))) == CATALOGUE[0]["example"]

    code, html = await page(shop, "/ui/event-types/stock.counted")
    assert code == 200 and 'data-field="schema">None in the catalogue.' in html
    assert '<a href="/ui/events?type=stock.counted">' in html

    code, html = await page(shop, "/ui/event-types/order.shipped")
    assert code == 404 and "no event type &#39;order.shipped&#39;" in html


async def test_the_pages_need_a_session(shop) -> None:
    for path in ("/ui/event-types", "/ui/event-types/sale.completed"):
        code, _ = await page(shop, path, role=None)
        assert code == 303
