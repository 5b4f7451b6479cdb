"""The hourly purge of history older than storage.retention. Pending and in-flight
deliveries are never touched; each batch is its own short transaction, so ingest commits
slip in between batches and never wait long."""

from __future__ import annotations

import asyncio

import structlog

from tillhook.clock import Clock
from tillhook.errors import StoreUnavailable
from tillhook.store.port import Outbox

log = structlog.get_logger("tillhook.retention")

INTERVAL_S = 3600.0
FIRST_RUN_AFTER_S = 60.0  # not during start-up, when a backlog is being drained
BATCH = 500


class Retention:
    def __init__(self, store: Outbox, clock: Clock, retention_s: float, *, batch: int = BATCH) -> None:
        self._store = store
        self._clock = clock
        self._retention_s = retention_s
        self._batch = batch

    async def run_once(self) -> int:
        """Purge everything due now, batch by batch; returns the events purged."""
        cutoff = self._clock.now() - self._retention_s
        total = 0
        while True:
            purged = await self._store.purge_before(cutoff, self._batch)
            total += purged
            if purged < self._batch:
                break
            await asyncio.sleep(0)  # let queued ingest and outcome writes take the writer first
        if total:
            log.info("history_purged", events=total, older_than_s=self._retention_s)
        return total

    async def run(self) -> None:
        await self._clock.sleep(FIRST_RUN_AFTER_S)
        while True:
            try:
                await self.run_once()
            except StoreUnavailable as exc:
                log.error("storage_unavailable", error=exc.message, at="retention")
            await self._clock.sleep(INTERVAL_S)
