"""The single writer connection, on a thread of its own.

A whole transaction (every statement and the commit) runs as one function on that thread, so
it costs one hand-off from the event loop. Sending each statement over separately (as
aiosqlite does) costs a round trip through the event loop per statement, and under load each
of those waits a turn of a busy loop: several milliseconds per transaction for nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class WriterThread:
    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self, path: Path, setup: Callable[[sqlite3.Connection], None]) -> None:
        """Connect on the writer thread (the connection never leaves it) and run `setup` there."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tillhook-writer")

        def connect() -> None:
            # isolation_level None: transactions are opened and closed explicitly by the caller.
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                setup(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` on the writer thread; its result or exception comes back here."""
        if self._executor is None:
            raise sqlite3.ProgrammingError("the writer is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the writer is closed")
        return fn(self._conn)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def disconnect() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await asyncio.get_running_loop().run_in_executor(executor, disconnect)
        finally:
            executor.shutdown(wait=True)
