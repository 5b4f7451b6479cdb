"""Per-endpoint failure streaks and back-off: an endpoint that keeps failing gets one probe
delivery at a time, spaced out, until a success releases its backlog."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from tillhook.retry import BACKOFF_AFTER_FAILURES, RetryPolicy


@dataclass(frozen=True, slots=True)
class Standing:
    """An endpoint's health as an attempt's outcome is judged against it."""

    backing_off: bool = False
    consecutive_failures: int = 0

    @property
    def failure_starts_backoff(self) -> bool:
        """Whether one more failure in a row would start a back-off."""
        return not self.backing_off and self.consecutive_failures + 1 >= BACKOFF_AFTER_FAILURES


@dataclass(frozen=True, slots=True)
class HealthChange:
    """What one attempt's outcome says about its endpoint (outcomes.judge decides it; the
    endpoint's gates apply it)."""

    kind: Literal["none", "succeeded", "failed"] = "none"
    reason: str | None = None  # failed: why, as the status page shows it
    probe: bool = False  # failed: the attempt was the back-off's probe, so the wait stretches
    paused_until: float | None = None  # the receiver asked for nothing to be sent until then


NO_CHANGE = HealthChange()


@dataclass(slots=True)
class EndpointHealth:
    consecutive_failures: int = 0
    failed_probes: int = 0
    probe_not_before: float = 0.0
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_failure: str | None = None
    # A 429/503 with Retry-After holds back the whole endpoint, not only that delivery.
    paused_until: float = 0.0
    # (minute, successes, failures) for the last hour: enough for a success rate without
    # reading the attempt log, which may hold millions of rows.
    recent: deque[list[int]] = field(default_factory=deque)

    @property
    def backing_off(self) -> bool:
        return self.consecutive_failures >= BACKOFF_AFTER_FAILURES

    def slots(self, limit: int, now: float) -> int:
        """How many attempts may run at once now: the limit, one probe, or none while waiting."""
        if now < self.paused_until:
            return 0
        if not self.backing_off:
            return limit
        return 1 if now >= self.probe_not_before else 0

    def standing(self) -> Standing:
        return Standing(self.backing_off, self.consecutive_failures)

    def apply(self, change: HealthChange, now: float, policy: RetryPolicy) -> None:
        if change.kind == "succeeded":
            self.succeeded(now)
        elif change.kind == "failed":
            self.failed(now, change.reason or "unknown", policy, probe=change.probe)
        if change.paused_until is not None:
            self.paused_until = max(self.paused_until, change.paused_until)

    def succeeded(self, now: float) -> bool:
        """Returns True when this success ends a back-off (the backlog should be released)."""
        was_backing_off = self.backing_off
        self.consecutive_failures = 0
        self.failed_probes = 0
        self.probe_not_before = 0.0
        self.last_success_at = now
        self._count(now, success=True)
        return was_backing_off

    def failed(self, now: float, reason: str, policy: RetryPolicy, *, probe: bool) -> bool:
        """Returns True when this failure starts a back-off. Only a failed probe stretches the
        wait; attempts already in flight when the back-off began do not."""
        was_backing_off = self.backing_off
        self.consecutive_failures += 1
        self.last_failure_at = now
        self.last_failure = reason
        self._count(now, success=False)
        if not self.backing_off:
            return False
        if not was_backing_off:
            self.probe_not_before = now + policy.probe_interval_s(0)
            return True
        if probe:
            self.failed_probes += 1
            self.probe_not_before = now + policy.probe_interval_s(self.failed_probes)
        return False

    def last_hour(self, now: float) -> tuple[int, int]:
        """(successes, failures) of the attempts that ended in the last hour."""
        self._forget(now)
        return sum(m[1] for m in self.recent), sum(m[2] for m in self.recent)

    def _count(self, now: float, *, success: bool) -> None:
        minute = int(now // 60)
        if not self.recent or self.recent[-1][0] != minute:
            self.recent.append([minute, 0, 0])
            self._forget(now)
        self.recent[-1][1 if success else 2] += 1

    def _forget(self, now: float) -> None:
        oldest = int(now // 60) - 59
        while self.recent and self.recent[0][0] < oldest:
            self.recent.popleft()
