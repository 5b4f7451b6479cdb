"""How one batch of queued writes (ingests, outcomes, claims) becomes one PostgreSQL transaction
on the writer connection: a few statements per batch whatever its size, rows going as arrays.

What sharing the outbox adds to the SQLite batch (store/ops.py): delivery ids come from the
database's sequence; a claimed delivery carries this daemon's id and a lease; an outcome is
written only over a claim this daemon still holds; and an ordered endpoint's ingests and
claims take its advisory lock, so that its deliveries are numbered in the order they commit
and one daemon at a time picks its head."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tillhook.errors import InvalidInput
from tillhook.models import ClaimedDelivery, NewEvent
from tillhook.store.idempotency import Seen
from tillhook.store.ops import Ingest, IngestRows, Record, ingest_one, merge_claims, share_claimed
from tillhook.store.pg.connect import Conn
from tillhook.store.pg.reads import DRIVER_ERRORS
from tillhook.store.pg.schema import LOCK_SPACE
from tillhook.store.port import ClaimRequest, Enqueued

DUE_CHANNEL = "tillhook_due"
ENDPOINTS_CHANNEL = "tillhook_endpoints"

# The first statement of every batch: the transaction's id (asked after, should its commit go
# unanswered), its durability, and the advisory locks of the ordered endpoints it touches,
# all taken at once, in one order.
_BEGIN = f"""
SELECT txid_current(), set_config('synchronous_commit', $3, true), (
    SELECT count(*) FROM (
        SELECT pg_advisory_xact_lock({LOCK_SPACE}, s.k) FROM (
            SELECT hashtext(id) AS k FROM endpoints WHERE ordered AND id = ANY($1::text[])
            UNION SELECT hashtext(x) FROM unnest($2::text[]) AS x
            ORDER BY 1
        ) s
    ) l
)
"""

_KNOWN_KEYS = """
SELECT e.idempotency_key, e.id, e.type, (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id),
    e.timestamp_given, e.body
FROM events e WHERE e.idempotency_key = ANY($1::text[])
"""

_INSERT_EVENTS = """
INSERT INTO events (id, idempotency_key, type, created_at, body, timestamp_given, filtered_out, schema_errors, test)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::bytea[], $6::boolean[], $7::text[],
    $8::text[], $9::boolean[])
"""

_INSERT_DELIVERIES = """
INSERT INTO deliveries (id, event_id, endpoint_id, state, next_attempt_at, created_at, updated_at, check_filter,
    claimed_by, lease_until)
SELECT v.id, v.event_id, v.endpoint_id, v.state, v.t, v.t, v.t, v.check_filter,
    CASE WHEN v.state = 'delivering' THEN $7 END, CASE WHEN v.state = 'delivering' THEN $8::float8 END
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::boolean[])
    AS v(id, event_id, endpoint_id, state, t, check_filter)
"""

_INSERT_ATTEMPTS = """
INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, response_excerpt, outcome, body_sent,
    endpoint_id)
SELECT * FROM unnest($1::bigint[], $2::float8[], $3::float8[], $4::integer[], $5::text[], $6::text[], $7::text[],
    $8::bytea[], $9::text[])
"""

_WRITE_OUTCOMES = """
UPDATE deliveries d SET state = v.state, attempts = d.attempts + 1, next_attempt_at = v.next_attempt_at,
    first_attempt_at = coalesce(d.first_attempt_at, v.first_attempt_at), last_attempt_at = v.started_at,
    last_status = v.status, last_error = v.error, updated_at = $8, claimed_by = NULL, lease_until = NULL
FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::float8[], $5::float8[], $6::integer[], $7::text[])
    AS v(id, state, next_attempt_at, first_attempt_at, started_at, status, error)
WHERE d.id = v.id AND d.state = 'delivering' AND d.claimed_by = $9
"""

_DISABLE = """
UPDATE endpoints ep SET enabled = false, disabled_reason = v.reason, updated_at = $3
FROM unnest($1::text[], $2::text[]) AS v(id, reason) WHERE ep.id = v.id
"""

_RELEASE_BACKLOG = """
UPDATE deliveries d SET next_attempt_at = v.t, updated_at = $3
FROM unnest($1::text[], $2::float8[]) AS v(endpoint_id, t)
WHERE d.endpoint_id = v.endpoint_id AND d.state = 'pending' AND d.next_attempt_at > v.t
"""

# Up to n due deliveries of each endpoint asked for (skipping rows another daemon is claiming
# this instant), and the head of each ordered one when it is pending and due and nothing of
# that endpoint is in flight: under its advisory lock, taken at the start of the transaction,
# nobody else reads or moves that head. The endpoints are those the database holds enabled
# now, by its own word on which are ordered: a daemon that has not yet heard of a change
# never sends what is held, nor more than one of an ordered endpoint.
_CLAIM = """
WITH picked AS (
    SELECT p.id FROM unnest($1::text[], $2::integer[]) AS w(endpoint_id, n)
    JOIN endpoints ep ON ep.id = w.endpoint_id AND ep.enabled AND ep.deleted_at IS NULL AND NOT ep.ordered
    CROSS JOIN LATERAL (
        SELECT d.id FROM deliveries d
        WHERE d.endpoint_id = w.endpoint_id AND d.state = 'pending' AND d.next_attempt_at <= $4
        ORDER BY d.next_attempt_at, d.id LIMIT w.n FOR UPDATE SKIP LOCKED
    ) p
    UNION ALL
    SELECT h.id FROM unnest($3::text[]) AS o(endpoint_id)
    JOIN endpoints ep ON ep.id = o.endpoint_id AND ep.enabled AND ep.deleted_at IS NULL
    CROSS JOIN LATERAL (
        SELECT d.id, d.state, d.next_attempt_at FROM deliveries d
        WHERE d.endpoint_id = o.endpoint_id AND d.state IN ('pending', 'delivering')
        ORDER BY d.id LIMIT 1 FOR UPDATE
    ) h WHERE h.state = 'pending' AND h.next_attempt_at <= $4 AND NOT EXISTS (
        SELECT 1 FROM deliveries x WHERE x.endpoint_id = o.endpoint_id AND x.state = 'delivering'
    )
)
UPDATE deliveries d SET state = 'delivering', updated_at = $4, claimed_by = $5, lease_until = $6
FROM events e
WHERE d.id = ANY(ARRAY(SELECT id FROM picked)) AND e.id = d.event_id
RETURNING d.id, d.event_id, d.endpoint_id, d.attempts, d.first_attempt_at, e.body, d.check_filter
"""
# The rows picked are locked as they are picked (and read again as they are then: pending),
# so the update fetches them by their key alone: a join with `picked`, or a test of their
# state here, had the planner scan every pending row's index entry for a few rows.

_NOTIFY = "SELECT pg_notify($1, x) FROM unnest($2::text[]) AS x"


def storable(text: str | None) -> str | None:
    """Text a receiver sent (its response, an error quoting it) as PostgreSQL can store it: a
    NUL character, which it refuses in text, shown as the replacement character."""
    return None if text is None else text.replace("\x00", "\ufffd")


def notify_payloads(ids: Sequence[str]) -> list[str]:
    """Endpoint ids joined by commas, in payloads well under NOTIFY's 8000 bytes."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for endpoint_id in sorted(set(ids)):
        if current and size + len(endpoint_id) > 7000:
            payloads.append(",".join(current))
            current, size = [], 0
        current.append(endpoint_id)
        size += len(endpoint_id) + 1
    if current:
        payloads.append(",".join(current))
    return payloads


class CommitUnknown(Exception):
    """The connection was lost while the transaction committed: it may or may not have. The
    batch's `results` hold if it did, which `txid_status(xid)` tells on another connection;
    `claimed` are the deliveries it stored or marked `delivering` for this daemon, to be given
    back if that cannot be told (nobody would run them)."""

    def __init__(self, results: list[Any], xid: int, claimed: list[int]) -> None:
        super().__init__("the connection was lost while committing")
        self.results = results
        self.xid = xid
        self.claimed = claimed


@dataclass(frozen=True, slots=True)
class GiveBack:
    """Deliveries this daemon marked `delivering` in a transaction whose fate it could not
    learn: back to pending, due at `now`, if they are still its own."""

    ids: Sequence[int]
    now: float


_GIVE_BACK = """
UPDATE deliveries SET state = 'pending', next_attempt_at = $2, updated_at = $2, claimed_by = NULL, lease_until = NULL
WHERE id = ANY($1::bigint[]) AND state = 'delivering' AND claimed_by = $3
"""


@dataclass(frozen=True, slots=True)
class Requeue:
    """This daemon's claims back to pending, due at `now` (at a stop: queued behind the writes
    whose deliveries a stopping dispatcher would not start), and those of daemons not seen
    within their lease whose own lease ran out."""

    now: float


_REQUEUE = """
UPDATE deliveries d SET state = 'pending', next_attempt_at = $1, updated_at = $1, claimed_by = NULL, lease_until = NULL
WHERE d.state = 'delivering' AND (d.claimed_by = $2 OR (d.lease_until < $1 AND NOT EXISTS (
    SELECT 1 FROM daemons dm WHERE dm.id = d.claimed_by AND dm.seen_at + dm.lease_s >= $1
)))
"""

# Anything the writer queues: a claim on its own is the port's ClaimRequest.
WriteOp = Ingest | Record | ClaimRequest | GiveBack | Requeue


@dataclass(slots=True)
class PgBatch:
    """Applies batches for one daemon: `daemon_id` is written on what it claims, for `lease_s`."""

    daemon_id: str
    lease_s: float

    async def __call__(self, conn: Conn, ops: Sequence[WriteOp]) -> list[Any]:
        """One transaction; an exception instance as an op's result fails that op alone."""
        results: list[Any] = [None] * len(ops)
        ingests = [(i, op) for i, op in enumerate(ops) if isinstance(op, Ingest)]
        records = [(i, op) for i, op in enumerate(ops) if isinstance(op, Record)]
        claims = [(i, op) for i, op in enumerate(ops) if isinstance(op, ClaimRequest)]
        claims += [(i, op.then_claim) for i, op in records if op.then_claim]
        give_backs = [(i, op) for i, op in enumerate(ops) if isinstance(op, GiveBack)]
        transaction = conn.transaction()
        await transaction.start()
        try:
            xid = await self._begin(conn, [op for _, op in ingests], [c for _, c in claims])
            for index, op in give_backs:
                await conn.execute(_GIVE_BACK, list(op.ids), op.now, self.daemon_id)
                results[index] = None
            await self._record(conn, [op for _, op in records])
            for index, _ in records:
                results[index] = []
            replies = await self._ingest(conn, [op for _, op in ingests])
            for (index, _), reply in zip(ingests, replies, strict=True):
                results[index] = reply
            for index, claimed in await self._claim_together(conn, claims):
                results[index] = claimed
            # Last: deliveries stored `delivering` above that a stopping daemon will not run.
            for index, requeue in [(i, op) for i, op in enumerate(ops) if isinstance(op, Requeue)]:
                status = await conn.execute(_REQUEUE, requeue.now, self.daemon_id)
                results[index] = int(status.rsplit(" ", 1)[-1])  # "UPDATE n"
            queued = [e for r in replies if isinstance(r, Enqueued) for e in r.queued]
            if queued:
                await conn.execute(_NOTIFY, DUE_CHANNEL, notify_payloads(queued))
        except BaseException:
            with contextlib.suppress(*DRIVER_ERRORS):
                await transaction.rollback()
            raise
        try:
            await transaction.commit()
        except DRIVER_ERRORS as exc:
            started = [d.id for r in replies if isinstance(r, Enqueued) for d in r.started]
            taken = [d.id for index, _ in claims for d in results[index] or []]
            raise CommitUnknown(results, xid, started + taken) from exc
        return results

    @staticmethod
    async def _begin(conn: Conn, ingests: list[Ingest], claims: list[ClaimRequest]) -> int:
        """The transaction's id; its durability (outcomes and claims alone may be lost to a
        power cut, as a repeated attempt, never a lost event, so their commit does not wait for
        the disk); and the ordered endpoints' locks."""
        touched = sorted({e for op in ingests for event in op.events for e in event.endpoint_ids})
        ordered = sorted({e for claim in claims for e in claim.ordered if claim.quotas.get(e, 0) > 0})
        row = await conn.fetchrow(_BEGIN, touched, ordered, "on" if ingests else "off")
        assert row is not None
        return int(row[0])

    async def _ingest(self, conn: Conn, ops: list[Ingest]) -> list[Enqueued | InvalidInput]:
        if not ops:
            return []
        keys = sorted({e.idempotency_key for op in ops for e in op.events if e.idempotency_key})
        seen = await _known_keys(conn, keys) if keys else {}
        wanted = sum(len(e.endpoint_ids) for op in ops for e in op.events)
        ids = iter(await _take_ids(conn, wanted))
        events: list[NewEvent] = []
        delivery_rows: list[tuple[Any, ...]] = []
        check_filter: set[int] = set()
        filtered_out: dict[str, str] = {}
        replies: list[Enqueued | InvalidInput] = []
        for op in ops:
            rows = IngestRows(0, ids)
            reply = ingest_one(op, seen, rows)
            if not isinstance(reply, InvalidInput):
                seen.update(rows.keys)
                stored = {row[0] for row in rows.events}
                events += [e for e in op.events if e.id in stored]
                delivery_rows += rows.deliveries
                check_filter.update(rows.check_filter)
                filtered_out.update((event_id, text) for text, event_id in rows.filtered_out)
            replies.append(reply)
        if events:
            await conn.execute(
                _INSERT_EVENTS,
                [e.id for e in events],
                [e.idempotency_key for e in events],
                [e.type for e in events],
                [e.created_at for e in events],
                [e.body for e in events],
                [None if e.idempotency_key is None else bool(e.timestamp_given) for e in events],
                [filtered_out.get(e.id) for e in events],
                [e.schema_errors for e in events],
                [e.test or None for e in events],  # true or NULL, as the type counts' trigger reads it
            )
        if delivery_rows:
            lease_until = max(row[4] for row in delivery_rows) + self.lease_s
            await conn.execute(
                _INSERT_DELIVERIES,
                [row[0] for row in delivery_rows],
                [row[1] for row in delivery_rows],
                [row[2] for row in delivery_rows],
                [row[3] for row in delivery_rows],
                [row[4] for row in delivery_rows],
                [row[0] in check_filter for row in delivery_rows],
                self.daemon_id,
                lease_until,
            )
        return replies

    async def _record(self, conn: Conn, ops: list[Record]) -> None:
        records = [(op.now, rec) for op in ops for rec in op.records]
        if not records:
            return
        now = max(op.now for op in ops)
        results = [rec.result for _, rec in records]
        await conn.execute(
            _INSERT_ATTEMPTS,
            [rec.delivery_id for _, rec in records],
            [r.started_at for r in results],
            [r.duration_ms for r in results],
            [r.status for r in results],
            [storable(r.error) for r in results],
            [storable(r.response_excerpt) for r in results],
            [rec.outcome for _, rec in records],
            [r.body_sent for r in results],
            [rec.endpoint_id for _, rec in records],
        )
        await conn.execute(
            _WRITE_OUTCOMES,
            [rec.delivery_id for _, rec in records],
            [rec.state.value for _, rec in records],
            [rec.next_attempt_at for _, rec in records],
            [rec.first_attempt_at for _, rec in records],
            [r.started_at for r in results],
            [r.status for r in results],
            [storable(r.error) for r in results],
            now,
            self.daemon_id,
        )
        disables = [(rec.endpoint_id, rec.disable_endpoint) for _, rec in records if rec.disable_endpoint is not None]
        if disables:
            await conn.execute(_DISABLE, [d[0] for d in disables], [storable(d[1]) for d in disables], now)
            await conn.execute(_NOTIFY, ENDPOINTS_CHANNEL, notify_payloads([d[0] for d in disables]))
        releases = [(rec.endpoint_id, rec.release_backlog_at) for _, rec in records if rec.release_backlog_at]
        if releases:
            await conn.execute(_RELEASE_BACKLOG, [r[0] for r in releases], [r[1] for r in releases], now)

    async def _claim_together(
        self, conn: Conn, claims: list[tuple[int, ClaimRequest]]
    ) -> list[tuple[int, list[ClaimedDelivery]]]:
        """All the batch's claims as one statement, then shared out to the ops that asked,
        oldest first."""
        if not claims:
            return []
        merged = merge_claims([claim for _, claim in claims])
        wanted = {e: n for e, n in merged.quotas.items() if n > 0}
        ordered = sorted(e for e in merged.ordered if e in wanted)
        plain = [e for e in wanted if e not in merged.ordered]
        if not wanted:
            return share_claimed(claims, [])
        rows = await conn.fetch(
            _CLAIM, plain, [wanted[e] for e in plain], ordered, merged.now, self.daemon_id, merged.now + self.lease_s
        )
        claimed = [
            ClaimedDelivery(
                id=int(r[0]),
                event_id=r[1],
                endpoint_id=r[2],
                attempts=r[3],
                first_attempt_at=r[4],
                body=bytes(r[5]),
                check_filter=bool(r[6]),
            )
            for r in rows
        ]
        return share_claimed(claims, claimed)


async def _known_keys(conn: Conn, keys: list[str]) -> dict[str, Seen]:
    seen: dict[str, Seen] = {}
    for key, event_id, event_type, count, given, body in await conn.fetch(_KNOWN_KEYS, keys):
        seen[key] = Seen(event_id, event_type, int(count), given, bytes(body))
    return seen


async def _take_ids(conn: Conn, n: int) -> list[int]:
    """`n` delivery ids from the shared sequence, in increasing order."""
    if n == 0:
        return []
    rows = await conn.fetch("SELECT nextval('deliveries_id_seq') FROM generate_series(1, $1)", n)
    return sorted(int(r[0]) for r in rows)
