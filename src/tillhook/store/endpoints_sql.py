"""Endpoint rows: to and from records, and applying the config file's endpoints."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any


from tillhook import rules
from tillhook.models import Endpoint, SigningSecret

COLUMNS = (
    "id, name, url, events, secrets, max_in_flight, rate_limit, ordered, headers, enabled,"
    " disabled_reason, config_managed"
)


def new_endpoint_id() -> str:
    return "ep_" + secrets.token_hex(8)


def to_endpoint(row: sqlite3.Row | tuple[Any, ...]) -> Endpoint:
    (id_, name, url, events, secrets_json, max_in_flight, rate_limit, ordered, headers, enabled,
     disabled_reason, config_managed) = row
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
    )


def secrets_json(values: Sequence[SigningSecret]) -> str:
    return json.dumps([{"secret": s.secret, "expires_at": s.expires_at} for s in values])


def apply_config(conn: sqlite3.Connection, endpoints: Sequence[Endpoint], now: float) -> list[str]:
    rows = conn.execute("SELECT name, secrets, config_managed FROM endpoints").fetchall()
    existing = {name: (secrets_value, managed) for name, secrets_value, managed in rows}
    for endpoint in endpoints:
        fields = (
            endpoint.url,
            json.dumps(list(endpoint.events)),
            endpoint.max_in_flight,
            endpoint.rate_limit,
            int(endpoint.ordered),
            json.dumps(dict(endpoint.headers)),
        )
        if endpoint.name in existing:
            # A secret left out of the file keeps the one generated before, so receivers keep verifying.
            stored = existing[endpoint.name][0]
            kept = secrets_json(endpoint.secrets) if endpoint.secrets else stored
            conn.execute(
                "UPDATE endpoints SET url = ?, events = ?, max_in_flight = ?, rate_limit = ?, ordered = ?,"
                " headers = ?, secrets = ?, config_managed = 1, updated_at = ? WHERE name = ?",
                (*fields, kept, now, endpoint.name),
            )
        else:
            chosen = endpoint.secrets or (SigningSecret(rules.new_secret()),)
            conn.execute(
                f"INSERT INTO endpoints ({COLUMNS}, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, 1, ?, ?)",
                (new_endpoint_id(), endpoint.name, endpoint.url, fields[1], secrets_json(chosen),
                 endpoint.max_in_flight, endpoint.rate_limit, int(endpoint.ordered), fields[5], now, now),
            )
    wanted = {e.name for e in endpoints}
    removed = [name for name, (_, managed) in existing.items() if managed and name not in wanted]
    for name in removed:
        # Dropping it from the file must not drop its pending deliveries: pause it instead.
        conn.execute(
            "UPDATE endpoints SET enabled = 0, config_managed = 0, updated_at = ?,"
            " disabled_reason = 'removed from the config file' WHERE name = ?",
            (now, name),
        )
    return removed
