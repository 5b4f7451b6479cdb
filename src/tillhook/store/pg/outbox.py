"""The outbox on PostgreSQL (store/port.py `Outbox`), shared by every daemon pointed at the same
database: group commit of ingest, outcomes and claims on one writer connection, reads and the
admin writes on a pool, and this daemon's presence (its leases, its wake-ups) beside them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from tillhook.errors import StoreError, StoreUnavailable
from tillhook.models import AttemptRecord, ClaimedDelivery, Endpoint, NewEvent
from tillhook.store.ops import Ingest, Record
from tillhook.store.pg import admin as pg_admin
from tillhook.store.pg import endpoints as pg_endpoints
from tillhook.store.pg.batch import GiveBack, PgBatch, Requeue, WriteOp
from tillhook.store.pg.committer import PgGroupCommitter
from tillhook.store.pg.connect import Conn, PostgresTarget, connect, create_pool, describe_pg_error, unavailable
from tillhook.store.pg.presence import Presence
from tillhook.store.pg.reads import DRIVER_ERRORS, PgReads
from tillhook.store.pg.schema import migrate
from tillhook.store.port import ClaimRequest, ConfigApplied, DeliveryRow, Enqueued, LogFilter, RetriedMatching, Tokens

T = TypeVar("T")

# Reads and admin writes; the writer and the presence (its beat and LISTEN) have a
# connection each of their own.
POOL_SIZE = 8
# No statement of the outbox's takes this long on a server that answers: one that does is on a
# connection gone half-open (a cut network), and fails rather than hang its callers.
COMMAND_TIMEOUT_S = 30.0
# The writer's statements each have an index to go by, and a plan made while a table was
# small (a new outbox's: a scan of the whole table, cheapest then) would be kept by the
# connection's statement cache until the table is next analysed, costing more with every row
# meanwhile. With scans priced out, its plans follow the indexes whatever the table's size.
WRITER_SESSION = {"enable_seqscan": "off"}


class PostgresStore(PgReads):
    """The outbox in a PostgreSQL database. Beyond the port, for the composition root:
    `presence` (which endpoints this daemon serves, the other daemons' news) and `on_commit`."""

    def __init__(
        self,
        target: PostgresTarget,
        *,
        lease_s: float = 30.0,
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.target = target
        self.lease_s = lease_s
        self._now = now
        self.presence = Presence(self._connect_presence, lease_s=lease_s, now=now, monotonic=monotonic)
        self._committer: PgGroupCommitter[WriteOp] | None = None
        self.on_commit: Callable[[int], None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        conn = await connect(self.target)
        try:
            await migrate(conn)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"cannot prepare the outbox in {self.target.display}: {describe_pg_error(exc)}") from None
        finally:
            await conn.close()
        try:
            self._pool = await create_pool(
                self.target, min_size=1, max_size=POOL_SIZE, command_timeout=COMMAND_TIMEOUT_S
            )
            batch = PgBatch(self.presence.daemon_id, self.lease_s)
            self._committer = PgGroupCommitter(
                lambda: connect(self.target, command_timeout=COMMAND_TIMEOUT_S, server_settings=WRITER_SESSION),
                batch,
                self._committed,
                give_back=lambda ids: GiveBack(ids, self._now()),
            )
            await self._committer.start()
            await self.presence.start()
        except DRIVER_ERRORS as exc:
            await self.close()
            raise StoreError(f"cannot open the outbox in {self.target.display}: {describe_pg_error(exc)}") from None
        except BaseException:
            await self.close()
            raise

    def announce(self, **facts: object) -> None:
        """Where this daemon listens, kept in its row of `daemons` for the operator."""
        if "listen" in facts:
            self.presence.listen_address = str(facts["listen"])

    async def _connect_presence(self) -> asyncpg.Connection:
        # Its statements are small: one that does not answer within a third of the lease
        # means the connection (or the server) is gone, and the beat connects again.
        return await connect(self.target, command_timeout=max(1.0, self.lease_s / 3))

    def _committed(self, ops: int) -> None:
        if self.on_commit is not None:
            self.on_commit(ops)

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer.close()
            self._committer = None
        await self.presence.stop()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 10)
            self._pool = None

    @property
    def writer(self) -> asyncio.Task[None] | None:
        return None if self._committer is None else self._committer.task

    @property
    def commit_stats(self) -> tuple[int, int]:
        if self._committer is None:
            return 0, 0
        return self._committer.transactions, self._committer.ops_committed

    def _queued(self, op: WriteOp) -> asyncio.Future[Any]:
        """`op` queued, as a future done as soon as its transaction is over; a refusal to
        queue it comes as a future failed already."""
        try:
            if self._committer is None:
                raise StoreUnavailable("the store is not open")
            return self._committer.submit(op)
        except StoreUnavailable as exc:
            refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            refused.set_exception(exc)
            return refused

    @property
    def location(self) -> str:
        return self.target.display

    async def _transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """`fn(conn)` in a transaction of its own on a pool connection; the driver's errors
        come out as StoreUnavailable, tillhook's own (NotFound, Conflict) as they are."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                return await fn(conn)
        except DRIVER_ERRORS as exc:
            raise unavailable(exc, self.target) from exc

    # -- tokens and endpoints (store/pg/admin.py, store/pg/endpoints.py) ---------------

    async def tokens(self, ingest: str | None, admin: str | None, viewer: str | None) -> Tokens:
        return await self._transaction(lambda conn: pg_admin.tokens(conn, ingest, admin, viewer))

    async def apply_config_endpoints(self, endpoints: Sequence[Endpoint], now: float) -> ConfigApplied:
        return await self._transaction(lambda conn: pg_endpoints.apply_config(conn, endpoints, now))

    async def check_writable(self) -> None:
        await self._transaction(pg_admin.check_writable)

    async def purge_before(self, cutoff: float, limit: int = 500) -> int:
        return await self._transaction(lambda conn: pg_admin.purge_batch(conn, cutoff, limit))

    # -- the admin API's writes (store/pg/admin.py, store/pg/endpoints.py) --------------

    async def create_endpoint(self, endpoint: Endpoint, now: float) -> Endpoint:
        return await self._transaction(lambda conn: pg_endpoints.insert_endpoint(conn, endpoint, now))

    async def update_endpoint(self, endpoint_id: str, changes: Mapping[str, Any], now: float) -> Endpoint:
        return await self._transaction(lambda conn: pg_endpoints.update_endpoint(conn, endpoint_id, changes, now))

    async def delete_endpoint(self, endpoint_id: str, now: float) -> int:
        return await self._transaction(lambda conn: pg_endpoints.delete_endpoint(conn, endpoint_id, now))

    async def set_endpoint_enabled(self, endpoint_id: str, enabled: bool, reason: str | None, now: float) -> Endpoint:
        return await self._transaction(lambda conn: pg_endpoints.set_enabled(conn, endpoint_id, enabled, reason, now))

    async def rotate_secret(self, endpoint_id: str, new_secret: str, old_expires_at: float, now: float) -> Endpoint:
        return await self._transaction(
            lambda conn: pg_endpoints.rotate_secret(conn, endpoint_id, new_secret, old_expires_at, now)
        )

    async def replay(self, endpoint: Endpoint, since: float, until: float, only_failed: bool, now: float) -> int:
        return await self._transaction(lambda conn: pg_admin.replay(conn, endpoint, since, until, only_failed, now))

    async def retry_delivery(self, delivery_id: int, now: float) -> DeliveryRow:
        return await self._transaction(lambda conn: pg_admin.retry_delivery(conn, delivery_id, now))

    async def retry_matching(self, f: LogFilter, now: float, at_most: int) -> RetriedMatching:
        return await self._transaction(lambda conn: pg_admin.retry_matching(conn, f, now, at_most))

    # -- ingest and delivery (store/pg/batch.py) -----------------------------------------

    def enqueue(
        self, events: Sequence[NewEvent], start: Sequence[Sequence[bool]] | None = None, *, batch: bool = False
    ) -> asyncio.Future[Enqueued]:
        return self._queued(Ingest(events, start, batch))

    async def claim_due(self, claim: ClaimRequest) -> list[ClaimedDelivery]:
        if not any(n > 0 for n in claim.quotas.values()):
            return []
        claimed: list[ClaimedDelivery] = await self._queued(claim)
        return claimed

    def write_outcomes(
        self, records: Sequence[AttemptRecord], now: float, then_claim: ClaimRequest | None = None
    ) -> asyncio.Future[list[ClaimedDelivery]]:
        return self._queued(Record(records, now, then_claim))

    async def requeue_in_flight(self, now: float) -> int:
        """This daemon's own claims go back to pending, due now (at a stop), and those of any
        daemon not seen within its lease whose claim ran out before `now`. Another daemon's
        live claims are never taken, at a start least of all. Through the writer, behind the
        writes queued before it (their started deliveries, refused by a stopping dispatcher,
        go back with the rest)."""
        count: int = await self._queued(Requeue(now))
        return count

    async def backup(self, target: Path) -> int:
        raise StoreError(
            "tillhook does not copy a PostgreSQL outbox itself: use pg_dump, e.g."
            f" pg_dump --format=custom --file={target} '{self.target.display}'"
        )
