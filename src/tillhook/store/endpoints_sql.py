"""Endpoint rows: to and from records, and applying the config file's endpoints."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any

from tillhook import rules
from tillhook.models import Endpoint, ExtraSignature, SigningSecret
from tillhook.store.port import ConfigApplied

COLUMNS = (
    "id, name, url, events, secrets, max_in_flight, rate_limit, ordered, headers, enabled,"
    " disabled_reason, config_managed, removed_from_config_at, filter, transform, preset, extra_signature,"
    " description, category"
)
# What the config file and the API set alike, in this order, as columns and values.
SHAPING = ("filter", "transform", "preset", "extra_signature", "description", "category")


def new_endpoint_id() -> str:
    return "ep_" + secrets.token_hex(8)


def to_endpoint(row: sqlite3.Row | tuple[Any, ...]) -> Endpoint:
    (
        id_,
        name,
        url,
        events,
        secrets_json,
        max_in_flight,
        rate_limit,
        ordered,
        headers,
        enabled,
        disabled_reason,
        config_managed,
        removed_from_config_at,
        filter_,
        transform,
        preset,
        extra_signature,
        description,
        category,
    ) = row
    return Endpoint(
        id=str(id_),
        name=str(name),
        url=str(url),
        events=tuple(json.loads(str(events))),
        secrets=tuple(SigningSecret(s["secret"], s["expires_at"]) for s in json.loads(str(secrets_json))),
        max_in_flight=int(max_in_flight) if max_in_flight is not None else None,
        rate_limit=float(rate_limit) if rate_limit is not None else None,
        ordered=bool(ordered),
        headers=tuple(json.loads(str(headers)).items()),
        enabled=bool(enabled),
        disabled_reason=str(disabled_reason) if disabled_reason is not None else None,
        config_managed=bool(config_managed),
        removed_from_config=removed_from_config_at is not None,
        filter=str(filter_) if filter_ is not None else None,
        transform=str(transform) if transform is not None else None,
        preset=str(preset) if preset is not None else None,
        extra_signature=ExtraSignature(**json.loads(str(extra_signature))) if extra_signature is not None else None,
        description=str(description) if description is not None else None,
        category=str(category) if category is not None else None,
    )


def shaping_values(endpoint: Endpoint) -> tuple[str | None, ...]:
    """The values of SHAPING's columns."""
    signature = endpoint.extra_signature
    return (
        endpoint.filter,
        endpoint.transform,
        endpoint.preset,
        json.dumps({"header": signature.header, "scheme": signature.scheme}) if signature else None,
        endpoint.description,
        endpoint.category,
    )


def secrets_json(values: Sequence[SigningSecret]) -> str:
    return json.dumps([{"secret": s.secret, "expires_at": s.expires_at} for s in values])


REMOVED_REASON = "removed from the config file"


def apply_config(conn: sqlite3.Connection, endpoints: Sequence[Endpoint], now: float) -> ConfigApplied:
    rows = conn.execute(
        "SELECT name, secrets, config_managed, removed_from_config_at FROM endpoints WHERE deleted_at IS NULL"
    ).fetchall()
    existing = {name: (secrets_value, managed, removed_at) for name, secrets_value, managed, removed_at in rows}
    restored = []
    for endpoint in endpoints:
        if endpoint.name not in existing:
            _insert(conn, endpoint, now)
            continue
        stored, _, removed_at = existing[endpoint.name]
        _update(conn, endpoint, stored, now)
        if removed_at is not None:
            restored.append((endpoint.name, *_restore(conn, endpoint.name, now)))
    wanted = {e.name for e in endpoints}
    removed = [name for name, (_, managed, _) in existing.items() if managed and name not in wanted]
    for name in removed:
        # Dropping it from the file must not drop its deliveries: it gets no new ones and
        # holds the ones it has (disabled, so nothing claims them) until it is put back.
        conn.execute(
            "UPDATE endpoints SET disabled_before_removal = CASE WHEN enabled THEN NULL ELSE disabled_reason END,"
            " enabled = 0, disabled_reason = ?, config_managed = 0, removed_from_config_at = ?, updated_at = ?"
            " WHERE name = ?",
            (REMOVED_REASON, now, now, name),
        )
    return ConfigApplied(removed=tuple(removed), restored=tuple(restored))


def _insert(conn: sqlite3.Connection, endpoint: Endpoint, now: float) -> None:
    chosen = endpoint.secrets or (SigningSecret(rules.new_secret()),)
    conn.execute(
        f"INSERT INTO endpoints ({COLUMNS}, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, 1, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_endpoint_id(),
            endpoint.name,
            endpoint.url,
            json.dumps(list(endpoint.events)),
            secrets_json(chosen),
            endpoint.max_in_flight,
            endpoint.rate_limit,
            int(endpoint.ordered),
            json.dumps(dict(endpoint.headers)),
            *shaping_values(endpoint),
            now,
            now,
        ),
    )


def _update(conn: sqlite3.Connection, endpoint: Endpoint, stored_secrets: str, now: float) -> None:
    # A secret left out of the file keeps the one generated before, so receivers keep verifying.
    kept = secrets_json(endpoint.secrets) if endpoint.secrets else stored_secrets
    conn.execute(
        "UPDATE endpoints SET url = ?, events = ?, max_in_flight = ?, rate_limit = ?, ordered = ?,"
        " headers = ?, secrets = ?, filter = ?, transform = ?, preset = ?, extra_signature = ?,"
        " description = ?, category = ?, config_managed = 1, updated_at = ? WHERE name = ?",
        (
            endpoint.url,
            json.dumps(list(endpoint.events)),
            endpoint.max_in_flight,
            endpoint.rate_limit,
            int(endpoint.ordered),
            json.dumps(dict(endpoint.headers)),
            kept,
            *shaping_values(endpoint),
            now,
            endpoint.name,
        ),
    )


def _restore(conn: sqlite3.Connection, name: str, now: float) -> tuple[bool, int]:
    """Undo the removal of an endpoint put back into the file: enabled again, unless it had
    been disabled before it was taken out. Returns whether it is enabled, and how many held
    deliveries that released."""
    conn.execute(
        "UPDATE endpoints SET enabled = disabled_before_removal IS NULL, disabled_reason = disabled_before_removal,"
        " disabled_before_removal = NULL, removed_from_config_at = NULL, updated_at = ? WHERE name = ?",
        (now, name),
    )
    endpoint_id, enabled = conn.execute("SELECT id, enabled FROM endpoints WHERE name = ?", (name,)).fetchone()
    return bool(enabled), release_held(conn, endpoint_id, now) if enabled else 0


def release_held(conn: sqlite3.Connection, endpoint_id: str, now: float) -> int:
    """Make every pending delivery of an endpoint that is enabled again due now: they go at
    once, oldest first (a retry's later due time would otherwise let newer ones overtake it)."""
    cursor = conn.execute(
        "UPDATE deliveries SET next_attempt_at = ?, updated_at = ? WHERE endpoint_id = ? AND state = 'pending'",
        (now, now, endpoint_id),
    )
    return cursor.rowcount
