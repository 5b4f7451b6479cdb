"""`tillhook endpoints add|update --description --category` and `endpoints list --category`
against the real daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import write_config
from tests.acceptance.test_cli_admin import run_cli


def _rows(table: str) -> tuple[list[str], dict[str, str]]:
    """The table's columns, and each row's line by the endpoint's name."""
    header, *lines = table.splitlines()
    name_at = header.index("NAME")
    return header.split(), {line[name_at:].split()[0]: line for line in lines}


async def test_categories_from_the_terminal(tmp_path: Path, receivers: Any, daemons: Any) -> None:
    receiver = await receivers()
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    base = ("--config", str(config), "--daemon", daemon.url)

    async def cli(*args: str) -> str:
        code, out, err = await run_cli(*args, *base)
        assert code == 0, f"{args}: {err}"
        return out

    await cli("endpoints", "add", "app", receiver.url, "--category", "Loyalty", "--description", "Points for the app")
    await cli("endpoints", "add", "kiosk", receiver.url, "--category", "Loyalty")
    await cli("endpoints", "add", "erp", receiver.url, "--category", "Back office", "--description", "x" * 60)
    await cli("endpoints", "add", "bare", receiver.url)

    columns, rows = _rows(await cli("endpoints", "list"))
    assert "CATEGORY" in columns and "DESCRIPTION" in columns
    assert set(rows) == {"app", "kiosk", "erp", "bare"}
    assert "Loyalty" in rows["app"] and "Points for the app" in rows["app"]
    assert "Back office" in rows["erp"] and "x" * 39 + "…" in rows["erp"] and "x" * 40 not in rows["erp"]

    _, loyal = _rows(await cli("endpoints", "list", "--category", "Loyalty"))
    assert set(loyal) == {"app", "kiosk"}
    _, office = _rows(await cli("endpoints", "list", "--category", "Back office"))
    assert set(office) == {"erp"}
    assert await cli("endpoints", "list", "--category", "loyalty") == "(none)\n"  # compared exactly
    _, none = _rows(await cli("endpoints", "list", "--category", ""))
    assert set(none) == {"bare"}
    listed = json.loads(await cli("endpoints", "list", "--category", "Loyalty", "--json"))
    assert [(e["name"], e["category"], e["description"]) for e in listed["data"]] == [
        ("app", "Loyalty", "Points for the app"),
        ("kiosk", "Loyalty", None),
    ]

    shown = json.loads(await cli("endpoints", "update", "erp", "--category", "none", "--description", "ERP", "--json"))
    assert (shown["category"], shown["description"]) == (None, "ERP")
    _, none = _rows(await cli("endpoints", "list", "--category", ""))
    assert set(none) == {"bare", "erp"}

    code, _, err = await run_cli("endpoints", "list", "--category", "Loyalty/App", *base)
    assert code == 2 and "category" in err and "letters, digits, spaces" in err and "Traceback" not in err
    code, _, err = await run_cli("endpoints", "add", "tabs", receiver.url, "--description", "a\tb", *base)
    assert code == 2 and "description" in err and "control characters" in err
    assert "tabs" not in await cli("endpoints", "list")
