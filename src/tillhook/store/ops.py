"""The write operations the group committer batches, and how one batch becomes one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiosqlite

from tillhook.models import AcceptedEvent, AttemptRecord, ClaimedDelivery, DeliveryState, NewEvent
from tillhook.store.sql_util import in_chunks, placeholders

# SQLite caps compound SELECTs at 500 terms.
_MAX_ENDPOINTS_PER_CLAIM = 200


class Admission(Protocol):
    """Lets fresh deliveries start without a claim: while the ingest transaction is built,
    `take` reserves a free slot for one; after the commit those start at once."""

    def take(self, endpoint_id: str) -> bool: ...

    def committed(self, started: list[ClaimedDelivery], queued: set[str]) -> None:
        """`started` are stored as `delivering`; `queued` endpoints got pending deliveries."""

    def aborted(self, started: list[ClaimedDelivery]) -> None:
        """The transaction failed: give the reserved slots back."""


@dataclass(slots=True)
class Ingest:
    events: Sequence[NewEvent]
    admission: Admission | None = None
    started: list[ClaimedDelivery] = field(default_factory=list)
    queued: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Record:
    records: Sequence[AttemptRecord]
    now: float
    # Claimed in the same transaction once the outcomes are written: the next deliveries
    # for the slots those attempts freed, so a busy endpoint never waits a transaction more.
    then_claim: Claim | None = None


@dataclass(slots=True)
class Claim:
    quotas: dict[str, int]
    now: float
    ordered: frozenset[str] = frozenset()  # endpoints that only ever get their head delivery


@dataclass(slots=True)
class Call:
    """Anything else; runs inside a savepoint so that its failure is its own."""

    fn: Callable[[aiosqlite.Connection], Awaitable[Any]]


WriteOp = Ingest | Record | Claim | Call


@dataclass(slots=True)
class _Seen:
    id: str
    type: str
    deliveries: int


@dataclass(slots=True)
class BatchApplier:
    conn: aiosqlite.Connection
    # Delivery ids are given here, so that admitted deliveries are known without a read-back;
    # this connection is the only writer. Forgotten after a rollback or any other write.
    _last_delivery_id: int | None = None

    async def __call__(self, ops: Sequence[WriteOp]) -> list[Any]:
        """One transaction. The writer connection lets sqlite3 open it implicitly with the first
        write, which saves a thread hop; a batch holding savepoints opens it explicitly, since
        releasing a savepoint that opened the transaction would commit it."""
        results: list[Any] = [None] * len(ops)
        if any(isinstance(op, Call) for op in ops):
            await self.conn.execute("BEGIN")
        try:
            # Outcomes first, so a claim in the same batch sees the slots they free.
            await self._record([op for op in ops if isinstance(op, Record)])
            ingests = [(i, op) for i, op in enumerate(ops) if isinstance(op, Ingest)]
            for (index, _), accepted in zip(ingests, await self._ingest([op for _, op in ingests]), strict=True):
                results[index] = accepted
            for index, op in enumerate(ops):
                if isinstance(op, Call):
                    self._last_delivery_id = None  # it may have written deliveries itself
                    results[index] = await self._call(op)
            claims = [(i, op) for i, op in enumerate(ops) if isinstance(op, Claim)]
            claims += [(i, op.then_claim) for i, op in enumerate(ops) if isinstance(op, Record) and op.then_claim]
            for index, claimed in await self._claim_together(claims):
                results[index] = claimed
            await self.conn.commit()
        except BaseException:
            self._last_delivery_id = None
            for op in ops:
                if isinstance(op, Ingest) and op.admission is not None:
                    op.admission.aborted(op.started)
            if self.conn.in_transaction:
                await self.conn.rollback()
            raise
        for op in ops:
            if isinstance(op, Ingest) and op.admission is not None:
                op.admission.committed(op.started, op.queued)
        return results

    async def _call(self, op: Call) -> Any:
        await self.conn.execute("SAVEPOINT op")
        try:
            result = await op.fn(self.conn)
        except Exception as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
                raise  # the storage itself is in trouble: the whole batch fails
            await self.conn.execute("ROLLBACK TO op")
            await self.conn.execute("RELEASE op")
            return exc
        await self.conn.execute("RELEASE op")
        return result

    async def _ingest(self, ops: list[Ingest]) -> list[list[AcceptedEvent]]:
        if not ops:
            return []
        seen = await self._known_keys([e.idempotency_key for op in ops for e in op.events if e.idempotency_key])
        event_rows: list[tuple[Any, ...]] = []
        delivery_rows: list[tuple[Any, ...]] = []
        replies: list[list[AcceptedEvent]] = []
        next_id = await self._next_delivery_id()
        for op in ops:
            reply = []
            for event in op.events:
                key = event.idempotency_key
                if key is not None and key in seen:
                    prior = seen[key]
                    reply.append(AcceptedEvent(id=prior.id, type=prior.type, deliveries=prior.deliveries, duplicate=True))
                    continue
                if key is not None:
                    seen[key] = _Seen(event.id, event.type, len(event.endpoint_ids))
                event_rows.append((event.id, key, event.type, event.created_at, event.body))
                for endpoint_id in event.endpoint_ids:
                    state = DeliveryState.PENDING
                    if op.admission is not None and op.admission.take(endpoint_id):
                        state = DeliveryState.DELIVERING
                        op.started.append(ClaimedDelivery(next_id, event.id, endpoint_id, 0, None, event.body))
                    else:
                        op.queued.add(endpoint_id)
                    t = event.created_at
                    delivery_rows.append((next_id, event.id, endpoint_id, state.value, t, t, t))
                    next_id += 1
                reply.append(
                    AcceptedEvent(id=event.id, type=event.type, deliveries=len(event.endpoint_ids), duplicate=False)
                )
            replies.append(reply)
        if event_rows:
            await self.conn.executemany(
                "INSERT INTO events (id, idempotency_key, type, created_at, body) VALUES (?, ?, ?, ?, ?)",
                event_rows,
            )
        if delivery_rows:
            await self.conn.executemany(
                "INSERT INTO deliveries (id, event_id, endpoint_id, state, next_attempt_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                delivery_rows,
            )
        self._last_delivery_id = next_id - 1
        return replies

    async def _next_delivery_id(self) -> int:
        if self._last_delivery_id is None:
            rows = list(await self.conn.execute_fetchall("SELECT coalesce(max(id), 0) FROM deliveries"))
            self._last_delivery_id = int(rows[0][0])
        return self._last_delivery_id + 1

    async def _known_keys(self, keys: list[str]) -> dict[str, _Seen]:
        seen: dict[str, _Seen] = {}
        for chunk in in_chunks(sorted(set(keys))):
            sql = (
                "SELECT e.idempotency_key, e.id, e.type, (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id)"
                f" FROM events e WHERE e.idempotency_key IN ({placeholders(chunk)})"
            )
            for key, event_id, event_type, count in await self.conn.execute_fetchall(sql, chunk):
                seen[key] = _Seen(event_id, event_type, count)
        return seen

    async def _record(self, ops: list[Record]) -> None:
        if not ops:
            return
        attempts, updates, disables, releases = [], [], [], []
        for op in ops:
            for rec in op.records:
                res = rec.result
                attempts.append(
                    (rec.delivery_id, res.started_at, res.duration_ms, res.status, res.error,
                     res.response_excerpt, rec.outcome)
                )
                updates.append(
                    (rec.state.value, rec.next_attempt_at, rec.first_attempt_at, res.started_at,
                     res.status, res.error, op.now, rec.delivery_id)
                )
                if rec.disable_endpoint is not None:
                    disables.append((rec.disable_endpoint, op.now, rec.endpoint_id))
                if rec.release_backlog_at is not None:
                    t = rec.release_backlog_at
                    releases.append((t, op.now, rec.endpoint_id, t))
        await self.conn.executemany(
            "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, response_excerpt, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            attempts,
        )
        await self.conn.executemany(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?,"
            " first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ?, last_status = ?,"
            " last_error = ?, updated_at = ? WHERE id = ? AND state = 'delivering'",
            updates,
        )
        if disables:
            await self.conn.executemany(
                "UPDATE endpoints SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ?", disables
            )
        if releases:
            await self.conn.executemany(
                "UPDATE deliveries SET next_attempt_at = ?, updated_at = ?"
                " WHERE endpoint_id = ? AND state = 'pending' AND next_attempt_at > ?",
                releases,
            )

    async def _claim_together(self, claims: list[tuple[int, Claim]]) -> list[tuple[int, list[ClaimedDelivery]]]:
        """All the batch's claims as one statement (each statement costs a thread hop), then
        shared out to the ops that asked, oldest first."""
        if not claims:
            return []
        merged: dict[str, int] = {}
        for _, claim in claims:
            for endpoint_id, n in claim.quotas.items():
                merged[endpoint_id] = merged.get(endpoint_id, 0) + n
        ordered = frozenset().union(*(claim.ordered for _, claim in claims))
        now = max(claim.now for _, claim in claims)
        pool: dict[str, list[ClaimedDelivery]] = {}
        for delivery in await self._claim(Claim(merged, now, ordered)):
            pool.setdefault(delivery.endpoint_id, []).append(delivery)
        shared = []
        for index, claim in claims:
            mine: list[ClaimedDelivery] = []
            for endpoint_id, n in claim.quotas.items():
                available = pool.get(endpoint_id, [])
                mine += available[:n]
                del available[:n]
            shared.append((index, mine))
        return shared

    async def _claim(self, op: Claim) -> list[ClaimedDelivery]:
        wanted = [(endpoint_id, n) for endpoint_id, n in op.quotas.items() if n > 0]
        claimed: list[ClaimedDelivery] = []
        for start in range(0, len(wanted), _MAX_ENDPOINTS_PER_CLAIM):
            chunk = wanted[start : start + _MAX_ENDPOINTS_PER_CLAIM]
            claimed.extend(await self._claim_some(chunk, op.ordered, op.now))
        return claimed

    async def _claim_some(
        self, wanted: list[tuple[str, int]], ordered: frozenset[str], now: float
    ) -> list[ClaimedDelivery]:
        selects: list[str] = []
        params: list[Any] = [now]
        for endpoint_id, n in wanted:
            if endpoint_id in ordered:
                # Only the oldest unfinished delivery may go, and only once it is due: a
                # failing head holds back everything behind it.
                selects.append(
                    "SELECT id FROM (SELECT id, state, next_attempt_at FROM deliveries WHERE endpoint_id = ?"
                    " AND state IN ('pending', 'delivering') ORDER BY id LIMIT 1)"
                    " WHERE state = 'pending' AND next_attempt_at <= ?"
                )
                params.extend((endpoint_id, now))
            else:
                selects.append(
                    "SELECT id FROM (SELECT id FROM deliveries WHERE endpoint_id = ? AND state = 'pending'"
                    " AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?)"
                )
                params.extend((endpoint_id, now, n))
        rows = list(await self.conn.execute_fetchall(
            "UPDATE deliveries SET state = 'delivering', updated_at = ? WHERE id IN ("
            + " UNION ALL ".join(selects)
            + ") RETURNING id, event_id, endpoint_id, attempts, first_attempt_at",
            params,
        ))
        if not rows:
            return []
        # The bodies in a statement of their own: a subquery inside RETURNING is not planned
        # with the index on events.id (SQLite 3.40 scans events once per claimed row).
        event_ids = sorted({r[1] for r in rows})
        bodies: dict[str, bytes] = {}
        for chunk in in_chunks(event_ids):
            found = await self.conn.execute_fetchall(
                f"SELECT id, body FROM events WHERE id IN ({placeholders(chunk)})", chunk
            )
            bodies.update((row[0], row[1]) for row in found)
        return [
            ClaimedDelivery(id=r[0], event_id=r[1], endpoint_id=r[2], attempts=r[3], first_attempt_at=r[4],
                            body=bodies[r[1]])
            for r in sorted(rows, key=lambda row: row[0])
        ]
