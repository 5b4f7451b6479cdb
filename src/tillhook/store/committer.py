"""Group commit on the writer's own thread.

Write operations queue up while a transaction runs; as soon as it commits, the thread takes
every queued operation into the next one, so many requests share one fsync. The thread owns
the single writer connection and runs each whole transaction (statements and commit) itself:
the event loop only queues operations and resolves the futures of each finished batch at once.
Sending each statement over from the loop (as aiosqlite does) would cost a round trip through
a busy loop per statement, and waiting for the loop between two transactions would leave the
disk idle."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

Op = TypeVar("Op")

MAX_OPS_PER_TRANSACTION = 512

_Item = tuple[Op, "asyncio.Future[Any]"]


class GroupCommitter(Generic[Op]):
    def __init__(
        self,
        apply_batch: Callable[[sqlite3.Connection, Sequence[Op]], list[Any]],
        on_commit: Callable[[int], None] | None = None,
        describe: Callable[[Exception], Exception] | None = None,
    ) -> None:
        """`apply_batch(conn, ops)` runs one transaction on the writer thread and returns a
        result per op (an exception instance fails that op alone); if it raises, nothing of
        the batch was written, and its futures get `describe(error)` (the error itself by
        default)."""
        self._apply_batch = apply_batch
        self._on_commit = on_commit
        self._describe = describe
        self._queue: queue.SimpleQueue[_Item[Op] | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finished: asyncio.Future[None] | None = None
        self._closed = False
        self.transactions = 0
        self.ops_committed = 0

    async def start(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Start the writer thread; `connect()` opens the connection there. Its error is raised here."""
        self._loop = loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._finished = loop.create_future()
        threading.Thread(target=self._run, args=(connect, opened), name="tillhook-writer", daemon=True).start()
        await opened

    def submit(self, op: Op) -> asyncio.Future[Any]:
        """Queue `op`; the future is done, on the event loop, as soon as the transaction
        holding it is over (its done-callbacks need no task to wake up first). `op` is
        written even if nobody awaits the future, or it is cancelled."""
        if self._closed or self._loop is None:
            raise RuntimeError("the store is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((op, future))
        return future

    async def wait_finished(self) -> None:
        """Until the writer thread ends: after close(), or when it dies (then raises why)."""
        assert self._finished is not None, "not started"
        await asyncio.shield(self._finished)

    def close(self) -> None:
        """Stop taking ops; those already queued are still committed."""
        self._closed = True
        self._queue.put(None)

    # -- on the writer thread ------------------------------------------------------------

    def _run(self, connect: Callable[[], sqlite3.Connection], opened: asyncio.Future[None]) -> None:
        try:
            conn = connect()
        except BaseException as exc:  # noqa: BLE001 - raised again where open() awaits it
            self._tell(_fail, opened, exc)
            self._tell(_succeed, self._finished)
            return
        self._tell(_succeed, opened)
        try:
            self._commit_until_closed(conn)
        except BaseException as exc:  # a bug in the writer: the daemon must stop loudly
            self._tell(_fail, self._finished, exc)
            raise
        finally:
            conn.close()
        self._tell(_succeed, self._finished)

    def _commit_until_closed(self, conn: sqlite3.Connection) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            closing = False
            while len(batch) < MAX_OPS_PER_TRANSACTION:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    closing = True  # finish this batch, then stop
                    break
                batch.append(following)
            try:
                results: list[Any] | None = self._apply_batch(conn, [op for op, _ in batch])
                error: Exception | None = None
            except Exception as exc:  # noqa: BLE001 - every waiter learns why its write did not happen
                results, error = None, exc
            self._tell(self._resolve, batch, results, error)
            if closing:
                return

    def _tell(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(fn, *args)

    # -- back on the event loop ----------------------------------------------------------

    def _resolve(self, batch: list[_Item[Op]], results: list[Any] | None, error: Exception | None) -> None:
        if error is not None or results is None:
            failed = error or RuntimeError("the write was lost")
            if self._describe is not None:
                failed = self._describe(failed)
            fail_all([future for _, future in batch], failed)
            return
        self.transactions += 1
        self.ops_committed += len(batch)
        if self._on_commit is not None:
            self._on_commit(len(batch))
        settle_each([future for _, future in batch], results)


def fail_all(futures: Sequence[asyncio.Future[Any]], error: BaseException) -> None:
    """Every waiter of a batch that was not written learns why."""
    for future in futures:
        if not future.done():
            future.set_exception(error)


def settle_each(futures: Sequence[asyncio.Future[Any]], results: Sequence[Any]) -> None:
    """Each waiter of a committed batch gets its op's result (an exception instance: that op
    alone failed)."""
    for future, result in zip(futures, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _succeed(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _fail(future: asyncio.Future[None] | None, exc: BaseException) -> None:
    if future is not None and not future.done():
        future.set_exception(exc)
