"""The admin API's writes: endpoint changes, replays and manual retries. Each function runs
inside one write transaction of the group committer (see `SqliteStore._call`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tillhook.errors import Conflict, NotFound
from tillhook.models import DeliveryState, Endpoint, SigningSecret
from tillhook.store import endpoints_sql, log_sql
from tillhook.store.port import LogFilter, RetriedMatching

_UNFINISHED = "('pending', 'delivering')"


def fetch_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> Endpoint:
    rows = conn.execute(
        f"SELECT {endpoints_sql.COLUMNS} FROM endpoints WHERE id = ? AND deleted_at IS NULL", (endpoint_id,)
    ).fetchall()
    if not rows:
        raise NotFound(f"there is no endpoint {endpoint_id}")
    return endpoints_sql.to_endpoint(rows[0])


def insert_endpoint(conn: sqlite3.Connection, endpoint: Endpoint, now: float) -> Endpoint:
    endpoint_id = endpoints_sql.new_endpoint_id()
    conn.execute(
        f"INSERT INTO endpoints ({endpoints_sql.COLUMNS}, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            endpoint_id,
            endpoint.name,
            endpoint.url,
            json.dumps(list(endpoint.events)),
            endpoints_sql.secrets_json(endpoint.secrets),
            endpoint.max_in_flight,
            endpoint.rate_limit,
            int(endpoint.ordered),
            json.dumps(dict(endpoint.headers)),
            int(endpoint.enabled),
            *endpoints_sql.shaping_values(endpoint),
            now,
            now,
        ),
    )
    return fetch_endpoint(conn, endpoint_id)


_COLUMN_OF = {
    "name": "name",
    "url": "url",
    "events": "events",
    "max_in_flight": "max_in_flight",
    "rate_limit": "rate_limit",
    "ordered": "ordered",
    "headers": "headers",
    "filter": "filter",
    "transform": "transform",
    "preset": "preset",
    "extra_signature": "extra_signature",
    "description": "description",
    "category": "category",
}


def update_endpoint(conn: sqlite3.Connection, endpoint_id: str, changes: Mapping[str, Any], now: float) -> Endpoint:
    _editable(conn, endpoint_id)
    if changes:
        values = [
            json.dumps(v) if k in ("events", "headers") or (k == "extra_signature" and v is not None) else v
            for k, v in changes.items()
        ]
        assignments = ", ".join(f"{_COLUMN_OF[k]} = ?" for k in changes)
        conn.execute(f"UPDATE endpoints SET {assignments}, updated_at = ? WHERE id = ?", (*values, now, endpoint_id))
    return fetch_endpoint(conn, endpoint_id)


def delete_endpoint(conn: sqlite3.Connection, endpoint_id: str, now: float) -> int:
    """Cancels its unfinished deliveries (kept in the log) and frees its name; returns how
    many were cancelled."""
    _editable(conn, endpoint_id)
    cursor = conn.execute(
        f"UPDATE deliveries SET state = 'cancelled', next_attempt_at = NULL, updated_at = ?,"
        f" last_error = coalesce(last_error, 'endpoint deleted')"
        f" WHERE endpoint_id = ? AND state IN {_UNFINISHED}",
        (now, endpoint_id),
    )
    # Names of live endpoints cannot hold spaces, so the renamed one never collides.
    conn.execute(
        "UPDATE endpoints SET deleted_at = ?, enabled = 0, disabled_reason = 'deleted', updated_at = ?,"
        " name = name || ' (deleted ' || id || ')' WHERE id = ?",
        (now, now, endpoint_id),
    )
    return cursor.rowcount


def set_enabled(conn: sqlite3.Connection, endpoint_id: str, enabled: bool, reason: str | None, now: float) -> Endpoint:
    """Disabled, its deliveries (new ones too) are held; enabled, they are all due at once.
    An endpoint taken out of the config file is an ordinary one from then on."""
    fetch_endpoint(conn, endpoint_id)
    conn.execute(
        "UPDATE endpoints SET enabled = ?, disabled_reason = ?, removed_from_config_at = NULL,"
        " disabled_before_removal = NULL, updated_at = ? WHERE id = ?",
        (int(enabled), None if enabled else reason, now, endpoint_id),
    )
    if enabled:
        endpoints_sql.release_held(conn, endpoint_id, now)
    return fetch_endpoint(conn, endpoint_id)


def rotate_secret(
    conn: sqlite3.Connection, endpoint_id: str, new_secret: str, old_expires_at: float, now: float
) -> Endpoint:
    """The new secret becomes current; the old current one and any still-valid older ones keep
    signing until their expiry, so receivers can switch without losing a delivery."""
    endpoint = fetch_endpoint(conn, endpoint_id)
    kept: list[SigningSecret] = [SigningSecret(new_secret)]
    for secret in endpoint.secrets:
        expires = old_expires_at if secret.expires_at is None else min(secret.expires_at, old_expires_at)
        if expires > now and secret.secret != new_secret:
            kept.append(SigningSecret(secret.secret, expires))
    conn.execute(
        "UPDATE endpoints SET secrets = ?, updated_at = ? WHERE id = ?",
        (endpoints_sql.secrets_json(kept), now, endpoint_id),
    )
    return fetch_endpoint(conn, endpoint_id)


def _replay_source(only_failed: bool) -> str:
    """The events a replay makes deliveries for, an admin's tests aside: `replay` inserts them
    and `replay_count` counts them, from this one text so the two cannot disagree."""
    condition = ""
    if only_failed:
        condition = (
            " AND EXISTS (SELECT 1 FROM deliveries f WHERE f.event_id = e.id AND f.endpoint_id = :ep"
            " AND f.state = 'failed')"
            " AND NOT EXISTS (SELECT 1 FROM deliveries g WHERE g.event_id = e.id AND g.endpoint_id = :ep"
            " AND g.state = 'delivered')"
        )
    # An admin's test (stored as 1, an event as NULL) went to the one endpoint it tried: it
    # is never the POS's history to send again, there or anywhere else.
    return (
        " FROM events e"
        " WHERE e.created_at >= :since AND e.created_at < :until AND e.test IS NOT 1"
        " AND tillhook_subscribes(:patterns, e.type)"
        f" AND NOT EXISTS (SELECT 1 FROM deliveries u WHERE u.event_id = e.id AND u.endpoint_id = :ep"
        f" AND u.state IN {_UNFINISHED}){condition}"
    )


def replay_params(endpoint: Endpoint, since: float, until: float) -> dict[str, Any]:
    return {"ep": endpoint.id, "since": since, "until": until, "patterns": json.dumps(endpoint.events)}


def replay_count_query(only_failed: bool) -> str:
    return "SELECT count(*)" + _replay_source(only_failed)


def replay(
    conn: sqlite3.Connection,
    endpoint: Endpoint,
    since: float,
    until: float,
    only_failed: bool,
    now: float,
) -> int:
    """New pending deliveries to `endpoint` for the matching events received in [since, until),
    oldest first; events with a delivery still under way there are skipped. Under a filter,
    each checks it before its first attempt (the filter may be newer than the events)."""
    cursor = conn.execute(
        "INSERT INTO deliveries (event_id, endpoint_id, state, next_attempt_at, created_at, updated_at, check_filter)"
        f" SELECT e.id, :ep, 'pending', :now, :now, :now, {1 if endpoint.filter else 'NULL'}"
        + _replay_source(only_failed)
        + " ORDER BY e.seq",
        {**replay_params(endpoint, since, until), "now": now},
    )
    return cursor.rowcount


UNFINISHED_OF_ENDPOINT = f"SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND state IN {_UNFINISHED}"


def retry_delivery(conn: sqlite3.Connection, delivery_id: int, now: float) -> None:
    """Due now, whatever its state; a finished one gets a fresh `give_up_after` window."""
    rows = conn.execute(
        "SELECT d.state, ep.deleted_at, ep.enabled FROM deliveries d"
        " LEFT JOIN endpoints ep ON ep.id = d.endpoint_id WHERE d.id = ?",
        (delivery_id,),
    ).fetchall()
    if not rows:
        raise NotFound(f"there is no delivery {delivery_id}")
    state, deleted_at, enabled = rows[0]
    check_retryable(delivery_id, state, deleted_at, enabled)
    conn.execute(
        "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, updated_at = ?,"
        " first_attempt_at = CASE WHEN state = 'pending' THEN first_attempt_at END WHERE id = ?",
        (now, now, delivery_id),
    )


def _editable(conn: sqlite3.Connection, endpoint_id: str) -> Endpoint:
    endpoint = fetch_endpoint(conn, endpoint_id)
    if endpoint.config_managed:
        raise Conflict(
            f"endpoint {endpoint.name!r} comes from the config file: change it there and restart tillhook",
            slug="config-managed",
        )
    return endpoint


def _failed_matching(f: LogFilter) -> tuple[str, str, list[Any]]:
    """FROM, WHERE and parameters of the failed deliveries `f` matches, by the same builder as
    the delivery log's pages; the cursor and page size of `f` play no part."""
    return log_sql.deliveries_where(replace(f, state=DeliveryState.FAILED, before=None))


def count_failed_query(f: LogFilter) -> tuple[str, list[Any]]:
    source, where, params = _failed_matching(f)
    return f"SELECT count(*){source}{where}", params


def retry_matching(conn: sqlite3.Connection, f: LogFilter, now: float, at_most: int) -> RetriedMatching:
    """The failed deliveries `f` matches, oldest first and at most `at_most` of them, made due
    now with a fresh `give_up_after` window, as `retry_delivery` does one; those of a disabled
    or deleted endpoint stay failed (enable it first, or replay)."""
    matched = int(conn.execute(*count_failed_query(f)).fetchone()[0])
    source, where, params = _failed_matching(f)
    live = " AND ep.deleted_at IS NULL AND ep.enabled = 1"
    picked = [
        (row[0], row[1])
        for row in conn.execute(
            f"SELECT d.id, d.endpoint_id{source}{where}{live} ORDER BY d.id LIMIT ?", [*params, at_most]
        )
    ]
    for start in range(0, len(picked), 500):
        chunk = [delivery_id for delivery_id, _ in picked[start : start + 500]]
        conn.execute(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, updated_at = ?, first_attempt_at = NULL"
            f" WHERE state = 'failed' AND id IN ({', '.join('?' * len(chunk))})",
            [now, now, *chunk],
        )
    return RetriedMatching(matched, len(picked), tuple(sorted({endpoint_id for _, endpoint_id in picked})))


def check_retryable(delivery_id: int, state: str, deleted_at: float | None, enabled: object) -> None:
    """Conflict, saying why, unless a manual retry may make the delivery due now (both
    adapters' rule): nothing in flight, and its endpoint there and enabled."""
    if state == "delivering":
        raise Conflict(f"delivery {delivery_id} has an attempt in flight right now; wait for its outcome")
    if deleted_at is not None or enabled is None:
        raise Conflict(f"the endpoint of delivery {delivery_id} was deleted; replay the event to another endpoint")
    if not enabled:
        raise Conflict(f"the endpoint of delivery {delivery_id} is disabled; enable it first")
