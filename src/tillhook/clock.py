"""Time as a dependency, so the dispatcher can be stepped by tests without sleeping."""

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time in unix seconds: what is stored and shown."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for durations."""

    async def sleep(self, delay_s: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
