"""Notices the database file deleted or replaced under the running daemon.

SQLite goes on writing to a file that was unlinked while open, so the daemon would go on
acknowledging events that no restart can find. Instead, within a second or so: every new
write is refused (ingest answers 503 saying what happened and what to do; /healthz 503),
the writes already queued are committed, and then what the open connections hold, every
acknowledged event included, is copied to a rescue file beside the path. The daemon keeps
running in that state: restarted, it would start on an empty database."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from tillhook.errors import StoreError
from tillhook.store.sqlite import SqliteStore

log = structlog.get_logger("tillhook.store")

CHECK_EVERY_S = 1.0
RESCUE_RETRY_S = 10.0  # after a rescue copy failed (no space, directory gone)


def file_change(path: Path, file_id: tuple[int, int] | None) -> str | None:
    """'deleted' or 'replaced' when the file at `path` is no longer the one opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "deleted"
    except OSError:
        return None  # cannot tell (a permission hiccup): the next look may
    if file_id is not None and (st.st_dev, st.st_ino) != file_id:
        return "replaced"
    return None


def rescue_path(path: Path, now: float) -> Path:
    return path.with_name(f"{path.name}.rescued-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}")


class DatabaseWatch:
    def __init__(
        self, store: SqliteStore, now: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._now = now
        self._monotonic = monotonic
        self._path = store.path.absolute()
        self._change: str | None = None
        self._rescue: Path | None = None
        self._rescued = False
        self._next_try = 0.0

    async def run(self) -> None:
        """Look every second, for the life of the daemon."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            await self.check()

    async def check(self) -> bool:
        """One look; True once the database is lost (refused, drained, and rescued if it could be)."""
        if self._change is None:
            self._change = file_change(self._path, self._store.file_id)
            if self._change is None:
                return False
            self._rescue = rescue_path(self._path, self._now())
            # First no new write may be acknowledged, then everything acknowledged already
            # is committed, then copied: the rescue holds every event that got a 202.
            self._store.refuse_writes(self._refusal())
            await self._store.drain_writes()
        if not self._rescued and self._monotonic() >= self._next_try:
            await self._try_rescue()
        return True

    async def _try_rescue(self) -> None:
        assert self._rescue is not None
        first = self._next_try == 0.0
        try:
            events = await self._store.copy_to(self._rescue)
        except StoreError as exc:
            self._next_try = self._monotonic() + RESCUE_RETRY_S
            if first:
                self._store.refuse_writes(self._refusal(failed=exc.message))
                log.critical(
                    "database_lost",
                    path=str(self._path),
                    change=self._change,
                    rescue=None,
                    rescue_error=exc.message,
                    action=self._store.lost,
                )
            return
        self._rescued = True
        self._store.refuse_writes(self._refusal())
        log.critical(
            "database_lost" if first else "database_rescued",
            path=str(self._path),
            change=self._change,
            rescue=str(self._rescue),
            events=events,
            action=self._store.lost,
        )

    def _refusal(self, failed: str | None = None) -> str:
        path, what = self._path, f"the database file {self._path} was {self._change} while tillhook was running"
        if failed is not None:
            return (
                f"{what}, and saving what it held failed ({failed}); tillhook keeps it and tries again every"
                f" {RESCUE_RETRY_S:.0f}s: do not stop tillhook; make {path.parent} exist, writable, with free space"
            )
        return (
            f"{what}; what it had accepted is saved in {self._rescue}: stop tillhook, move that file to {path}"
            f" (removing any {path.name}-wal and {path.name}-shm beside it) and start tillhook again"
        )
