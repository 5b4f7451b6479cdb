"""The SQLite outbox's reader connection and every read-only verb of the port over it. WAL
lets these reads run beside the writer thread's transactions; the reader never writes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite

from tillhook.errors import NotFound, StoreError, StoreUnavailable
from tillhook.models import DeliveryState, Endpoint
from tillhook.store import admin_sql, endpoints_sql, log_sql
from tillhook.store.backup import abandon_copy, begin_copy, end_copy
from tillhook.store.hourly import hours_of_attempts
from tillhook.store.log_sql import sql_subscribes
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
from tillhook.store.sql_util import in_chunks


def describe_sqlite_error(exc: sqlite3.Error) -> str:
    """SQLite's trouble in words for the operator, whichever connection met it."""
    text = str(exc)
    if "full" in text:
        return "the disk holding the database is full; free some space and retry"
    if "readonly" in text or "read-only" in text:
        return "the database is read-only; check the file's permissions and the disk"
    if "locked" in text or "busy" in text:
        return "the database is locked by another process; retry shortly"
    if "I/O" in text or "disk I/O" in text:
        return "the disk holding the database reported an I/O error; retry, and check the disk"
    return f"the database failed: {text}"


# One row per type, kept by a trigger on events (schema.py, migration 10).
_EVENT_TYPES_SEEN = "SELECT type, count, mismatched, first_seen, last_seen FROM event_types_seen ORDER BY type"


class SqliteReads:
    """The read half of `SqliteStore`: the reader connection to the file at `path`, its
    verbs, and the count of deliveries by state kept between calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: aiosqlite.Connection | None = None
        # (deletions seen, highest delivery id counted, rows up to it): see log_sql.COUNT_BY_STATE.
        self._rows_counted: tuple[int, int, int] | None = None
        self._deletions = 0

    async def open_reader(self) -> None:
        """Once the writer has migrated the schema; driver errors are the caller's to word."""
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader.execute("PRAGMA query_only = 1")
        await self._reader.execute("PRAGMA busy_timeout = 5000")
        await self._reader.create_function("tillhook_subscribes", 2, sql_subscribes, deterministic=True)

    async def close_reader(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        self._reader = None

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        assert self._reader is not None, "the store is not open"
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreUnavailable(describe_sqlite_error(exc)) from exc

    async def copy_to(self, target: Path) -> int:
        """A consistent copy of what the open connections hold, to a new file `target`, even
        after the file at `self.path` was deleted (they still have it open); returns its events."""
        if self._reader is None:
            raise StoreUnavailable("the store is not open")
        partial, dst = begin_copy(target)
        try:
            await self._reader.backup(dst)
        except sqlite3.Error as exc:
            abandon_copy(partial, dst)
            raise StoreError(f"the copy failed: {exc}") from None
        return await asyncio.to_thread(end_copy, partial, dst, target)

    # -- endpoints -----------------------------------------------------------------------

    async def list_endpoints(self) -> list[Endpoint]:
        rows = await self._read(
            f"SELECT {endpoints_sql.COLUMNS} FROM endpoints WHERE deleted_at IS NULL ORDER BY created_at, id"
        )
        return [endpoints_sql.to_endpoint(row) for row in rows]

    async def replay_count(self, endpoint: Endpoint, since: float, until: float, only_failed: bool) -> int:
        """How many deliveries `replay` with these arguments would make now."""
        params = admin_sql.replay_params(endpoint, since, until)  # named: sqlite3 takes a mapping too
        rows = await self._read(admin_sql.replay_count_query(only_failed), cast(Any, params))
        return int(rows[0][0])

    async def unfinished_count(self, endpoint_id: str) -> int:
        """Its pending and in-flight deliveries: what deleting it would cancel."""
        rows = await self._read(admin_sql.UNFINISHED_OF_ENDPOINT, (endpoint_id,))
        return int(rows[0][0])

    async def count_failed_matching(self, f: LogFilter) -> int:
        """How many failed deliveries `f` matches: what a retry of them would take up."""
        rows = await self._read(*admin_sql.count_failed_query(f))
        return int(rows[0][0])

    # -- the log -------------------------------------------------------------------------

    async def list_deliveries(self, f: LogFilter) -> list[DeliveryRow]:
        return [log_sql.to_delivery(row) for row in await self._read(*log_sql.deliveries_query(f))]

    async def get_delivery(self, delivery_id: int) -> DeliveryRow:
        rows = await self._read(*log_sql.delivery_query(delivery_id))
        if not rows:
            raise NotFound(f"there is no delivery {delivery_id}")
        return log_sql.to_delivery(rows[0])

    async def attempts_of_delivery(self, delivery_id: int) -> list[AttemptRow]:
        return [log_sql.to_attempt(row) for row in await self._read(log_sql.ATTEMPTS_OF_DELIVERY, (delivery_id,))]

    async def list_events(self, f: LogFilter) -> list[EventRow]:
        return [log_sql.to_event(row) for row in await self._read(*log_sql.events_query(f))]

    async def get_event(self, event_id: str) -> StoredEvent:
        rows = await self._read(
            f"SELECT {log_sql.EVENT_COLUMNS}, filtered_out, body FROM events WHERE id = ?", (event_id,)
        )
        if not rows:
            raise NotFound(f"there is no event {event_id}")
        row = rows[0]
        filtered_out, body = row[-2], row[-1]
        left_out = tuple(json.loads(filtered_out)) if filtered_out else ()
        return StoredEvent(event=log_sql.to_event(row), body=bytes(body), filtered_out=left_out)

    # -- figures -------------------------------------------------------------------------

    def rows_deleted(self) -> None:
        """Deliveries are being or were deleted (the purge): counts count every row again."""
        self._deletions += 1

    async def count_by_state(self) -> dict[DeliveryState, int]:
        deletions, counted = self._deletions, self._rows_counted
        rows = None
        if counted is not None and counted[0] == deletions:
            rows = await self._read(log_sql.COUNT_BY_STATE_SINCE, (counted[1],))
            if self._deletions != deletions:  # a purge ran meanwhile: what was counted may be gone
                rows = None
        if rows is None:
            counted, rows = None, await self._read(log_sql.COUNT_BY_STATE)
        counts = {"pending": 0, "delivering": 0, "delivered": 0, "failed": 0, "cancelled": 0}
        counts.update({str(state): count for state, count in rows})  # max_id is None while there are none
        total = counts.pop("all") + (counted[2] if counted is not None else 0)
        max_id = counts.pop("max_id")
        if max_id is not None:
            self._rows_counted = (deletions, max_id, total)
        # Delivered is the rest: of the five states, the only one without an index of its own.
        counts["delivered"] = total - sum(n for state, n in counts.items() if state != "delivered")
        return {DeliveryState(state): n for state, n in counts.items() if n}  # as GROUP BY gave them: states present

    async def attempts_by_hour(self, now: float, hours: int = 24) -> list[HourOfAttempts]:
        """The last `hours` hours of attempts, oldest first, the current hour last."""
        first = int(now // 3600) - hours + 1
        rows = await self._read(log_sql.ATTEMPT_HOURS, (first,))
        return hours_of_attempts(rows, first, hours)

    async def pending_by_endpoint(self) -> dict[str, Backlog]:
        rows = await self._read(log_sql.PENDING_BY_ENDPOINT)
        oldest_ids = [row[2] for row in rows]
        created = await self._created_at(oldest_ids)
        return {row[0]: Backlog(pending=row[1], oldest_created_at=created[row[2]]) for row in rows}

    async def in_flight_by_endpoint(self) -> dict[str, int]:
        rows = await self._read(log_sql.IN_FLIGHT_BY_ENDPOINT)
        return {str(endpoint_id): int(n) for endpoint_id, n in rows}

    async def daemons(self, now: float) -> list[DaemonRow]:
        """None: the file's lock keeps the outbox to one daemon, which shares it with nobody."""
        return []

    async def oldest_pending(self, endpoint_ids: Sequence[str]) -> tuple[str, float] | None:
        """(endpoint id, created at) of the oldest pending delivery among these endpoints."""
        oldest: tuple[str, float] | None = None
        # SQLite caps compound SELECTs at 500 terms.
        for chunk in in_chunks(endpoint_ids, 200):
            rows = await self._read(" UNION ALL ".join([log_sql.OLDEST_PENDING_OF] * len(chunk)), chunk)
            for endpoint_id, created_at in rows:
                if oldest is None or created_at < oldest[1]:
                    oldest = (endpoint_id, created_at)
        return oldest

    async def ordered_heads(self, endpoint_ids: Sequence[str]) -> dict[str, OrderedHead]:
        """The oldest unfinished delivery of each endpoint: what an ordered endpoint waits on."""
        heads: dict[str, OrderedHead] = {}
        for endpoint_id in endpoint_ids:
            rows = await self._read(log_sql.ORDERED_HEAD, (endpoint_id,))
            if rows:
                heads[endpoint_id] = log_sql.to_ordered_head(rows[0])
        return heads

    async def endpoint_stats(self) -> dict[str, EndpointStats]:
        rows = await self._read(log_sql.ENDPOINT_STATS)
        return {
            endpoint_id: EndpointStats(last_success_at=success, last_failure_at=failure, last_failure_reason=reason)
            for endpoint_id, success, failure, reason in rows
        }

    async def event_types_seen(self) -> list[SeenType]:
        rows = await self._read(_EVENT_TYPES_SEEN)
        return [SeenType(str(t), int(n), int(bad), float(first), float(last)) for t, n, bad, first, last in rows]

    async def _created_at(self, delivery_ids: Sequence[int]) -> dict[int, float]:
        found: dict[int, float] = {}
        for start in range(0, len(delivery_ids), 500):
            chunk = list(delivery_ids[start : start + 500])
            rows = await self._read(
                f"SELECT id, created_at FROM deliveries WHERE id IN ({', '.join('?' * len(chunk))})", chunk
            )
            found.update({row[0]: row[1] for row in rows})
        return found
