"""`tillhook events types [NAME]`: the event-type catalogue beside what the POS really sends,
from GET /v1/event-types (every type, a row each) or GET /v1/event-types/NAME (one, with its
schema and example)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

EXIT_OK = 0
COLUMNS = ("name", "catalogue", "schema", "example", "count", "mismatched", "last_seen", "description")

Call = Callable[..., Awaitable[Any]]
Table = Callable[[list[dict[str, Any]], tuple[str, ...]], None]


def add_types(events: Any, admin: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    parser = admin(
        events.add_parser(
            "types",
            help="every event type in the catalogue or received, with counts; NAME: one, with its schema and example",
        )
    )
    parser.add_argument("name", metavar="NAME", nargs="?", help="one type, like transaction.completed")


def _catalogue(row: dict[str, Any]) -> str:
    if not row["in_catalogue"]:
        return "no"
    return "strict" if row["strict"] else "yes"


def _row(row: dict[str, Any]) -> dict[str, Any]:
    description = " ".join((row["description"] or "").split())
    return row | {
        "catalogue": _catalogue(row),
        "schema": "yes" if row["has_schema"] else "no",
        "example": "yes" if row["has_example"] else "no",
        "last_seen": row["last_seen"] or "never",
        "description": (description[:47] + "…" if len(description) > 48 else description) or None,
    }


async def run_types(call: Call, args: argparse.Namespace, table: Table) -> int:
    if args.name is None:
        data = await call("GET", "/v1/event-types")
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            table([_row(row) for row in data["data"]], COLUMNS)
        return EXIT_OK
    data = await call("GET", f"/v1/event-types/{quote(args.name, safe='')}")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_type(data)
    return EXIT_OK


def print_type(data: dict[str, Any]) -> None:
    fields = {k: v for k, v in data.items() if k not in ("schema", "example")}
    fields["catalogue"] = _catalogue(data)
    fields["first_seen"] = data["first_seen"] or "never"
    fields["last_seen"] = data["last_seen"] or "never"
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        print(f"{key.ljust(width)}  {'-' if value is None else value}")
    for part in ("schema", "example"):
        value = data[part]
        shown = json.dumps(value, indent=2, ensure_ascii=False) if value is not None else "(none in the catalogue)"
        print(f"\n{part}:\n{shown}")
