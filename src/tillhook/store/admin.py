"""The admin API's verbs on the outbox, as a part of `SqliteStore`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from tillhook.errors import Conflict, NotFound
from tillhook.models import DeliveryState, Endpoint
from tillhook.store import admin_sql, log_sql
from tillhook.store.hourly import hours_of_attempts
from tillhook.store.port import (
    AttemptRow,
    Backlog,
    DeliveryRow,
    EndpointStats,
    EventRow,
    HourOfAttempts,
    LogFilter,
    OrderedHead,
    RetriedMatching,
    StoredEvent,
)
from tillhook.store.sql_util import in_chunks


class AdminVerbs:
    """Mixed into SqliteStore, which provides these two."""

    async def _call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        raise NotImplementedError

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    # -- endpoints -----------------------------------------------------------------------

    async def create_endpoint(self, endpoint: Endpoint, now: float) -> Endpoint:
        try:
            created: Endpoint = await self._call(lambda conn: admin_sql.insert_endpoint(conn, endpoint, now))
        except sqlite3.IntegrityError:
            raise Conflict(f"an endpoint named {endpoint.name!r} exists already", slug="name-taken") from None
        return created

    async def update_endpoint(self, endpoint_id: str, changes: Mapping[str, Any], now: float) -> Endpoint:
        try:
            updated: Endpoint = await self._call(
                lambda conn: admin_sql.update_endpoint(conn, endpoint_id, changes, now)
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"an endpoint named {changes.get('name')!r} exists already", slug="name-taken") from None
        return updated

    async def delete_endpoint(self, endpoint_id: str, now: float) -> int:
        cancelled: int = await self._call(lambda conn: admin_sql.delete_endpoint(conn, endpoint_id, now))
        return cancelled

    async def set_endpoint_enabled(self, endpoint_id: str, enabled: bool, reason: str | None, now: float) -> Endpoint:
        changed: Endpoint = await self._call(
            lambda conn: admin_sql.set_enabled(conn, endpoint_id, enabled, reason, now)
        )
        return changed

    async def rotate_secret(self, endpoint_id: str, new_secret: str, old_expires_at: float, now: float) -> Endpoint:
        rotated: Endpoint = await self._call(
            lambda conn: admin_sql.rotate_secret(conn, endpoint_id, new_secret, old_expires_at, now)
        )
        return rotated

    async def replay(self, endpoint: Endpoint, since: float, until: float, only_failed: bool, now: float) -> int:
        count: int = await self._call(lambda conn: admin_sql.replay(conn, endpoint, since, until, only_failed, now))
        return count

    async def replay_count(self, endpoint: Endpoint, since: float, until: float, only_failed: bool) -> int:
        """How many deliveries `replay` with these arguments would make now."""
        params = admin_sql.replay_params(endpoint, since, until)  # named: sqlite3 takes a mapping too
        rows = await self._read(admin_sql.replay_count_query(only_failed), cast(Any, params))
        return int(rows[0][0])

    async def unfinished_count(self, endpoint_id: str) -> int:
        """Its pending and in-flight deliveries: what deleting it would cancel."""
        rows = await self._read(admin_sql.UNFINISHED_OF_ENDPOINT, (endpoint_id,))
        return int(rows[0][0])

    async def retry_delivery(self, delivery_id: int, now: float) -> DeliveryRow:
        """Due now, whatever its state; the delivery as the retry left it (read in the same
        transaction: the dispatcher may send it at once)."""

        def retry(conn: sqlite3.Connection) -> DeliveryRow:
            admin_sql.retry_delivery(conn, delivery_id, now)
            return log_sql.to_delivery(conn.execute(*log_sql.delivery_query(delivery_id)).fetchone())

        retried: DeliveryRow = await self._call(retry)
        return retried

    async def count_failed_matching(self, f: LogFilter) -> int:
        """How many failed deliveries `f` matches: what a retry of them would take up."""
        rows = await self._read(*admin_sql.count_failed_query(f))
        return int(rows[0][0])

    async def retry_matching(self, f: LogFilter, now: float, at_most: int) -> RetriedMatching:
        """Counts and retries the failed deliveries `f` matches in one write transaction (see
        `admin_sql.retry_matching`)."""
        done: RetriedMatching = await self._call(lambda conn: admin_sql.retry_matching(conn, f, now, at_most))
        return done

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

    # -- status --------------------------------------------------------------------------

    # (deletions seen, highest delivery id counted, rows up to it): see log_sql.COUNT_BY_STATE.
    _rows_counted: tuple[int, int, int] | None = None
    _deletions = 0

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

    async def _created_at(self, delivery_ids: Sequence[int]) -> dict[int, float]:
        found: dict[int, float] = {}
        for start in range(0, len(delivery_ids), 500):
            chunk = list(delivery_ids[start : start + 500])
            rows = await self._read(
                f"SELECT id, created_at FROM deliveries WHERE id IN ({', '.join('?' * len(chunk))})", chunk
            )
            found.update({row[0]: row[1] for row in rows})
        return found
