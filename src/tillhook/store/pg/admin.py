"""The PostgreSQL outbox's tokens, health write, purge, replays and manual retries, each run by
`PostgresStore` in a transaction of its own on a pool connection (the endpoint writes are in
store/pg/endpoints.py). Deliveries made due are told to the daemons on DUE_CHANNEL."""

from __future__ import annotations

import secrets

from tillhook.errors import NotFound
from tillhook.models import Endpoint
from tillhook.store import log_sql
from tillhook.store.admin_sql import check_retryable
from tillhook.store.pg import log_sql as queries
from tillhook.store.pg.batch import DUE_CHANNEL
from tillhook.store.pg.connect import Conn
from tillhook.store.pg.endpoints import UNFINISHED, changed_rows, notify
from tillhook.store.pg.schema import LOCK_SPACE
from tillhook.store.port import DeliveryRow, LogFilter, RetriedMatching, Tokens

# Held by one purging daemon at a time (the others skip their turn), and shared by every
# replay and retry: the purge then never deletes an event or delivery that one of them, in
# a transaction the purge's snapshot does not see, is making unfinished again.
PURGE_LOCK = 3

_TOKENS = (("ingest_token", "ing_"), ("admin_token", "adm_"), ("viewer_token", "vwr_"))


async def tokens(conn: Conn, ingest: str | None, admin: str | None, viewer: str | None) -> Tokens:
    """The tokens given, else those kept in the outbox: made by whichever daemon comes first,
    the others then keep its."""
    keys = [key for key, _ in _TOKENS]
    await conn.execute(
        "INSERT INTO meta (key, value) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (key) DO NOTHING",
        keys,
        [prefix + secrets.token_urlsafe(32) for _, prefix in _TOKENS],
    )
    stored = {
        row["key"]: row["value"] for row in await conn.fetch("SELECT key, value FROM meta WHERE key = ANY($1)", keys)
    }
    return Tokens(
        ingest=ingest or stored["ingest_token"],
        admin=admin or stored["admin_token"],
        viewer=viewer or stored["viewer_token"],
    )


async def check_writable(conn: Conn) -> None:
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES ('health', 'ok') ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )


# The type counts of connections that are gone, folded into one row per type (writer 0), so
# that the table stays as small as the types times the connections writing now, however often
# daemons reconnect. A live writer's rows are left alone: its trigger may be adding to them.
_FOLD_TYPE_COUNTS = """
WITH gone AS (
    DELETE FROM event_types_seen s WHERE s.writer <> 0
        AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = s.writer)
    RETURNING s.type, s.count, s.mismatched, s.first_seen, s.last_seen
)
INSERT INTO event_types_seen AS s (type, writer, count, mismatched, first_seen, last_seen)
    SELECT type, 0, sum(count), sum(mismatched), min(first_seen), max(last_seen) FROM gone
    GROUP BY type ORDER BY type
    ON CONFLICT (type, writer) DO UPDATE SET
        count = s.count + excluded.count,
        mismatched = s.mismatched + excluded.mismatched,
        first_seen = least(s.first_seen, excluded.first_seen),
        last_seen = greatest(s.last_seen, excluded.last_seen)
"""


async def purge_batch(conn: Conn, cutoff: float, limit: int) -> int:
    """Up to `limit` events received before `cutoff` whose deliveries are all finished go, with
    their deliveries and attempts; returns how many. 0 while another daemon purges (or a replay
    or retry runs): this round is its, and the next one comes soon enough."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", LOCK_SPACE, PURGE_LOCK):
        return 0
    await conn.execute(_FOLD_TYPE_COUNTS)
    ids = [
        row[0]
        for row in await conn.fetch(
            "SELECT id FROM events e WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM deliveries d"
            f" WHERE d.event_id = e.id AND d.state IN {UNFINISHED}) ORDER BY created_at LIMIT $2",
            cutoff,
            limit,
        )
    ]
    if not ids:
        return 0
    await conn.execute(
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ANY($1))", ids
    )
    await conn.execute("DELETE FROM deliveries WHERE event_id = ANY($1)", ids)
    await conn.execute("DELETE FROM events WHERE id = ANY($1)", ids)
    return len(ids)


async def _beside_purge(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1, $2)", LOCK_SPACE, PURGE_LOCK)


# -- replays -----------------------------------------------------------------------------


async def replay(conn: Conn, endpoint: Endpoint, since: float, until: float, only_failed: bool, now: float) -> int:
    """New pending deliveries to `endpoint` for the matching events received in [since, until),
    oldest first; events with a delivery still under way there are skipped. Under a filter,
    each checks it before its first attempt (the filter may be newer than the events)."""
    await _beside_purge(conn)
    # As an ingest to an ordered endpoint does: its deliveries' ids are given in commit order.
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_SPACE, endpoint.id)
    status = await conn.execute(
        "INSERT INTO deliveries (event_id, endpoint_id, state, next_attempt_at, created_at, updated_at, check_filter)"
        " SELECT e.id, $1, 'pending', $5, $5, $5, $6" + queries.replay_source(only_failed) + " ORDER BY e.seq",
        *queries.replay_args(endpoint, since, until),
        now,
        endpoint.filter is not None,
    )
    made = changed_rows(status)
    if made:
        await notify(conn, DUE_CHANNEL, [endpoint.id])
    return made


# -- manual retries ----------------------------------------------------------------------


async def retry_delivery(conn: Conn, delivery_id: int, now: float) -> DeliveryRow:
    """Due now, whatever its state (a finished one gets a fresh `give_up_after` window); the
    delivery as the retry left it, read in the same transaction."""
    await _beside_purge(conn)
    row = await conn.fetchrow(
        "SELECT d.state, ep.deleted_at, ep.enabled, d.endpoint_id FROM deliveries d"
        " LEFT JOIN endpoints ep ON ep.id = d.endpoint_id WHERE d.id = $1 FOR UPDATE OF d",
        delivery_id,
    )
    if row is None:
        raise NotFound(f"there is no delivery {delivery_id}")
    state, deleted_at, enabled, endpoint_id = row
    check_retryable(delivery_id, state, deleted_at, enabled)
    await conn.execute(
        "UPDATE deliveries SET state = 'pending', next_attempt_at = $1, updated_at = $1,"
        " first_attempt_at = CASE WHEN state = 'pending' THEN first_attempt_at END,"
        " claimed_by = NULL, lease_until = NULL WHERE id = $2",
        now,
        delivery_id,
    )
    await notify(conn, DUE_CHANNEL, [endpoint_id])
    (retried,) = await conn.fetch(queries.DELIVERY, delivery_id)
    return log_sql.to_delivery(retried)


async def retry_matching(conn: Conn, f: LogFilter, now: float, at_most: int) -> RetriedMatching:
    """The failed deliveries `f` matches, oldest first and at most `at_most` of them, made due
    now with a fresh `give_up_after` window, as `retry_delivery` does one; those of a disabled
    or deleted endpoint stay failed (enable it first, or replay)."""
    await _beside_purge(conn)
    count, counted = queries.count_failed_query(f)
    matched = int(await conn.fetchval(count, *counted))
    source, where, params = queries.failed_matching_where(f)
    args = queries.Args(params)  # numbered on after the filter's own
    at, most = args(now), args(at_most)
    rows = await conn.fetch(
        f"UPDATE deliveries SET state = 'pending', next_attempt_at = {at}, updated_at = {at}, first_attempt_at = NULL,"
        " claimed_by = NULL, lease_until = NULL WHERE state = 'failed' AND id IN"
        f" (SELECT d.id{source}{where} AND ep.deleted_at IS NULL AND ep.enabled ORDER BY d.id LIMIT {most}"
        " FOR UPDATE OF d) RETURNING endpoint_id",
        *args.values,
    )
    endpoint_ids = tuple(sorted({row[0] for row in rows}))
    await notify(conn, DUE_CHANNEL, endpoint_ids)
    return RetriedMatching(matched, len(rows), endpoint_ids)
