"""The write operations the group committer batches, and how one batch becomes one transaction
(on the writer thread)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tillhook.errors import InvalidInput
from tillhook.models import (
    AcceptedEvent,
    AttemptRecord,
    ClaimedDelivery,
    DeliveryState,
    NewEvent,
)
from tillhook.store.idempotency import Seen, known_keys, refusal, reuse, same_content
from tillhook.store.port import ClaimRequest, Enqueued
from tillhook.store.sql_util import in_chunks, placeholders, rows_at_once

# One statement for a whole batch of outcomes: (state, next_attempt_at, first_attempt_at,
# started_at, status, error, now, delivery id) per row.
_WRITE_OUTCOMES = (
    "UPDATE deliveries SET state = v.column1, attempts = attempts + 1, next_attempt_at = v.column2,"
    " first_attempt_at = coalesce(first_attempt_at, v.column3), last_attempt_at = v.column4,"
    " last_status = v.column5, last_error = v.column6, updated_at = v.column7"
    " FROM (VALUES {rows}) AS v WHERE deliveries.id = v.column8 AND deliveries.state = 'delivering'"
)

# SQLite caps compound SELECTs at 500 terms.
_MAX_ENDPOINTS_PER_CLAIM = 200


@dataclass(slots=True)
class Ingest:
    events: Sequence[NewEvent]
    # Per event, per endpoint: store that delivery `delivering`, for the caller to run.
    start: Sequence[Sequence[bool]] | None = None
    batch: bool = False  # the events came as an array: errors name them by index


@dataclass(slots=True)
class Record:
    records: Sequence[AttemptRecord]
    now: float
    # Claimed in the same transaction once the outcomes are written: the next deliveries
    # for the slots those attempts freed, so a busy endpoint never waits a transaction more.
    then_claim: ClaimRequest | None = None


@dataclass(slots=True)
class Call:
    """Anything else, run on the writer thread inside a savepoint so that its failure is its own."""

    fn: Callable[[sqlite3.Connection], Any]


# A claim on its own is the port's ClaimRequest.
WriteOp = Ingest | Record | ClaimRequest | Call


@dataclass(slots=True)
class IngestRows:
    """What one ingest op adds to the transaction, kept apart until the op is known to be valid."""

    next_id: int
    # Where the store hands out delivery ids itself (PostgreSQL's sequence, shared by every
    # daemon): taken from here in turn instead of counted up from next_id.
    ids: Iterator[int] | None = None
    events: list[tuple[Any, ...]] = field(default_factory=list)
    deliveries: list[tuple[Any, ...]] = field(default_factory=list)
    keys: dict[str, Seen] = field(default_factory=dict)
    # Rare: only where endpoints have filters. Written by statements of their own, so the
    # rows of every other event stay as narrow as they were.
    check_filter: list[int] = field(default_factory=list)
    filtered_out: list[tuple[str, str]] = field(default_factory=list)
    started: list[ClaimedDelivery] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)  # asked to start, but their event is a repeat
    queued: set[str] = field(default_factory=set)

    def take_id(self) -> int:
        if self.ids is not None:
            return next(self.ids)
        self.next_id += 1
        return self.next_id - 1


def ingest_one(op: Ingest, seen: dict[str, Seen], rows: IngestRows) -> Enqueued | InvalidInput:
    reply: list[AcceptedEvent] = []
    reused: list[dict[str, str]] = []
    pending, delivering = DeliveryState.PENDING.value, DeliveryState.DELIVERING.value
    for index, event in enumerate(op.events):
        flags = op.start[index] if op.start is not None else [False] * len(event.endpoint_ids)
        key = event.idempotency_key
        if key is not None:
            prior = rows.keys.get(key) or seen.get(key)
            if prior is not None and not same_content(prior, event):
                reused.append(reuse(key, prior, f"[{index}].id" if op.batch else "id"))
                continue
            if prior is not None:
                reply.append(AcceptedEvent(id=prior.id, type=prior.type, deliveries=prior.deliveries, duplicate=True))
                rows.not_started.extend(e for e, flag in zip(event.endpoint_ids, flags, strict=True) if flag)
                continue
            rows.keys[key] = Seen(
                event.id, event.type, len(event.endpoint_ids), event.timestamp_given, event.body, index
            )
        given = None if key is None else int(event.timestamp_given)
        # test: 1 or NULL, as the type counts' trigger reads it.
        rows.events.append(
            (event.id, key, event.type, event.created_at, event.body, given, event.schema_errors, event.test or None)
        )
        if event.filtered_out:
            rows.filtered_out.append((json.dumps(event.filtered_out), event.id))
        t = event.created_at
        for endpoint_id, started in zip(event.endpoint_ids, flags, strict=True):
            delivery_id = rows.take_id()
            recheck = bool(event.check_filter) and endpoint_id in event.check_filter
            if recheck:
                rows.check_filter.append(delivery_id)
            if started:
                rows.started.append(ClaimedDelivery(delivery_id, event.id, endpoint_id, 0, None, event.body, recheck))
            else:
                rows.queued.add(endpoint_id)
            rows.deliveries.append((delivery_id, event.id, endpoint_id, delivering if started else pending, t, t, t))
        reply.append(AcceptedEvent(id=event.id, type=event.type, deliveries=len(event.endpoint_ids), duplicate=False))
    if reused:
        return refusal(reused)
    return Enqueued(reply, rows.started, rows.not_started, frozenset(rows.queued))


@dataclass(slots=True)
class BatchApplier:
    # Delivery ids are given here, so that started deliveries are known without a read-back;
    # this connection is the only writer. Forgotten after a rollback or any other write.
    _last_delivery_id: int | None = None
    _synchronous_full: bool = True  # the connection is opened with synchronous = FULL

    def __call__(self, conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> list[Any]:
        """One transaction, on the writer thread."""
        results: list[Any] = [None] * len(ops)
        self._durability(conn, ops)
        conn.execute("BEGIN")
        try:
            # Outcomes first, so a claim in the same batch sees the slots they free.
            records = [(i, op) for i, op in enumerate(ops) if isinstance(op, Record)]
            self._record(conn, [op for _, op in records])
            for index, _ in records:
                results[index] = []
            ingests = [(i, op) for i, op in enumerate(ops) if isinstance(op, Ingest)]
            for (index, _), accepted in zip(ingests, self._ingest(conn, [op for _, op in ingests]), strict=True):
                results[index] = accepted
            for index, op in enumerate(ops):
                if isinstance(op, Call):
                    self._last_delivery_id = None  # it may have written deliveries itself
                    results[index] = self._call(conn, op)
            claims = [(i, op) for i, op in enumerate(ops) if isinstance(op, ClaimRequest)]
            claims += [(i, op.then_claim) for i, op in records if op.then_claim]
            for index, claimed in self._claim_together(conn, claims):
                results[index] = claimed
            conn.execute("COMMIT")
        except BaseException:
            self._last_delivery_id = None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _durability(self, conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> None:
        """FULL (fsync at commit) for a transaction holding anything acknowledged; NORMAL for
        attempt outcomes and claims alone. WAL keeps those across a process crash either way,
        the next FULL commit makes everything before it durable too, and one lost to a power
        cut means at most a repeated attempt. Skipping their fsync halves the time a freed
        slot waits before its next delivery."""
        full = any(isinstance(op, Ingest | Call) for op in ops)
        if full != self._synchronous_full:
            conn.execute(f"PRAGMA synchronous = {'FULL' if full else 'NORMAL'}")
            self._synchronous_full = full

    @staticmethod
    def _call(conn: sqlite3.Connection, op: Call) -> Any:
        conn.execute("SAVEPOINT op")
        try:
            result = op.fn(conn)
        except Exception as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
                raise  # the storage itself is in trouble: the whole batch fails
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return exc
        conn.execute("RELEASE op")
        return result

    def _ingest(self, conn: sqlite3.Connection, ops: list[Ingest]) -> list[Enqueued | InvalidInput]:
        """Each op's events and deliveries; an op reusing a key with other content fails alone
        (an InvalidInput as its result) and writes nothing."""
        if not ops:
            return []
        seen = known_keys(conn, [e.idempotency_key for op in ops for e in op.events if e.idempotency_key])
        event_rows: list[tuple[Any, ...]] = []
        delivery_rows: list[tuple[Any, ...]] = []
        check_filter: list[int] = []
        filtered_out: list[tuple[str, str]] = []
        replies: list[Enqueued | InvalidInput] = []
        next_id = self._next_delivery_id(conn)
        for op in ops:
            rows = IngestRows(next_id)
            reply = ingest_one(op, seen, rows)
            if not isinstance(reply, InvalidInput):
                seen.update(rows.keys)
                event_rows += rows.events
                delivery_rows += rows.deliveries
                check_filter += rows.check_filter
                filtered_out += rows.filtered_out
                next_id = rows.next_id
            replies.append(reply)
        rows_at_once(
            conn,
            "INSERT INTO events (id, idempotency_key, type, created_at, body, timestamp_given, schema_errors, test)"
            " VALUES {rows}",
            event_rows,
        )
        rows_at_once(
            conn,
            "INSERT INTO deliveries (id, event_id, endpoint_id, state, next_attempt_at, created_at, updated_at)"
            " VALUES {rows}",
            delivery_rows,
        )
        if filtered_out:
            conn.executemany("UPDATE events SET filtered_out = ? WHERE id = ?", filtered_out)
        for chunk in in_chunks(check_filter):
            conn.execute(f"UPDATE deliveries SET check_filter = 1 WHERE id IN ({placeholders(chunk)})", chunk)
        self._last_delivery_id = next_id - 1
        return replies

    def _next_delivery_id(self, conn: sqlite3.Connection) -> int:
        if self._last_delivery_id is None:
            self._last_delivery_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM deliveries").fetchone()[0])
        return self._last_delivery_id + 1

    @staticmethod
    def _record(conn: sqlite3.Connection, ops: list[Record]) -> None:
        if not ops:
            return
        attempts: list[tuple[Any, ...]] = []
        shaped: list[tuple[Any, ...]] = []
        updates, disables, releases = [], [], []
        for op in ops:
            for rec in op.records:
                res = rec.result
                # A transform's body is kept beside its attempt; the plain rows stay narrow.
                (attempts if res.body_sent is None else shaped).append(
                    (
                        rec.delivery_id,
                        res.started_at,
                        res.duration_ms,
                        res.status,
                        res.error,
                        res.response_excerpt,
                        rec.outcome,
                        *(() if res.body_sent is None else (res.body_sent,)),
                    )
                )
                updates.append(
                    (
                        rec.state.value,
                        rec.next_attempt_at,
                        rec.first_attempt_at,
                        res.started_at,
                        res.status,
                        res.error,
                        op.now,
                        rec.delivery_id,
                    )
                )
                if rec.disable_endpoint is not None:
                    disables.append((rec.disable_endpoint, op.now, rec.endpoint_id))
                if rec.release_backlog_at is not None:
                    t = rec.release_backlog_at
                    releases.append((t, op.now, rec.endpoint_id, t))
        rows_at_once(
            conn,
            "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, response_excerpt, outcome)"
            " VALUES {rows}",
            attempts,
        )
        rows_at_once(
            conn,
            "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, response_excerpt, outcome,"
            " body_sent) VALUES {rows}",
            shaped,
        )
        rows_at_once(conn, _WRITE_OUTCOMES, updates)
        if disables:
            conn.executemany(
                "UPDATE endpoints SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ?", disables
            )
        if releases:
            conn.executemany(
                "UPDATE deliveries SET next_attempt_at = ?, updated_at = ?"
                " WHERE endpoint_id = ? AND state = 'pending' AND next_attempt_at > ?",
                releases,
            )

    def _claim_together(
        self, conn: sqlite3.Connection, claims: list[tuple[int, ClaimRequest]]
    ) -> list[tuple[int, list[ClaimedDelivery]]]:
        """All the batch's claims as one statement, then shared out to the ops that asked,
        oldest first."""
        if not claims:
            return []
        merged = merge_claims([claim for _, claim in claims])
        return share_claimed(claims, self._claim(conn, merged))

    def _claim(self, conn: sqlite3.Connection, op: ClaimRequest) -> list[ClaimedDelivery]:
        wanted = [(endpoint_id, n) for endpoint_id, n in op.quotas.items() if n > 0]
        claimed: list[ClaimedDelivery] = []
        for start in range(0, len(wanted), _MAX_ENDPOINTS_PER_CLAIM):
            chunk = wanted[start : start + _MAX_ENDPOINTS_PER_CLAIM]
            claimed.extend(self._claim_some(conn, chunk, op.ordered, op.now))
        return claimed

    @staticmethod
    def _claim_some(
        conn: sqlite3.Connection, wanted: list[tuple[str, int]], ordered: frozenset[str], now: float
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
        rows = conn.execute(
            "UPDATE deliveries SET state = 'delivering', updated_at = ? WHERE id IN ("
            + " UNION ALL ".join(selects)
            + ") RETURNING id, event_id, endpoint_id, attempts, first_attempt_at, check_filter",
            params,
        ).fetchall()
        if not rows:
            return []
        # The bodies in a statement of their own: a subquery inside RETURNING is not planned
        # with the index on events.id (SQLite 3.40 scans events once per claimed row).
        event_ids = sorted({r[1] for r in rows})
        bodies: dict[str, bytes] = {}
        for chunk in in_chunks(event_ids):
            found = conn.execute(f"SELECT id, body FROM events WHERE id IN ({placeholders(chunk)})", chunk)
            bodies.update((row[0], row[1]) for row in found)
        return [
            ClaimedDelivery(
                id=r[0],
                event_id=r[1],
                endpoint_id=r[2],
                attempts=r[3],
                first_attempt_at=r[4],
                body=bodies[r[1]],
                check_filter=bool(r[5]),
            )
            for r in sorted(rows, key=lambda row: row[0])
        ]


def merge_claims(claims: Sequence[ClaimRequest]) -> ClaimRequest:
    """A batch's claims as one: the quotas summed per endpoint, at the latest `now`."""
    merged: dict[str, int] = {}
    for claim in claims:
        for endpoint_id, n in claim.quotas.items():
            merged[endpoint_id] = merged.get(endpoint_id, 0) + n
    ordered: frozenset[str] = frozenset().union(*(claim.ordered for claim in claims))
    return ClaimRequest(merged, max(claim.now for claim in claims), ordered)


def share_claimed(
    claims: Sequence[tuple[int, ClaimRequest]], claimed: Sequence[ClaimedDelivery]
) -> list[tuple[int, list[ClaimedDelivery]]]:
    """What one merged claim got, shared out to the ops that asked (by index), each up to its
    quota per endpoint, oldest first."""
    pool: dict[str, list[ClaimedDelivery]] = {}
    for delivery in sorted(claimed, key=lambda d: d.id):
        pool.setdefault(delivery.endpoint_id, []).append(delivery)
    shared = []
    for index, claim in claims:
        mine: list[ClaimedDelivery] = []
        for endpoint_id, n in claim.quotas.items():
            available = pool.get(endpoint_id, [])
            mine += available[:n]
            del available[:n]
        shared.append((index, sorted(mine, key=lambda d: d.id)))
    return shared
