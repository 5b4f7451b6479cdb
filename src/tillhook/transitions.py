"""What the dispatcher tells a listener (alerts.py) as an endpoint or a delivery changes
state: the hooks it calls, and the one place those changes are read off an attempt's outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from tillhook.health import Standing
from tillhook.models import AttemptRecord, ClaimedDelivery, DeliveryState, Endpoint
from tillhook.outcomes import Judged

log = structlog.get_logger("tillhook.dispatcher")

DisabledBy = Literal["receiver", "admin"]


class Transitions(Protocol):
    """Called on the loop in the middle of recording an outcome (or of an admin's request):
    each must return at once, leaving any I/O to a task of its own."""

    def failing(self, endpoint: Endpoint, failures: int, last_failure: str | None) -> None:
        """This failure, the `failures`-th in a row, started a back-off."""

    def recovered(self, endpoint: Endpoint, failures: int) -> None:
        """This success ended a back-off that `failures` failures in a row had started."""

    def disabled(self, endpoint: Endpoint, reason: str, by: DisabledBy) -> None:
        """The endpoint, enabled until now, was disabled."""

    def gave_up(self, endpoint: Endpoint, delivery: ClaimedDelivery, record: AttemptRecord) -> None:
        """This attempt made the delivery `failed`."""


@dataclass(frozen=True, slots=True)
class Before:
    """An endpoint as it stood before an attempt's outcome was judged."""

    standing: Standing
    enabled: bool

    @classmethod
    def of(cls, standing: Standing, endpoint: Endpoint | None) -> Before:
        return cls(standing, endpoint is not None and endpoint.enabled)


def tell(
    transitions: Transitions, endpoint: Endpoint, delivery: ClaimedDelivery, judged: Judged, before: Before
) -> None:
    """Tell what this outcome changed. A listener's mistake is logged, never raised: the
    outcome being recorded matters more than any alert about it."""
    record, change, standing = judged.record, judged.change, before.standing
    try:
        if change.kind == "failed" and standing.failure_starts_backoff:
            transitions.failing(endpoint, standing.consecutive_failures + 1, change.reason)
        if record.release_backlog_at is not None:
            transitions.recovered(endpoint, standing.consecutive_failures)
        if record.disable_endpoint is not None and before.enabled:
            transitions.disabled(endpoint, record.disable_endpoint, "receiver")
        if record.state is DeliveryState.FAILED:
            transitions.gave_up(endpoint, delivery, record)
    except Exception:
        log.exception("transition_not_told", endpoint=endpoint.name, delivery_id=delivery.id)
