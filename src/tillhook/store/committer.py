"""Group commit: write operations queue up while a transaction runs, and the next
transaction takes all of them, so many requests share one fsync."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import structlog

Op = TypeVar("Op")
log = structlog.get_logger("tillhook.store")

MAX_OPS_PER_TRANSACTION = 512


class GroupCommitter(Generic[Op]):
    def __init__(
        self,
        apply_batch: Callable[[Sequence[Op]], Awaitable[Sequence[Any]]],
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._apply_batch = apply_batch
        self._on_commit = on_commit
        self._queue: asyncio.Queue[tuple[Op, asyncio.Future[Any]] | None] = asyncio.Queue()
        self._closed = False
        self.last_batch_size = 0
        self.transactions = 0
        self.ops_committed = 0

    async def submit(self, op: Op) -> Any:
        """Queue `op` and wait until the transaction holding it is committed."""
        if self._closed:
            raise RuntimeError("the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return await future

    async def run(self) -> None:
        """Until close(): take every queued op and apply them in one transaction."""
        while True:
            item = await self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < MAX_OPS_PER_TRANSACTION and not self._queue.empty():
                following = self._queue.get_nowait()
                if following is None:
                    self._queue.put_nowait(None)  # finish this batch, then stop
                    break
                batch.append(following)
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Op, asyncio.Future[Any]]]) -> None:
        self.last_batch_size = len(batch)
        try:
            results = await self._apply_batch([op for op, _ in batch])
        except Exception as exc:  # every waiter learns why its write did not happen
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.transactions += 1
        self.ops_committed += len(batch)
        if self._on_commit is not None:
            self._on_commit(len(batch))
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def close(self) -> None:
        """Stop taking ops; those already queued are still committed."""
        self._closed = True
        self._queue.put_nowait(None)
