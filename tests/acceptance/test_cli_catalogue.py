"""The catalogue through a real `tillhook serve`: a strict type's mismatch refused with its
fields named, a lenient one's accepted, and `events show` / `deliveries show` saying so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import write_config
from tests.acceptance.test_cli_admin import Ok, run_cli

CATALOGUE = """
[[event_types]]
name = "sale.completed"
description = "A sale was paid for"
strict = true
schema = { type = "object", required = ["total"], properties = { total = { type = "number" } } }

[[event_types]]
name = "sale.refunded"
schema = { type = "object", required = ["total"], properties = { total = { type = "number" } } }
"""


async def test_a_mismatch_is_refused_or_shown_by_events_and_deliveries_show(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    behaviour = Ok()
    receiver = await receivers(behaviour=behaviour)
    config = write_config(tmp_path / "tillhook.toml", [{"name": "shop", "url": receiver.url}])
    config.write_text(config.read_text() + CATALOGUE)
    daemon = await daemons(config).start()
    base = ("--config", str(config), "--daemon", daemon.url)

    url = f"{daemon.url}/v1/events"
    async with http.post(url, json={"type": "sale.completed", "data": {}}, headers=daemon.headers()) as response:
        assert response.status == 422 and response.content_type == "application/problem+json"
        problem = await response.json()
    assert problem["type"] == "urn:tillhook:problem:schema-mismatch"
    assert problem["errors"] == [{"field": "data.total", "message": "is required"}]

    refund = {"type": "sale.refunded", "data": {"total": "9.50"}}
    async with http.post(url, json=refund, headers=daemon.headers()) as response:
        assert response.status == 202
        accepted = await response.json()
    await behaviour.wait_for_all({accepted["id"]}, timeout_s=30)

    code, out, err = await run_cli("events", "show", accepted["id"], *base)
    assert code == 0, err
    said = out.split("its data did not match its type's schema (not strict, so accepted):\n", 1)
    assert len(said) == 2, out
    assert said[1].splitlines()[0] == '  data.total: "9.50" is not of type "number"'

    code, out, err = await run_cli("deliveries", "list", "--json", *base)
    assert code == 0, err
    (delivery,) = json.loads(out)["data"]
    assert delivery["event_schema_errors"] == [{"field": "data.total", "message": '"9.50" is not of type "number"'}]
    code, out, err = await run_cli("deliveries", "show", str(delivery["id"]), *base)
    assert code == 0, err
    assert "its event's data did not match its type's schema" in out
    assert '  data.total: "9.50" is not of type "number"' in out.splitlines()
