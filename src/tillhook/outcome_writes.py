"""Attempts' outcomes on their way to the outbox: how many are being written (a stop waits
for them), those the outbox refused (kept, and written again before the next claim), and the
refusal itself, logged once per cause until the outbox takes writes again, not once a tick."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import structlog

from tillhook.clock import Clock
from tillhook.errors import StoreUnavailable
from tillhook.models import AttemptRecord, ClaimedDelivery
from tillhook.store.port import ClaimRequest, Outbox

log = structlog.get_logger("tillhook.dispatcher")

Written = asyncio.Future[list[ClaimedDelivery]]


class OutcomeWrites:
    def __init__(self, outbox: Outbox, clock: Clock) -> None:
        self._outbox = outbox
        self._clock = clock
        self.writing = 0  # outcomes queued for the outbox and not yet written
        self._idle = asyncio.Event()  # set whenever none is
        self._idle.set()
        self._unrecorded: list[AttemptRecord] = []  # outcomes the outbox could not take yet
        self._unavailable: str | None = None  # why the outbox refused writes, as last logged

    def write(self, record: AttemptRecord, claim: ClaimRequest | None, then: Callable[[Written], None]) -> None:
        """Queue the outcome (and `claim`, in the same transaction) and return; `then(written)`
        runs on the loop as soon as the write is over. A refused outcome is kept for `flush`.
        Once queued, it is written even during a stop."""
        written = self._outbox.write_outcomes([record], self._clock.now(), claim)
        self.writing += 1
        self._idle.clear()
        written.add_done_callback(functools.partial(self._done, record, then))

    def _done(self, record: AttemptRecord, then: Callable[[Written], None], written: Written) -> None:
        self.writing -= 1
        if not self.writing:
            self._idle.set()
        error = written.exception()
        if error is not None:
            # The delivery stays `delivering` (never claimed twice) until the outcome is written.
            refusal = error if isinstance(error, StoreUnavailable) else StoreUnavailable(str(error))
            self.refused(refusal, delivery_id=record.delivery_id)
            self._unrecorded.append(record)
        then(written)

    async def flush(self) -> None:
        """Write again what the outbox refused; raises StoreUnavailable (keeping them) if it
        still does."""
        if not self._unrecorded:
            return
        records, self._unrecorded = self._unrecorded, []
        try:
            await self._outbox.write_outcomes(records, self._clock.now())
        except StoreUnavailable:
            self._unrecorded = records + self._unrecorded
            raise

    async def idle(self) -> None:
        """Until no outcome is being written."""
        await self._idle.wait()

    def refused(self, exc: StoreUnavailable, **context: object) -> None:
        if exc.message != self._unavailable:
            self._unavailable = exc.message
            log.error("storage_unavailable", error=exc.message, **context)

    def answered(self) -> None:
        """The outbox took a write again: its next refusal is logged."""
        self._unavailable = None
