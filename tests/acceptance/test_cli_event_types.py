"""`tillhook events types [NAME]` against the real `tillhook serve` with a catalogue in its
config: the table, one type with its schema and example, --json, and a type nobody knows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import toml_value, write_config
from tests.acceptance.test_cli_admin import run_cli

CATALOGUE: list[dict[str, Any]] = [
    {
        "name": "transaction.completed",
        "description": "A sale was paid and closed",
        "schema": {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}},
        "example": {"amount": 55.39, "customer_id": "c_1"},
        "strict": True,
    },
    {"name": "customer.created", "description": "A new customer joined the loyalty scheme"},
]


def with_catalogue(config: Path, types: list[dict[str, Any]] = CATALOGUE) -> Path:
    """The config file with these [[event_types]] added at its end."""
    lines = []
    for spec in types:
        lines.append("[[event_types]]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in spec.items())
    config.write_text(config.read_text() + "\n".join(lines) + "\n")
    return config


async def post(http: aiohttp.ClientSession, daemon: Any, event_type: str, data: dict[str, Any]) -> None:
    async with http.post(
        f"{daemon.url}/v1/events", json={"type": event_type, "data": data}, headers=daemon.headers()
    ) as response:
        assert response.status == 202, await response.text()


async def test_events_types_lists_the_catalogue_beside_what_came(
    tmp_path: Path, daemons: Any, http: aiohttp.ClientSession
) -> None:
    config = with_catalogue(write_config(tmp_path / "tillhook.toml", []))
    daemon = await daemons(config).start()
    base = ("--config", str(config), "--daemon", daemon.url)
    await post(http, daemon, "transaction.completed", {"amount": 9.5})
    await post(http, daemon, "transaction.completed", {"amount": 3.0})
    await post(http, daemon, "stock.counted", {"sku": "A1"})

    code, out, err = await run_cli("events", "types", *base)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == [
        "NAME",
        "CATALOGUE",
        "SCHEMA",
        "EXAMPLE",
        "COUNT",
        "MISMATCHED",
        "LAST_SEEN",
        "DESCRIPTION",
    ]
    cells = [row.split(maxsplit=7) for row in rows]
    assert [c[:6] for c in cells] == [
        ["customer.created", "yes", "no", "no", "0", "0"],
        ["stock.counted", "no", "no", "no", "1", "0"],
        ["transaction.completed", "strict", "yes", "yes", "2", "0"],
    ]
    assert cells[0][6:] == ["never", "A new customer joined the loyalty scheme"]
    assert cells[1][6].endswith("Z") and cells[1][7] == "-"  # seen, and no description

    code, out, err = await run_cli("events", "types", "--json", *base)
    assert code == 0, err
    listed = {t["name"]: t for t in json.loads(out)["data"]}
    assert list(listed) == ["customer.created", "stock.counted", "transaction.completed"]
    assert (listed["stock.counted"]["count"], listed["stock.counted"]["in_catalogue"]) == (1, False)

    code, out, err = await run_cli("events", "types", "transaction.completed", *base)
    assert code == 0, err
    head, schema_part = out.split("\nschema:\n", 1)
    schema, example = schema_part.split("\n\nexample:\n", 1)
    assert json.loads(schema) == CATALOGUE[0]["schema"] and json.loads(example) == CATALOGUE[0]["example"]
    record = dict(line.split(maxsplit=1) for line in head.splitlines())
    assert (record["count"], record["catalogue"], record["description"]) == (
        "2",
        "strict",
        "A sale was paid and closed",
    )

    code, out, err = await run_cli("events", "types", "stock.counted", "--json", *base)
    assert code == 0, err
    assert json.loads(out)["schema"] is None and json.loads(out)["count"] == 1

    code, out, err = await run_cli("events", "types", "order.shipped", *base)
    assert code == 2 and out == "" and "Traceback" not in err
    assert "no event type 'order.shipped'" in err and len(err.strip().splitlines()) == 1
