"""The PostgreSQL outbox's read-only verbs of the port, over a pool of connections (the rows
other daemons wrote are read like this daemon's own)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from tillhook.errors import NoDatabase, NotFound, StoreError, StoreUnavailable
from tillhook.models import DeliveryState, Endpoint
from tillhook.store import endpoints_sql, log_sql
from tillhook.store.hourly import hours_of_attempts
from tillhook.store.pg import log_sql as queries
from tillhook.store.pg.connect import DRIVER_ERRORS, PostgresTarget, connect, unavailable
from tillhook.store.port import (
    AttemptRow,
    Backlog,
    DaemonRow,
    DeliveryRow,
    EndpointStats,
    EventRow,
    HourOfAttempts,
    LogFilter,
    OrderedHead,
    SeenType,
    StoredEvent,
)
from tillhook.store.readonly import TOKEN_KEYS

__all__ = ["DRIVER_ERRORS", "PgReads"]  # DRIVER_ERRORS too: store/pg/outbox.py imports it from here


# One row per (type, writing backend), kept by a trigger on events (schema.py, migration 2):
# summed here. COLLATE "C": by code point, as SQLite orders them, whatever the database's locale.
_EVENT_TYPES_SEEN = """
SELECT type, sum(count), sum(mismatched), min(first_seen), max(last_seen) FROM event_types_seen
GROUP BY type ORDER BY type COLLATE "C"
"""


class PgReads:
    """The read half of `PostgresStore`: its pool, opened and closed by the store, and the
    target it connects to (set by the store)."""

    target: PostgresTarget

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        return self._pool

    async def _read(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return list(await self.pool.fetch(sql, *args))
        except DRIVER_ERRORS as exc:
            raise unavailable(exc, self.target) from exc

    async def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """As tuples, which the row mappings shared with SQLite take."""
        return [tuple(row) for row in await self._read(sql, *args)]

    async def _value(self, sql: str, *args: Any) -> Any:
        return (await self._read(sql, *args))[0][0]

    # -- lifecycle reads -----------------------------------------------------------------

    async def size_bytes(self) -> int:
        """The whole database's files (its write-ahead log is the cluster's, not counted)."""
        return int(await self._value("SELECT pg_database_size(current_database())"))

    async def read_tokens(self) -> dict[str, str]:
        """On a connection of its own: the daemon need not be running, nor this store open."""
        try:
            conn = await connect(self.target)
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, asyncpg.InvalidCatalogNameError):
                raise NoDatabase(str(exc)) from None
            raise
        try:
            rows = await conn.fetch("SELECT key, value FROM meta WHERE key = ANY($1::text[])", list(TOKEN_KEYS))
        except asyncpg.UndefinedTableError:
            raise NoDatabase(f"there is no tillhook outbox in {self.target.display} yet") from None
        except asyncpg.InsufficientPrivilegeError as exc:
            raise unavailable(exc, self.target) from exc
        except asyncpg.SyntaxOrAccessError as exc:  # a table meta of another shape: another program's
            raise StoreError(f"{self.target.display} is not a tillhook outbox: {exc}") from None
        except DRIVER_ERRORS as exc:
            raise unavailable(exc, self.target) from exc
        finally:
            await conn.close()
        return {str(key): str(value) for key, value in rows}

    # -- endpoints -----------------------------------------------------------------------

    async def list_endpoints(self) -> list[Endpoint]:
        rows = await self._rows(
            f"SELECT {endpoints_sql.COLUMNS} FROM endpoints WHERE deleted_at IS NULL ORDER BY created_at, id"
        )
        return [endpoints_sql.to_endpoint(row) for row in rows]

    async def replay_count(self, endpoint: Endpoint, since: float, until: float, only_failed: bool) -> int:
        """How many deliveries `replay` with these arguments would make now."""
        sql = queries.replay_count_query(only_failed)
        return int(await self._value(sql, *queries.replay_args(endpoint, since, until)))

    async def unfinished_count(self, endpoint_id: str) -> int:
        """Its pending and in-flight deliveries: what deleting it would cancel."""
        return int(await self._value(queries.UNFINISHED_OF_ENDPOINT, endpoint_id))

    async def count_failed_matching(self, f: LogFilter) -> int:
        """How many failed deliveries `f` matches: what a retry of them would take up."""
        sql, params = queries.count_failed_query(f)
        return int(await self._value(sql, *params))

    # -- the log -------------------------------------------------------------------------

    async def list_deliveries(self, f: LogFilter) -> list[DeliveryRow]:
        sql, params = queries.deliveries_query(f)
        return [log_sql.to_delivery(row) for row in await self._rows(sql, *params)]

    async def get_delivery(self, delivery_id: int) -> DeliveryRow:
        rows = await self._rows(queries.DELIVERY, delivery_id)
        if not rows:
            raise NotFound(f"there is no delivery {delivery_id}")
        return log_sql.to_delivery(rows[0])

    async def attempts_of_delivery(self, delivery_id: int) -> list[AttemptRow]:
        return [log_sql.to_attempt(row) for row in await self._rows(queries.ATTEMPTS_OF_DELIVERY, delivery_id)]

    async def list_events(self, f: LogFilter) -> list[EventRow]:
        sql, params = queries.events_query(f)
        return [log_sql.to_event(row) for row in await self._rows(sql, *params)]

    async def get_event(self, event_id: str) -> StoredEvent:
        rows = await self._rows(queries.EVENT, event_id)
        if not rows:
            raise NotFound(f"there is no event {event_id}")
        row = rows[0]
        filtered_out, body = row[-2], row[-1]
        left_out = tuple(json.loads(filtered_out)) if filtered_out else ()
        return StoredEvent(event=log_sql.to_event(row), body=bytes(body), filtered_out=left_out)

    # -- figures -------------------------------------------------------------------------

    async def count_by_state(self) -> dict[DeliveryState, int]:
        total, pending, delivering, failed, cancelled = (await self._rows(queries.COUNT_BY_STATE))[0]
        counts = {
            DeliveryState.PENDING: pending,
            DeliveryState.DELIVERING: delivering,
            # Delivered is the rest: of the five states, the only one without an index of its own.
            DeliveryState.DELIVERED: total - pending - delivering - failed - cancelled,
            DeliveryState.FAILED: failed,
            DeliveryState.CANCELLED: cancelled,
        }
        return {state: int(n) for state, n in counts.items() if n}

    async def attempts_by_hour(self, now: float, hours: int = 24) -> list[HourOfAttempts]:
        """The last `hours` hours of attempts, oldest first, the current hour last."""
        first = int(now // 3600) - hours + 1
        return hours_of_attempts(await self._rows(queries.ATTEMPT_HOURS, first), first, hours)

    async def pending_by_endpoint(self) -> dict[str, Backlog]:
        rows = await self._rows(queries.PENDING_BY_ENDPOINT)
        return {
            endpoint_id: Backlog(pending=int(n), oldest_created_at=float(oldest)) for endpoint_id, n, oldest in rows
        }

    async def in_flight_by_endpoint(self) -> dict[str, int]:
        """Every daemon's: the deliveries any of them holds claimed."""
        rows = await self._rows(log_sql.IN_FLIGHT_BY_ENDPOINT)
        return {str(endpoint_id): int(n) for endpoint_id, n in rows}

    async def daemons(self, now: float) -> list[DaemonRow]:
        rows = await self._rows(queries.DAEMONS, now)
        return [
            DaemonRow(
                id=str(id_),
                host=str(host),
                pid=int(pid),
                listen=listen,
                started_at=float(started_at),
                seen_at=float(seen_at),
                live=bool(live),
            )
            for id_, host, pid, listen, started_at, seen_at, live in rows
        ]

    async def oldest_pending(self, endpoint_ids: Sequence[str]) -> tuple[str, float] | None:
        """(endpoint id, created at) of the oldest pending delivery among these endpoints."""
        rows = await self._rows(queries.OLDEST_PENDING, list(endpoint_ids))
        return (str(rows[0][0]), float(rows[0][1])) if rows else None

    async def ordered_heads(self, endpoint_ids: Sequence[str]) -> dict[str, OrderedHead]:
        """The oldest unfinished delivery of each endpoint: what an ordered endpoint waits on."""
        rows = await self._rows(queries.ORDERED_HEADS, list(endpoint_ids))
        return {str(row[0]): log_sql.to_ordered_head(row[1:]) for row in rows}

    async def endpoint_stats(self) -> dict[str, EndpointStats]:
        rows = await self._rows(log_sql.ENDPOINT_STATS)
        return {
            endpoint_id: EndpointStats(last_success_at=success, last_failure_at=failure, last_failure_reason=reason)
            for endpoint_id, success, failure, reason in rows
        }

    async def event_types_seen(self) -> list[SeenType]:
        rows = await self._rows(_EVENT_TYPES_SEEN)
        return [SeenType(str(t), int(n), int(bad), float(first), float(last)) for t, n, bad, first, last in rows]
