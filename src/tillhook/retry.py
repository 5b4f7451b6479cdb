"""What to do after an attempt: a pure policy, tested as a table."""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from tillhook.models import AttemptResult

RETRY_AFTER_MIN_S = 1.0
RETRY_AFTER_MAX_S = 3600.0
BACKOFF_AFTER_FAILURES = 5
MAX_PROBE_INTERVAL_S = 300.0


class Verdict(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"  # the receiver asked us to stop: disable the endpoint, keep the delivery
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    next_attempt_at: float | None = None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:  # the asctime form carries no zone; HTTP dates are all GMT
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    schedule_s: Sequence[float]
    give_up_after_s: float
    jitter: float = 0.2

    def delay_s(self, attempts_made: int, rand: Callable[[], float] = random.random) -> float:
        """Delay after the `attempts_made`-th attempt: the schedule, then its last entry, ±jitter."""
        base = self.schedule_s[min(attempts_made, len(self.schedule_s)) - 1]
        return base * (1.0 + self.jitter * (2.0 * rand() - 1.0))

    def decide(
        self,
        result: AttemptResult,
        attempts_made: int,
        first_attempt_at: float,
        now: float,
        rand: Callable[[], float] = random.random,
    ) -> Decision:
        status = result.status
        if status is not None and 200 <= status < 300:
            return Decision(Verdict.DELIVERED)
        if status == 410:
            return Decision(Verdict.GONE, next_attempt_at=now)
        deadline = first_attempt_at + self.give_up_after_s
        if now >= deadline:
            return Decision(Verdict.FAILED)
        if status in (429, 503) and result.retry_after_s is not None:
            wait = min(max(result.retry_after_s, RETRY_AFTER_MIN_S), RETRY_AFTER_MAX_S)
            return Decision(Verdict.RETRY, next_attempt_at=now + wait)
        # Past the schedule the last delay repeats; the final try lands on the deadline itself.
        return Decision(Verdict.RETRY, next_attempt_at=min(now + self.delay_s(attempts_made, rand), deadline))

    def probe_interval_s(self, failed_probes: int) -> float:
        """How long an endpoint in back-off waits between single probe deliveries."""
        index = min(failed_probes, len(self.schedule_s) - 1)
        return min(self.schedule_s[index], MAX_PROBE_INTERVAL_S)
