"""The PostgreSQL outbox's queries for the delivery log, the status figures, and what the
admin writes count or change (a replay's events, the failed deliveries a filter matches):
the SQLite ones' twins with `$n` placeholders. The rows come back in the SQLite queries'
column order, so store/log_sql.py's mappings (`to_delivery`, `to_event`, …) read them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from tillhook.models import DeliveryState, Endpoint
from tillhook.store.log_sql import DELIVERY_COLUMNS, EVENT_COLUMNS
from tillhook.store.port import LogFilter


class Args:
    """The parameters of one statement: `args(value)` keeps the value and gives the
    placeholder to write where it goes, so text and parameters cannot drift apart."""

    def __init__(self, values: Iterable[Any] = ()) -> None:
        self.values: list[Any] = list(values)

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


_UNFINISHED = "('pending', 'delivering')"
DELIVERY_FROM = " FROM deliveries d JOIN events e ON e.id = d.event_id LEFT JOIN endpoints ep ON ep.id = d.endpoint_id"


def _where(f: LogFilter, equal: dict[str, Any], type_col: str, time_col: str, key_col: str, args: Args) -> str:
    """The WHERE clause of `f` (empty without conditions): the one place a filter becomes SQL,
    so a page of the log and a retry of what it matches cannot disagree."""
    conditions = [f"{column} = {args(value)}" for column, value in equal.items() if value is not None]
    if f.type_pattern is not None:
        conditions.append(f"tillhook_subscribes({args(json.dumps(f.type_pattern))}, {type_col})")
    if f.since is not None:
        conditions.append(f"{time_col} >= {args(float(f.since))}")
    if f.until is not None:
        conditions.append(f"{time_col} < {args(float(f.until))}")
    if f.before is not None:
        conditions.append(f"{key_col} < {args(f.before)}")
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _page(
    select: str, f: LogFilter, equal: dict[str, Any], type_col: str, time_col: str, key_col: str
) -> tuple[str, list[Any]]:
    """`select` filtered by `f`, newest first by `key_col`, one row beyond the page (to know
    whether there is a next one)."""
    args = Args()
    clause = _where(f, equal, type_col, time_col, key_col, args)
    return f"{select}{clause} ORDER BY {key_col} DESC LIMIT {args(f.limit + 1)}", args.values


def _delivery_equal(f: LogFilter) -> dict[str, Any]:
    return {
        "d.endpoint_id": f.endpoint_id,
        "d.state": None if f.state is None else DeliveryState(f.state).value,
        "d.event_id": f.event_id,
        "d.last_status": f.last_status,
    }


def deliveries_query(f: LogFilter) -> tuple[str, list[Any]]:
    return _page(f"SELECT {DELIVERY_COLUMNS}{DELIVERY_FROM}", f, _delivery_equal(f), "e.type", "d.created_at", "d.id")


DELIVERY = f"SELECT {DELIVERY_COLUMNS}{DELIVERY_FROM} WHERE d.id = $1"


def events_query(f: LogFilter) -> tuple[str, list[Any]]:
    equal = {"id": f.event_id, "idempotency_key": f.idempotency_key}
    return _page(f"SELECT {EVENT_COLUMNS} FROM events", f, equal, "type", "created_at", "seq")


EVENT = f"SELECT {EVENT_COLUMNS}, filtered_out, body FROM events WHERE id = $1"
ATTEMPTS_OF_DELIVERY = (
    "SELECT started_at, duration_ms, status, error, response_excerpt, outcome, body_sent"
    " FROM attempts WHERE delivery_id = $1 ORDER BY id"
)

# -- what the admin writes count or change (store/pg/admin.py runs the changes) -------------


def failed_matching_where(f: LogFilter) -> tuple[str, str, list[Any]]:
    """FROM, WHERE and parameters of the failed deliveries `f` matches, by the builder of the
    delivery log's pages (the cursor and page size of `f` play no part). The placeholders are
    $1..$len(params): a statement adding parameters of its own numbers them on from there
    (`Args(params)`)."""
    matched = replace(f, state=DeliveryState.FAILED, before=None)
    args = Args()
    clause = _where(matched, _delivery_equal(matched), "e.type", "d.created_at", "d.id", args)
    return DELIVERY_FROM, clause, args.values


def count_failed_query(f: LogFilter) -> tuple[str, list[Any]]:
    source, where, params = failed_matching_where(f)
    return f"SELECT count(*){source}{where}", params


def replay_source(only_failed: bool) -> str:
    """The events a replay makes deliveries for (an admin's tests aside), as FROM and WHERE
    over `events e`, with the parameters of `replay_args` ($1 endpoint id, $2 since, $3 until,
    $4 its patterns): the replay inserts them and `replay_count_query` counts them, from this
    one text."""
    condition = ""
    if only_failed:
        condition = (
            " AND EXISTS (SELECT 1 FROM deliveries f WHERE f.event_id = e.id AND f.endpoint_id = $1"
            " AND f.state = 'failed')"
            " AND NOT EXISTS (SELECT 1 FROM deliveries g WHERE g.event_id = e.id AND g.endpoint_id = $1"
            " AND g.state = 'delivered')"
        )
    # An admin's test (stored as true, an event as NULL) went to the one endpoint it tried: it
    # is never the POS's history to send again, there or anywhere else.
    return (
        " FROM events e"
        " WHERE e.created_at >= $2 AND e.created_at < $3 AND e.test IS NOT TRUE"
        " AND tillhook_subscribes($4, e.type)"
        " AND NOT EXISTS (SELECT 1 FROM deliveries u WHERE u.event_id = e.id AND u.endpoint_id = $1"
        f" AND u.state IN {_UNFINISHED}){condition}"
    )


def replay_args(endpoint: Endpoint, since: float, until: float) -> list[Any]:
    return [endpoint.id, float(since), float(until), json.dumps(endpoint.events)]


def replay_count_query(only_failed: bool) -> str:
    """With the parameters of `replay_args`."""
    return "SELECT count(*)" + replay_source(only_failed)


UNFINISHED_OF_ENDPOINT = f"SELECT count(*) FROM deliveries WHERE endpoint_id = $1 AND state IN {_UNFINISHED}"

# -- figures -------------------------------------------------------------------------------

# One statement, so one snapshot: the unfinished and unsuccessful states each counted on their
# partial index (index-only), delivered as the rest of all rows. Counting all rows is most of
# the cost: ~60 ms at 1M deliveries (a parallel scan), where GROUP BY state took ~170 ms; the
# partial counts take ~10 ms with 20k pending. Asked for by a status page or a metrics scrape,
# not per delivery, so no count is kept between calls (several daemons write the table).
COUNT_BY_STATE = (
    "SELECT (SELECT count(*) FROM deliveries),"
    " (SELECT count(*) FROM deliveries WHERE state = 'pending'),"
    " (SELECT count(*) FROM deliveries WHERE state = 'delivering'),"
    " (SELECT count(*) FROM deliveries WHERE state = 'failed'),"
    " (SELECT count(*) FROM deliveries WHERE state = 'cancelled')"
)
# The oldest pending delivery's creation with the count: one statement, so one snapshot.
PENDING_BY_ENDPOINT = (
    "SELECT p.endpoint_id, p.pending, d.created_at FROM ("
    "SELECT endpoint_id, count(*) AS pending, min(id) AS oldest FROM deliveries WHERE state = 'pending'"
    " GROUP BY endpoint_id) p JOIN deliveries d ON d.id = p.oldest"
)
# Per endpoint asked, its unfinished index read in id (creation) order, skipping the few in
# flight, so it costs the same with a million waiting; the oldest of those first, ties in the
# order asked.
OLDEST_PENDING = (
    "SELECT d.endpoint_id, d.created_at FROM unnest($1::text[]) WITH ORDINALITY AS asked(id, n)"
    " CROSS JOIN LATERAL (SELECT endpoint_id, created_at FROM deliveries WHERE endpoint_id = asked.id"
    f" AND state IN {_UNFINISHED} AND state = 'pending' ORDER BY id LIMIT 1) d"
    " ORDER BY d.created_at, asked.n LIMIT 1"
)
ORDERED_HEADS = (
    "SELECT d.endpoint_id, d.id, d.event_id, d.state, d.attempts, d.next_attempt_at, d.last_status, d.last_error"
    " FROM unnest($1::text[]) AS asked(id) CROSS JOIN LATERAL ("
    "SELECT * FROM deliveries WHERE endpoint_id = asked.id"
    f" AND state IN {_UNFINISHED} ORDER BY id LIMIT 1) d"
)
DAEMONS = (
    "SELECT id, host, pid, listen, started_at, seen_at, seen_at + lease_s >= $1 FROM daemons ORDER BY started_at, id"
)
ATTEMPT_HOURS = "SELECT hour, bucket, delivered, failed FROM attempt_hours WHERE hour >= $1 ORDER BY hour, bucket"
