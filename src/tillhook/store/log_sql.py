"""Reads for the delivery log and the status page: filtered, newest first, one page at a time
(keyset pagination: a page costs the same on the first day and after a million events)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from tillhook.models import DeliveryState
from tillhook.rules import subscribes
from tillhook.store.port import AttemptRow, DeliveryRow, EventRow, LogFilter, OrderedHead


@lru_cache(maxsize=256)
def _patterns(patterns_json: str) -> tuple[str, ...]:
    value = json.loads(patterns_json)
    return (value,) if isinstance(value, str) else tuple(value)


def sql_subscribes(patterns_json: str, event_type: str) -> bool:
    """SQL function `tillhook_subscribes(patterns, type)`: patterns is a JSON array or string."""
    return subscribes(_patterns(patterns_json), event_type)


# In the order of DeliveryRow's fields. A deleted endpoint keeps its row (renamed, so that
# the log still names it) and is told apart by deleted_at.
DELIVERY_COLUMNS = (
    "d.id, d.event_id, e.type AS event_type, d.endpoint_id, coalesce(ep.name, d.endpoint_id) AS endpoint,"
    " d.state, d.attempts, d.created_at, d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error,"
    " d.first_attempt_at, CASE WHEN ep.deleted_at IS NULL THEN ep.enabled END AS endpoint_enabled,"
    " ep.disabled_reason AS endpoint_disabled_reason, e.schema_errors AS event_schema_errors"
)
_DELIVERY_FROM = " FROM deliveries d JOIN events e ON e.id = d.event_id LEFT JOIN endpoints ep ON ep.id = d.endpoint_id"


def to_delivery(row: Sequence[Any]) -> DeliveryRow:
    """A row of DELIVERY_COLUMNS."""
    (
        id_,
        event_id,
        event_type,
        endpoint_id,
        endpoint,
        state,
        attempts,
        created_at,
        next_attempt_at,
        last_attempt_at,
        last_status,
        last_error,
        first_attempt_at,
        enabled,
        disabled_reason,
        schema_errors,
    ) = row
    return DeliveryRow(
        id=int(id_),
        event_id=str(event_id),
        event_type=str(event_type),
        endpoint_id=str(endpoint_id),
        endpoint=str(endpoint),
        state=DeliveryState(state),
        attempts=int(attempts),
        created_at=float(created_at),
        next_attempt_at=next_attempt_at,
        last_attempt_at=last_attempt_at,
        last_status=last_status,
        last_error=last_error,
        first_attempt_at=first_attempt_at,
        endpoint_enabled=None if enabled is None else bool(enabled),
        endpoint_disabled_reason=disabled_reason,
        event_schema_errors=schema_errors,
    )


def _where(f: LogFilter, equal: dict[str, Any], type_col: str, time_col: str, key_col: str) -> tuple[str, list[Any]]:
    """The WHERE clause of `f` (empty without conditions): the one place a filter becomes SQL,
    so a page of the log and a retry of what it matches cannot disagree."""
    where = [f"{column} = ?" for column, value in equal.items() if value is not None]
    params: list[Any] = [value for value in equal.values() if value is not None]
    for condition, value in (
        (f"tillhook_subscribes(?, {type_col})", None if f.type_pattern is None else json.dumps(f.type_pattern)),
        (f"{time_col} >= ?", f.since),
        (f"{time_col} < ?", f.until),
        (f"{key_col} < ?", f.before),
    ):
        if value is not None:
            where.append(condition)
            params.append(value)
    return (f" WHERE {' AND '.join(where)}" if where else ""), params


def _page_query(
    select: str, f: LogFilter, equal: dict[str, Any], type_col: str, time_col: str, key_col: str
) -> tuple[str, list[Any]]:
    """`select` filtered by `f`, newest first by `key_col`, one row beyond the page (to know
    whether there is a next one)."""
    clause, params = _where(f, equal, type_col, time_col, key_col)
    return f"{select}{clause} ORDER BY {key_col} DESC LIMIT ?", [*params, f.limit + 1]


def _delivery_equal(f: LogFilter) -> dict[str, Any]:
    return {
        "d.endpoint_id": f.endpoint_id,
        "d.state": f.state,
        "d.event_id": f.event_id,
        "d.last_status": f.last_status,
    }


def deliveries_query(f: LogFilter) -> tuple[str, list[Any]]:
    return _page_query(
        f"SELECT {DELIVERY_COLUMNS}{_DELIVERY_FROM}", f, _delivery_equal(f), "e.type", "d.created_at", "d.id"
    )


def deliveries_where(f: LogFilter) -> tuple[str, str, list[Any]]:
    """FROM and WHERE of the deliveries `f` matches (its cursor and page size aside), for
    statements that count or change all of them."""
    clause, params = _where(f, _delivery_equal(f), "e.type", "d.created_at", "d.id")
    return _DELIVERY_FROM, clause, params


def delivery_query(delivery_id: int) -> tuple[str, list[Any]]:
    return f"SELECT {DELIVERY_COLUMNS}{_DELIVERY_FROM} WHERE d.id = ?", [delivery_id]


EVENT_COLUMNS = "seq, id, type, idempotency_key, created_at, schema_errors, test"


def to_event(row: Sequence[Any]) -> EventRow:
    """A row of EVENT_COLUMNS."""
    seq, id_, type_, idempotency_key, created_at, schema_errors, test = row[:7]
    return EventRow(
        seq=int(seq),
        id=str(id_),
        type=str(type_),
        idempotency_key=idempotency_key,
        created_at=float(created_at),
        schema_errors=schema_errors,
        test=bool(test),
    )


def events_query(f: LogFilter) -> tuple[str, list[Any]]:
    equal = {"id": f.event_id, "idempotency_key": f.idempotency_key}
    return _page_query(f"SELECT {EVENT_COLUMNS} FROM events", f, equal, "type", "created_at", "seq")


ATTEMPTS_OF_DELIVERY = (
    "SELECT started_at, duration_ms, status, error, response_excerpt, outcome, body_sent"
    " FROM attempts WHERE delivery_id = ? ORDER BY id"
)


def to_attempt(row: Sequence[Any]) -> AttemptRow:
    """A row of ATTEMPTS_OF_DELIVERY."""
    started_at, duration_ms, status, error, response_excerpt, outcome, body_sent = row
    return AttemptRow(
        started_at=float(started_at),
        duration_ms=float(duration_ms),
        status=status,
        error=error,
        response_excerpt=response_excerpt,
        outcome=str(outcome),
        body_sent=None if body_sent is None else bytes(body_sent),
    )


# The oldest pending delivery of one endpoint: the unfinished index read in id (creation)
# order, skipping the few in flight, so it costs the same with a million waiting.
OLDEST_PENDING_OF = (
    "SELECT * FROM (SELECT endpoint_id, created_at FROM deliveries WHERE endpoint_id = ?"
    " AND state IN ('pending', 'delivering') AND state = 'pending' ORDER BY id LIMIT 1)"
)
# Counted on the partial indexes, so the status page stays quick with a large backlog.
PENDING_BY_ENDPOINT = (
    "SELECT endpoint_id, count(*), min(id) FROM deliveries WHERE state = 'pending' GROUP BY endpoint_id"
)
# The few in flight, found on their partial index (both adapters' statement).
IN_FLIGHT_BY_ENDPOINT = "SELECT endpoint_id, count(*) FROM deliveries WHERE state = 'delivering' GROUP BY endpoint_id"
# One statement, so one snapshot: each unfinished or unsuccessful state counted on its partial
# index, delivered as the rest of all rows (GROUP BY state read the whole table, ~0.5 s at 1M
# rows). All rows: count(*) walks the smallest index (~10-25 ms at 1M rows) once; after that
# only the rows above the highest id counted, as ids only grow and rows go only by the purge.
_COUNT_STATES = (
    " UNION ALL SELECT 'max_id', max(id) FROM deliveries"
    " UNION ALL SELECT 'pending', count(*) FROM deliveries WHERE state = 'pending'"
    " UNION ALL SELECT 'delivering', count(*) FROM deliveries WHERE state = 'delivering'"
    " UNION ALL SELECT state, count(*) FROM deliveries WHERE state IN ('failed', 'cancelled') GROUP BY state"
)
COUNT_BY_STATE = "SELECT 'all', count(*) FROM deliveries" + _COUNT_STATES
COUNT_BY_STATE_SINCE = "SELECT 'all', count(*) FROM deliveries WHERE id > ?" + _COUNT_STATES
ENDPOINT_STATS = (
    "SELECT id, last_success_at, last_failure_at, last_failure_reason FROM endpoints WHERE deleted_at IS NULL"
)
ORDERED_HEAD = (
    "SELECT id, event_id, state, attempts, next_attempt_at, last_status, last_error FROM deliveries"
    " WHERE endpoint_id = ? AND state IN ('pending', 'delivering') ORDER BY id LIMIT 1"
)


def to_ordered_head(row: Sequence[Any]) -> OrderedHead:
    """A row of ORDERED_HEAD."""
    id_, event_id, state, attempts, next_attempt_at, last_status, last_error = row
    return OrderedHead(
        id=int(id_),
        event_id=str(event_id),
        state=DeliveryState(state),
        attempts=int(attempts),
        next_attempt_at=next_attempt_at,
        last_status=last_status,
        last_error=last_error,
    )


# Attempts per hour (started_at // 3600) and duration step, kept by a trigger (store/schema.py).
ATTEMPT_HOURS = "SELECT hour, bucket, delivered, failed FROM attempt_hours WHERE hour >= ? ORDER BY hour, bucket"
