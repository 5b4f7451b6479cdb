"""The Event types pages in a real headless Chromium against the real `tillhook serve` with a
catalogue: reached from the nav, a row per type (catalogued and only-seen told apart), and a
type's page showing its schema and example as pretty JSON, text that never runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import INGEST_TOKEN, VIEWER_TOKEN, Daemon, write_config
from tests.acceptance.test_cli_event_types import with_catalogue

HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"
CATALOGUE: list[dict[str, Any]] = [
    {
        "name": "transaction.completed",
        "description": "A sale was paid and closed " + HOSTILE,
        "schema": {
            "type": "object",
            "required": ["amount"],
            "properties": {"amount": {"type": "number", "description": HOSTILE}},
        },
        "example": {"amount": 55.39, "note": HOSTILE},
    },
    {"name": "customer.created", "description": "A customer joined the loyalty scheme"},
]


async def send(http: aiohttp.ClientSession, daemon: Daemon, event_type: str) -> None:
    async with http.post(
        f"{daemon.url}/v1/events",
        json={"type": event_type, "data": {"amount": 12.5}},
        headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
    ) as r:
        assert r.status == 202, await r.text()


async def test_event_types_page_lists_each_type_and_shows_one_with_its_schema(
    tmp_path: Path, daemons: Any, browser: Any, http: aiohttp.ClientSession
) -> None:
    config = with_catalogue(write_config(tmp_path / "tillhook.toml", []), CATALOGUE)
    daemon = await daemons(config).start()
    for event_type in ("transaction.completed", "transaction.completed", "stock.counted"):
        await send(http, daemon, event_type)
    page = browser(daemon)
    await page.sign_in(VIEWER_TOKEN)  # a read: the viewer sees it all

    await page.click("nav a[href='/ui/event-types']")
    await page.wait("tr[data-event-type]")
    assert page.path == "/ui/event-types"
    names = await page.script(
        "return [...document.querySelectorAll('tr[data-event-type]')].map(row => row.dataset.eventType)"
    )
    assert names == ["customer.created", "stock.counted", "transaction.completed"]
    assert await page.text("tr[data-event-type='stock.counted'] [data-field=catalogue]") == "only seen"
    assert await page.text("tr[data-event-type='customer.created'] [data-field=catalogue]") == "catalogued"
    assert await page.attribute("tr[data-event-type='stock.counted']", "data-catalogued") == "no"
    assert await page.text("tr[data-event-type='transaction.completed'] [data-field=count]") == "2"
    assert (await page.text("tr[data-event-type='customer.created'] [data-field=count]")).split() == ["0", "never"]
    assert HOSTILE in await page.text("tr[data-event-type='transaction.completed']")

    await page.click("tr[data-event-type='transaction.completed'] a")
    await page.wait("pre[data-field=schema]")
    assert page.path == "/ui/event-types/transaction.completed"
    schema = await page.text("pre[data-field=schema]")
    assert json.loads(schema) == CATALOGUE[0]["schema"] and schema.startswith('{\n  "type": "object",\n')
    assert json.loads(await page.text("pre[data-field=example]")) == CATALOGUE[0]["example"]
    assert await page.text("[data-field=count]") == "2"
    assert await page.script("return window.__pwned === undefined") is True

    await page.open("/ui/event-types/stock.counted")
    assert await page.text("[data-field=schema]") == "None in the catalogue."
    assert "not in it" in await page.text("dd[data-field=catalogue]")
