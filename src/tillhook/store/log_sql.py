"""Reads for the delivery log and the status page: filtered, newest first, one page at a time
(keyset pagination: a page costs the same on the first day and after a million events)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tillhook.rules import subscribes


@lru_cache(maxsize=256)
def _patterns(patterns_json: str) -> tuple[str, ...]:
    value = json.loads(patterns_json)
    return (value,) if isinstance(value, str) else tuple(value)


def sql_subscribes(patterns_json: str, event_type: str) -> bool:
    """SQL function `tillhook_subscribes(patterns, type)`: patterns is a JSON array or string."""
    return subscribes(_patterns(patterns_json), event_type)


@dataclass(frozen=True, slots=True)
class LogFilter:
    endpoint_id: str | None = None
    state: str | None = None
    type_pattern: str | None = None
    event_id: str | None = None
    since: float | None = None
    until: float | None = None
    before: int | None = None  # the cursor: rows older than this one
    limit: int = 50


DELIVERY_COLUMNS = (
    "d.id, d.event_id, e.type AS event_type, d.endpoint_id, coalesce(ep.name, d.endpoint_id) AS endpoint,"
    " d.state, d.attempts, d.created_at, d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error,"
    " d.first_attempt_at"
)
_DELIVERY_FROM = " FROM deliveries d JOIN events e ON e.id = d.event_id LEFT JOIN endpoints ep ON ep.id = d.endpoint_id"


def deliveries_query(f: LogFilter) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if f.endpoint_id is not None:
        where.append("d.endpoint_id = ?")
        params.append(f.endpoint_id)
    if f.state is not None:
        where.append("d.state = ?")
        params.append(f.state)
    if f.event_id is not None:
        where.append("d.event_id = ?")
        params.append(f.event_id)
    if f.type_pattern is not None:
        where.append("tillhook_subscribes(?, e.type)")
        params.append(json.dumps(f.type_pattern))
    if f.since is not None:
        where.append("d.created_at >= ?")
        params.append(f.since)
    if f.until is not None:
        where.append("d.created_at < ?")
        params.append(f.until)
    if f.before is not None:
        where.append("d.id < ?")
        params.append(f.before)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    params.append(f.limit + 1)
    return f"SELECT {DELIVERY_COLUMNS}{_DELIVERY_FROM}{clause} ORDER BY d.id DESC LIMIT ?", params


def delivery_query(delivery_id: int) -> tuple[str, list[Any]]:
    return f"SELECT {DELIVERY_COLUMNS}{_DELIVERY_FROM} WHERE d.id = ?", [delivery_id]


EVENT_COLUMNS = "seq, id, type, idempotency_key, created_at"


def events_query(f: LogFilter) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if f.type_pattern is not None:
        where.append("tillhook_subscribes(?, type)")
        params.append(json.dumps(f.type_pattern))
    if f.since is not None:
        where.append("created_at >= ?")
        params.append(f.since)
    if f.until is not None:
        where.append("created_at < ?")
        params.append(f.until)
    if f.before is not None:
        where.append("seq < ?")
        params.append(f.before)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    params.append(f.limit + 1)
    return f"SELECT {EVENT_COLUMNS} FROM events{clause} ORDER BY seq DESC LIMIT ?", params


ATTEMPTS_OF_DELIVERY = (
    "SELECT started_at, duration_ms, status, error, response_excerpt, outcome"
    " FROM attempts WHERE delivery_id = ? ORDER BY id"
)

# Counted on the partial indexes, so the status page stays quick with a large backlog.
PENDING_BY_ENDPOINT = (
    "SELECT endpoint_id, count(*), min(id) FROM deliveries WHERE state = 'pending' GROUP BY endpoint_id"
)
COUNT_BY_STATE = "SELECT state, count(*) FROM deliveries GROUP BY state"
ENDPOINT_STATS = (
    "SELECT id, last_success_at, last_failure_at, last_failure_reason FROM endpoints WHERE deleted_at IS NULL"
)
ORDERED_HEAD = (
    "SELECT id, event_id, state, attempts, next_attempt_at, last_error, last_status FROM deliveries"
    " WHERE endpoint_id = ? AND state IN ('pending', 'delivering') ORDER BY id LIMIT 1"
)
