"""Per-endpoint failure streaks and back-off: an endpoint that keeps failing gets one probe
delivery at a time, spaced out, until a success releases its backlog."""

from __future__ import annotations

from dataclasses import dataclass

from tillhook.retry import BACKOFF_AFTER_FAILURES, RetryPolicy


@dataclass(slots=True)
class EndpointHealth:
    consecutive_failures: int = 0
    failed_probes: int = 0
    probe_not_before: float = 0.0
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_failure: str | None = None

    @property
    def backing_off(self) -> bool:
        return self.consecutive_failures >= BACKOFF_AFTER_FAILURES

    def slots(self, limit: int, now: float) -> int:
        """How many attempts may run at once now: the limit, one probe, or none while waiting."""
        if not self.backing_off:
            return limit
        return 1 if now >= self.probe_not_before else 0

    def succeeded(self, now: float) -> bool:
        """Returns True when this success ends a back-off (the backlog should be released)."""
        was_backing_off = self.backing_off
        self.consecutive_failures = 0
        self.failed_probes = 0
        self.probe_not_before = 0.0
        self.last_success_at = now
        return was_backing_off

    def failed(self, now: float, reason: str, policy: RetryPolicy, *, probe: bool) -> bool:
        """Returns True when this failure starts a back-off. Only a failed probe stretches the
        wait; attempts already in flight when the back-off began do not."""
        was_backing_off = self.backing_off
        self.consecutive_failures += 1
        self.last_failure_at = now
        self.last_failure = reason
        if not self.backing_off:
            return False
        if not was_backing_off:
            self.probe_not_before = now + policy.probe_interval_s(0)
            return True
        if probe:
            self.failed_probes += 1
            self.probe_not_before = now + policy.probe_interval_s(self.failed_probes)
        return False
