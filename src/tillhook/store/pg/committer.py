"""Group commit on one writer connection to PostgreSQL.

Writes queue up while a transaction runs; as soon as it commits, every queued write goes into
the next one, so many requests share one commit (and its wait for the disk). A lost
connection fails the batch it held (the callers answer 503: nothing of it was stored) and the
next batch connects again: PostgreSQL restarting costs the writes made meanwhile, never the
writer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import asyncpg
import structlog

from tillhook.errors import StoreUnavailable
from tillhook.store.committer import fail_all, settle_each
from tillhook.store.pg.batch import CommitUnknown
from tillhook.store.pg.connect import describe_pg_error
from tillhook.store.pg.reads import DRIVER_ERRORS

log = structlog.get_logger("tillhook.store")

Op = TypeVar("Op")

MAX_OPS_PER_TRANSACTION = 512
# How long a batch whose commit went unanswered waits for PostgreSQL to say whether it was.
COMMIT_CHECK_S = 15.0

# Two daemons storing the same idempotency key at once (one of them meets the other's row),
# or taking row locks in another order: the batch is tried once more, and then sees the rows
# the other committed.
_TRY_AGAIN = (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError, asyncpg.SerializationError)

_Item = tuple[Op, "asyncio.Future[Any]"]


class PgGroupCommitter(Generic[Op]):
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        apply_batch: Callable[[asyncpg.Connection, Sequence[Op]], Awaitable[list[Any]]],
        on_commit: Callable[[int], None] | None = None,
        give_back: Callable[[list[int]], Op] | None = None,
    ) -> None:
        """`apply_batch(conn, ops)` runs one transaction and returns a result per op (an
        exception instance fails that op alone); if it raises, nothing of the batch was
        written and every op of it fails with StoreUnavailable."""
        self._connect = connect
        self._apply_batch = apply_batch
        self.on_commit = on_commit
        self._give_back = give_back  # the op that puts back deliveries of a commit of unknown fate
        self._queue: asyncio.Queue[_Item[Op] | None] = asyncio.Queue()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.transactions = 0
        self.ops_committed = 0

    async def start(self) -> None:
        """Connect (its error is raised here) and start committing."""
        self._conn = await self._connect()
        self._task = asyncio.create_task(self._run(), name="tillhook-store-writer")

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def submit(self, op: Op) -> asyncio.Future[Any]:
        """Queue `op`; the future is done as soon as the transaction holding it is over. `op`
        is written even if nobody awaits the future."""
        if self._closed or self._task is None:
            raise StoreUnavailable("the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return future

    async def close(self) -> None:
        """Stop taking ops; those already queued are still committed (or fail)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5)
            self._conn = None

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            batch = [item]
            closing = False
            while len(batch) < MAX_OPS_PER_TRANSACTION and not self._queue.empty():
                following = self._queue.get_nowait()
                if following is None:
                    closing = True
                    break
                batch.append(following)
            try:
                await self._commit(batch)
            except BaseException as exc:  # a bug: nobody waits for ever, and the daemon stops loudly
                fail_all([future for _, future in batch], StoreUnavailable(f"the writer failed: {exc!r}"))
                raise
            if closing:
                return

    async def _commit(self, batch: list[_Item[Op]]) -> None:
        ops = [op for op, _ in batch]
        error: Exception | None = None
        results: list[Any] = []
        for attempt in range(2):
            try:
                conn = await self._connection()
                results = await self._apply_batch(conn, ops)
                error = None
                break
            except CommitUnknown as unknown:
                await self._drop_connection()
                results, error = unknown.results, await self._fate(unknown)
                break
            except _TRY_AGAIN as exc:
                error = exc
                if attempt == 0:
                    continue
            except DRIVER_ERRORS as exc:
                error = exc
                lost = self._conn is None or self._conn.is_closed()
                if lost:
                    log.warning("store_connection_lost", connection="writer", error=describe_pg_error(exc))
                    await self._drop_connection()
                elif len(batch) > 1 and isinstance(exc, asyncpg.PostgresError):
                    # One op the database refuses (a value it cannot hold, say) must not fail
                    # the others that happened to share its transaction: each on its own.
                    for item in batch:
                        await self._commit([item])
                    return
            except StoreUnavailable as exc:
                error = exc
            break
        futures = [future for _, future in batch]
        if error is not None:
            fail_all(
                futures, error if isinstance(error, StoreUnavailable) else StoreUnavailable(describe_pg_error(error))
            )
            return
        self.transactions += 1
        self.ops_committed += len(batch)
        if self.on_commit is not None:
            self.on_commit(len(batch))
        settle_each(futures, results)

    async def _fate(self, unknown: CommitUnknown) -> StoreUnavailable | None:
        """Whether the transaction the connection was lost in committed after all (None: it
        did, its results stand), asked on a new connection for as long as PostgreSQL may take
        to come back: the callers wait rather than hear a 503 that may be untrue."""
        deadline = asyncio.get_running_loop().time() + COMMIT_CHECK_S
        while True:
            try:
                conn = await self._connection()
                status = await conn.fetchval("SELECT txid_status($1)", unknown.xid)
            except (*DRIVER_ERRORS, StoreUnavailable):
                await self._drop_connection()
                status = "unreachable"
            if status == "committed":
                return None
            if status == "aborted":
                return StoreUnavailable(
                    "PostgreSQL went away while committing: nothing of this request was stored; retry"
                )
            if status is None or asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.2)  # still committing, or PostgreSQL restarting: ask again shortly
        if unknown.claimed and self._give_back is not None:
            # Marked this daemon's in a transaction nobody knows the fate of: if it committed,
            # nobody would ever run them (their lease is renewed with the daemon's).
            self._queue.put_nowait((self._give_back(unknown.claimed), asyncio.get_running_loop().create_future()))
        return StoreUnavailable(
            "PostgreSQL went away while these events were being committed: they may be stored or not; send them"
            " again with the same Idempotency-Key (a stored one is answered as a duplicate)"
        )

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            self._conn = await self._connect()  # StoreUnavailable while PostgreSQL is away
            log.info("store_reconnected", connection="writer")
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
