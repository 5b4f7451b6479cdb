"""The PostgreSQL outbox's endpoint writes: the admin API's changes and applying the config
file's endpoints (the rows mapped as on SQLite, by store/endpoints_sql.py), each telling the
other daemons sharing the outbox in its own transaction (NOTIFY is sent at commit, or never).

Locks are taken in the order a batch of outcomes takes them (store/pg/batch.py): the
endpoints' rows first, in id order as the attempts' trigger locks them (store/pg/schema.py),
then their deliveries; so an admin write and a batch wait for each other, never deadlock."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from tillhook import rules
from tillhook.errors import Conflict, NotFound
from tillhook.models import Endpoint, SigningSecret
from tillhook.store.endpoints_sql import (
    COLUMNS,
    REMOVED_REASON,
    new_endpoint_id,
    secrets_json,
    shaping_values,
    to_endpoint,
)
from tillhook.store.pg.batch import DUE_CHANNEL, ENDPOINTS_CHANNEL, notify_payloads
from tillhook.store.pg.connect import Conn
from tillhook.store.pg.schema import LOCK_SPACE
from tillhook.store.port import ConfigApplied

# Daemons starting together with the same config apply it one after the other.
CONFIG_LOCK = 2

UNFINISHED = "('pending', 'delivering')"

_INSERT = (
    f"INSERT INTO endpoints ({COLUMNS}, created_at, updated_at) VALUES"
    " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, NULL, $12, $13, $14, $15, $16, $17, $18, $18)"
)

# What the admin API may change, by Endpoint field: the columns of the same names.
_EDITABLE = frozenset(
    [
        "name",
        "url",
        "events",
        "max_in_flight",
        "rate_limit",
        "ordered",
        "headers",
        "filter",
        "transform",
        "preset",
        "extra_signature",
        "description",
        "category",
    ]
)


def changed_rows(status: str) -> int:
    """The row count of a command's status ("UPDATE 3", "INSERT 0 3")."""
    return int(status.rsplit(" ", 1)[-1])


async def notify(conn: Conn, channel: str, endpoint_ids: Iterable[str]) -> None:
    """Tell the daemons listening on `channel` (ENDPOINTS_CHANNEL: these changed, read them
    again; DUE_CHANNEL: these have deliveries due now) once the transaction commits."""
    ids = list(endpoint_ids)
    if ids:
        await conn.execute("SELECT pg_notify($1, x) FROM unnest($2::text[]) AS x", channel, notify_payloads(ids))


async def fetch_endpoint(conn: Conn, endpoint_id: str, *, lock: bool = False) -> Endpoint:
    """`lock`: its row stays as read until the transaction ends (a change computed from it)."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM endpoints WHERE id = $1 AND deleted_at IS NULL{' FOR UPDATE' if lock else ''}",
        endpoint_id,
    )
    if row is None:
        raise NotFound(f"there is no endpoint {endpoint_id}")
    return to_endpoint(tuple(row))


def _name_taken(name: object) -> Conflict:
    return Conflict(f"an endpoint named {name!r} exists already", slug="name-taken")


def _values(
    endpoint_id: str, endpoint: Endpoint, chosen: Sequence[SigningSecret], enabled: bool, managed: bool, now: float
) -> tuple[Any, ...]:
    """The parameters of _INSERT."""
    return (
        endpoint_id,
        endpoint.name,
        endpoint.url,
        json.dumps(list(endpoint.events)),
        secrets_json(chosen),
        endpoint.max_in_flight,
        endpoint.rate_limit,
        endpoint.ordered,
        json.dumps(dict(endpoint.headers)),
        enabled,
        managed,
        *shaping_values(endpoint),
        now,
    )


async def insert_endpoint(conn: Conn, endpoint: Endpoint, now: float) -> Endpoint:
    endpoint_id = new_endpoint_id()
    try:
        await conn.execute(_INSERT, *_values(endpoint_id, endpoint, endpoint.secrets, endpoint.enabled, False, now))
    except asyncpg.UniqueViolationError:
        raise _name_taken(endpoint.name) from None
    await notify(conn, ENDPOINTS_CHANNEL, [endpoint_id])
    return await fetch_endpoint(conn, endpoint_id)


async def _editable(conn: Conn, endpoint_id: str, *, lock: bool = False) -> Endpoint:
    endpoint = await fetch_endpoint(conn, endpoint_id, lock=lock)
    if endpoint.config_managed:
        raise Conflict(
            f"endpoint {endpoint.name!r} comes from the config file: change it there and restart tillhook",
            slug="config-managed",
        )
    return endpoint


async def update_endpoint(conn: Conn, endpoint_id: str, changes: Mapping[str, Any], now: float) -> Endpoint:
    await _editable(conn, endpoint_id, lock=True)
    if changes:
        unknown = set(changes) - _EDITABLE
        if unknown:
            raise ValueError(f"not a field the admin API changes: {', '.join(sorted(unknown))}")
        values = [
            json.dumps(v) if k in ("events", "headers") or (k == "extra_signature" and v is not None) else v
            for k, v in changes.items()
        ]
        assignments = ", ".join(f"{k} = ${i}" for i, k in enumerate(changes, start=1))
        n = len(values)
        try:
            await conn.execute(
                f"UPDATE endpoints SET {assignments}, updated_at = ${n + 1} WHERE id = ${n + 2}",
                *values,
                now,
                endpoint_id,
            )
        except asyncpg.UniqueViolationError:
            raise _name_taken(changes.get("name")) from None
        await notify(conn, ENDPOINTS_CHANNEL, [endpoint_id])
    return await fetch_endpoint(conn, endpoint_id)


async def delete_endpoint(conn: Conn, endpoint_id: str, now: float) -> int:
    """Cancels its unfinished deliveries (kept in the log; one in flight is no daemon's any
    more, so its outcome changes nothing) and frees its name; returns how many it cancelled."""
    await _editable(conn, endpoint_id, lock=True)
    status = await conn.execute(
        "UPDATE deliveries SET state = 'cancelled', next_attempt_at = NULL, updated_at = $1,"
        " last_error = coalesce(last_error, 'endpoint deleted'), claimed_by = NULL, lease_until = NULL"
        f" WHERE state IN {UNFINISHED} AND id IN (SELECT id FROM deliveries WHERE endpoint_id = $2"
        f" AND state IN {UNFINISHED} ORDER BY id FOR UPDATE)",
        now,
        endpoint_id,
    )
    # Names of live endpoints cannot hold spaces, so the renamed one never collides.
    await conn.execute(
        "UPDATE endpoints SET deleted_at = $1, enabled = false, disabled_reason = 'deleted', updated_at = $1,"
        " name = name || ' (deleted ' || id || ')' WHERE id = $2",
        now,
        endpoint_id,
    )
    await notify(conn, ENDPOINTS_CHANNEL, [endpoint_id])
    return changed_rows(status)


async def release_held(conn: Conn, endpoint_id: str, now: float) -> int:
    """Make every pending delivery of an endpoint that is enabled again due now: they go at
    once, oldest first (a retry's later due time would otherwise let newer ones overtake it).
    The caller tells the daemons (DUE_CHANNEL) when this released any."""
    status = await conn.execute(
        "UPDATE deliveries SET next_attempt_at = $1, updated_at = $1 WHERE state = 'pending' AND id IN"
        " (SELECT id FROM deliveries WHERE endpoint_id = $2 AND state = 'pending' ORDER BY id FOR UPDATE)",
        now,
        endpoint_id,
    )
    return changed_rows(status)


async def set_enabled(conn: Conn, endpoint_id: str, enabled: bool, reason: str | None, now: float) -> Endpoint:
    """Disabled, its deliveries (new ones too) are held; enabled, they are all due at once.
    An endpoint taken out of the config file is an ordinary one from then on."""
    await fetch_endpoint(conn, endpoint_id, lock=True)
    released = await release_held(conn, endpoint_id, now) if enabled else 0
    await conn.execute(
        "UPDATE endpoints SET enabled = $1, disabled_reason = $2, removed_from_config_at = NULL,"
        " disabled_before_removal = NULL, updated_at = $3 WHERE id = $4",
        enabled,
        None if enabled else reason,
        now,
        endpoint_id,
    )
    await notify(conn, ENDPOINTS_CHANNEL, [endpoint_id])
    if released:
        await notify(conn, DUE_CHANNEL, [endpoint_id])
    return await fetch_endpoint(conn, endpoint_id)


async def rotate_secret(conn: Conn, endpoint_id: str, new_secret: str, old_expires_at: float, now: float) -> Endpoint:
    """The new secret becomes current; the old current one and any still-valid older ones keep
    signing until their expiry, so receivers can switch without losing a delivery."""
    endpoint = await fetch_endpoint(conn, endpoint_id, lock=True)
    kept: list[SigningSecret] = [SigningSecret(new_secret)]
    for secret in endpoint.secrets:
        expires = old_expires_at if secret.expires_at is None else min(secret.expires_at, old_expires_at)
        if expires > now and secret.secret != new_secret:
            kept.append(SigningSecret(secret.secret, expires))
    await conn.execute(
        "UPDATE endpoints SET secrets = $1, updated_at = $2 WHERE id = $3", secrets_json(kept), now, endpoint_id
    )
    await notify(conn, ENDPOINTS_CHANNEL, [endpoint_id])
    return await fetch_endpoint(conn, endpoint_id)


# -- the config file's endpoints ---------------------------------------------------------


async def apply_config(conn: Conn, endpoints: Sequence[Endpoint], now: float) -> ConfigApplied:
    """As store/endpoints_sql.py `apply_config`: created or updated by name; config-managed
    ones no longer in the file get no new deliveries and hold theirs; put back, they are
    enabled again (unless disabled before they were taken out)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_SPACE, CONFIG_LOCK)
    rows = await conn.fetch(
        "SELECT name, id, secrets, config_managed, removed_from_config_at IS NOT NULL AS removed,"
        " disabled_before_removal IS NULL AS enabled_before FROM endpoints WHERE deleted_at IS NULL"
    )
    existing = {row["name"]: row for row in rows}
    wanted = {e.name for e in endpoints}
    removed = [name for name, row in existing.items() if row["config_managed"] and name not in wanted]
    back = [e.name for e in endpoints if e.name in existing and existing[e.name]["removed"]]
    # The endpoints' rows first, in id order, then their deliveries (see the module's docstring).
    touched = sorted(existing[name]["id"] for name in (*removed, *(e.name for e in endpoints)) if name in existing)
    await conn.execute("SELECT FROM endpoints WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", touched)
    released = {
        name: await release_held(conn, existing[name]["id"], now) for name in back if existing[name]["enabled_before"]
    }

    created = []
    for endpoint in endpoints:
        if endpoint.name in existing:
            await _update(conn, endpoint, existing[endpoint.name]["id"], existing[endpoint.name]["secrets"], now)
        else:
            created.append(await _insert(conn, endpoint, now))
    for name in back:
        await _restore(conn, existing[name]["id"], now)
    for name in removed:
        # Dropping it from the file must not drop its deliveries: it gets no new ones and
        # holds the ones it has (disabled, so nothing claims them) until it is put back.
        await conn.execute(
            "UPDATE endpoints SET disabled_before_removal = CASE WHEN enabled THEN NULL ELSE disabled_reason END,"
            " enabled = false, disabled_reason = $1, config_managed = false, removed_from_config_at = $2,"
            " updated_at = $2 WHERE id = $3",
            REMOVED_REASON,
            now,
            existing[name]["id"],
        )
    await notify(conn, ENDPOINTS_CHANNEL, [*touched, *created])
    await notify(conn, DUE_CHANNEL, [existing[name]["id"] for name, count in released.items() if count])
    return ConfigApplied(
        removed=tuple(removed),
        restored=tuple((name, name in released, released.get(name, 0)) for name in back),
    )


async def _insert(conn: Conn, endpoint: Endpoint, now: float) -> str:
    endpoint_id = new_endpoint_id()
    chosen = endpoint.secrets or (SigningSecret(rules.new_secret()),)
    await conn.execute(_INSERT, *_values(endpoint_id, endpoint, chosen, True, True, now))
    return endpoint_id


async def _update(conn: Conn, endpoint: Endpoint, endpoint_id: str, stored_secrets: str, now: float) -> None:
    # A secret left out of the file keeps the one generated before, so receivers keep verifying.
    kept = secrets_json(endpoint.secrets) if endpoint.secrets else stored_secrets
    await conn.execute(
        "UPDATE endpoints SET url = $1, events = $2, max_in_flight = $3, rate_limit = $4, ordered = $5,"
        " headers = $6, secrets = $7, filter = $8, transform = $9, preset = $10, extra_signature = $11,"
        " description = $12, category = $13, config_managed = true, updated_at = $14 WHERE id = $15",
        endpoint.url,
        json.dumps(list(endpoint.events)),
        endpoint.max_in_flight,
        endpoint.rate_limit,
        endpoint.ordered,
        json.dumps(dict(endpoint.headers)),
        kept,
        *shaping_values(endpoint),
        now,
        endpoint_id,
    )


async def _restore(conn: Conn, endpoint_id: str, now: float) -> None:
    """Undo the removal of an endpoint put back into the file: enabled again, unless it had
    been disabled before it was taken out (its held deliveries were released already)."""
    await conn.execute(
        "UPDATE endpoints SET enabled = disabled_before_removal IS NULL, disabled_reason = disabled_before_removal,"
        " disabled_before_removal = NULL, removed_from_config_at = NULL, updated_at = $1 WHERE id = $2",
        now,
        endpoint_id,
    )
