"""Figure 11: what the event-type catalogue costs at ingest, next to ingest without one, on
figure 2's setup (batches of 100, 4 clients, a daemon with no endpoints).

Used by bench/run.py (`--only catalogue`), which runs the daemons; this file holds the
variants (the `[[event_types]]` each daemon is given), the checks of what was stored, the
table rows and the README section."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import dashboard  # beside this file; the README's sections are spliced the same way

EVENT_TYPE = "transaction.completed"  # what bench/worker.py's load generator posts

# bench/worker.py `event_data`, field by field, as a shop would describe it.
_STRING = {"type": "string", "minLength": 1}
_ITEM = {
    "type": "object",
    "required": ["sku", "name", "qty", "price"],
    "properties": {
        "sku": {"type": "string", "pattern": "^[0-9]{8,14}$"},
        "name": _STRING,
        "qty": {"type": "integer", "minimum": 1},
        "price": {"type": "number", "minimum": 0},
    },
}
MATCHING: dict[str, Any] = {
    "type": "object",
    "required": ["transaction_id", "amount", "currency", "items", "payment"],
    "properties": {
        "transaction_id": {"type": "string", "pattern": "^tx-[0-9]+$"},
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "minLength": 3, "maxLength": 3},
        "customer_id": _STRING,
        "till": _STRING,
        "cashier": _STRING,
        "items": {"type": "array", "minItems": 1, "items": _ITEM},
        "payment": {
            "type": "object",
            "required": ["method"],
            "properties": {
                "method": {"type": "string", "enum": ["card", "cash", "voucher"]},
                "scheme": _STRING,
                "last4": {"type": "string", "pattern": "^[0-9]{4}$"},
            },
        },
    },
}
# The same schema, which every event breaks in 3 places: the amount is not a whole number of
# cents written as an integer, the currency is not USD, and the card's last digits are a string.
BROKEN_FIELDS = 3
BROKEN: dict[str, Any] = {
    **MATCHING,
    "properties": {
        **MATCHING["properties"],
        "amount": {"type": "integer"},
        "currency": {"const": "USD"},
        "payment": {
            **MATCHING["properties"]["payment"],
            "properties": {**MATCHING["properties"]["payment"]["properties"], "last4": {"type": "integer"}},
        },
    },
}

DESCRIPTION = "A sale was paid for at the till"
# Each variant's [[event_types]]; "none" is the reference, measured in the same run.
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "recorded": [{"name": EVENT_TYPE, "description": DESCRIPTION, "schema": MATCHING, "strict": False}],
    "strict": [{"name": EVENT_TYPE, "description": DESCRIPTION, "schema": MATCHING, "strict": True}],
    "mismatched": [{"name": EVENT_TYPE, "description": DESCRIPTION, "schema": BROKEN, "strict": False}],
}
LABELS = {
    "recorded": "matching schema, strict = false",
    "strict": "matching schema, strict = true",
    "mismatched": f"schema broken in {BROKEN_FIELDS} places per event, strict = false (schema_errors stored)",
}


def stored(db: Path) -> dict[str, int]:
    """After the daemon has stopped: its events, those with schema errors, those whose errors
    are not the expected BROKEN_FIELDS, and the catalogue's count of the type (the trigger's)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        events, with_errors, other = conn.execute(
            "SELECT count(*), count(schema_errors),"
            " count(*) FILTER (WHERE schema_errors IS NOT NULL AND json_array_length(schema_errors) != ?)"
            " FROM events",
            (BROKEN_FIELDS,),
        ).fetchone()
        seen = conn.execute(
            "SELECT count, mismatched FROM event_types_seen WHERE type = ?", (EVENT_TYPE,)
        ).fetchone() or (0, 0)
    finally:
        conn.close()
    return {
        "events": events,
        "with_errors": with_errors,
        "other_errors": other,
        "seen": seen[0],
        "seen_mismatched": seen[1],
    }


def problems(name: str, counts: dict[str, int]) -> list[str]:
    """What the stored events say against what the variant should have stored."""
    found = []
    expected_errors = counts["events"] if name == "mismatched" else 0
    if counts["with_errors"] != expected_errors:
        found.append(
            f"{counts['with_errors']} of {counts['events']} events stored schema_errors, not {expected_errors}"
        )
    if counts["other_errors"]:
        found.append(f"{counts['other_errors']} events stored a number of schema errors other than {BROKEN_FIELDS}")
    if counts["seen"] != counts["events"] or counts["seen_mismatched"] != expected_errors:
        found.append(
            f"event_types_seen counts {counts['seen']} ({counts['seen_mismatched']} mismatched)"
            f" for {counts['events']} events stored"
        )
    return found


def rows(runs: list[dict[str, Any]], fmt_rate: Any, span: Any, med: Any) -> list[dict[str, str]]:
    """Per variant: events/s against no catalogue's in the same run, and server CPU µs per
    event against no catalogue's."""
    out = []
    plains = [r["none"]["events_per_s"] for r in runs]
    plain_cpu = [r["none"]["cpu_us"] for r in runs]
    out.append(
        {
            "figure": "Ingest, batches of 100, 4 clients, no catalogue (events/s; server CPU per event)",
            "value": f"{fmt_rate(med(plains))}; {med(plain_cpu):.0f} µs",
            "ceiling": "— (the reference of the rows below)",
            "ratio": "—",
            "spread": f"{span(plains, fmt_rate)}; CPU {span(plain_cpu, lambda x: f'{x:.0f} µs')}",
            "target": "—",
        }
    )
    for name in VARIANTS:
        if name == "none":
            continue
        values = [r[name]["events_per_s"] for r in runs]
        ratios = [v / p for v, p in zip(values, plains, strict=True) if p]
        cpu = [r[name]["cpu_us"] for r in runs]
        extra = [c - p for c, p in zip(cpu, plain_cpu, strict=True)]
        ratio = med(ratios)
        added = med(extra)
        out.append(
            {
                "figure": f"Ingest, batches of 100, catalogue: {LABELS[name]} (events/s; server CPU per event)",
                "value": f"{fmt_rate(med(values))}; {med(cpu):.0f} µs",
                "ceiling": f"{fmt_rate(med(plains))}; {med(plain_cpu):.0f} µs (no catalogue, same run)",
                "ratio": f"{ratio:.2f}; {added:+.0f} µs" if ratio is not None and added is not None else "n/a",
                "spread": f"{span(values, fmt_rate)}; ratio {span(ratios, lambda x: f'{x:.2f}')};"
                f" CPU {span(cpu, lambda x: f'{x:.0f} µs')}",
                "target": "—",
            }
        )
    return out


def details(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i, r in enumerate(runs):
        lines.append(
            f"- catalogue run {i}: "
            + "; ".join(
                f"{name} {v['events_per_s']:.0f}/s over the window, {v['stored']} events stored"
                f" ({v['with_errors']} with schema_errors), server CPU {v['server_cpu_s']:.2f} s"
                f" ({v['cpu_us']:.0f} µs/event), request p50 {v['request_ms_p50']:.1f} ms"
                for name, v in ((n, r[n]) for n in r["order"])
            )
            + f"; load average at start {r['loadavg']}"
        )
    return lines


NOTE = """\
Run it alone with `.venv/bin/python bench/run.py --only catalogue` (`--runs N`, default 3;
`--quick` for a short smoke run that writes nothing). It writes only this section and its
entry in `results.json`; a whole `bench/run.py` run includes it. About 75 s for 3 runs.

- **Ingest with the catalogue**: figure 2's load (arrays of 100 events, 4 keep-alive clients,
  counted over a 4 s window after a 1 s warm-up, a daemon with no endpoints) once per variant,
  each on a fresh daemon, in an order that rotates from run to run: *none*, no catalogue (the
  reference); the bench's type `transaction.completed` in `[[event_types]]` with a JSON Schema
  of its data (`bench/catalogue.py`: every field typed, patterns on the ids, the line items an
  array of objects with 4 required fields, the payment an object) that the data matches, with
  `strict = false` (*recorded*: every event is checked and stored as it is) and with `strict =
  true` (*strict*: a mismatch would be a 422); and `strict = false` with a schema every event
  breaks in 3 places (*mismatched*: its amount, its currency, its card's last digits), so each
  event is stored with its 3 `schema_errors`. Server CPU is the daemon's utime + stime (from
  `/proc`) from just before the load to its end, divided by the events stored; the ratio is
  the variant's events/s over no catalogue's in the same run, and ±N µs its CPU per event
  against no catalogue's. Every reply must be a 202, and after the daemon stops the harness
  reads its database: every acknowledged event stored, `schema_errors` on every event of the
  broken variant (3 each) and on none of the others, and the count the database keeps of the
  type (`event_types_seen`, by a trigger on every insert, in every variant including the
  reference) equal to the events. What the mismatched figure pays for (timed by hand with
  `timeit` on this machine, not by this script): a matching event's check is one `is_valid`,
  about 1 µs with this schema; a mismatching one's is about 20 µs, of which `evaluate()` (run
  to count the errors) takes 9 µs, `iter_errors` (run again to word them) 5 µs and the wording
  and sorting the rest, and each row also stores the errors' JSON (about 200 bytes).
"""

MARK_START, MARK_END = "<!-- catalogue figure -->", "<!-- /catalogue figure -->"


def section(table_text: str, detail_lines: list[str], command: str, when: str) -> str:
    return (
        f"{MARK_START}\n## What the event-type catalogue costs at ingest\n\n"
        f"Measured by `{command}`, apart from the tables above ({when}).\n\n"
        f"{table_text}\n\n{NOTE}\n" + "\n".join(detail_lines) + f"\n{MARK_END}\n"
    )


def splice(readme: str, text: str) -> str:
    return dashboard.splice(readme, text, (MARK_START, MARK_END))
