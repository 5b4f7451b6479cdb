"""What one attempt's result means: the delivery's next state, what it says about its
endpoint's health, and the lines an operator needs to see. Pure: the caller writes the
record, applies the health change (gates.py) and logs the lines."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import structlog

from tillhook.health import NO_CHANGE, HealthChange, Standing
from tillhook.models import (
    AttemptRecord,
    AttemptResult,
    ClaimedDelivery,
    DeliveryState,
    Endpoint,
)
from tillhook.retry import Decision, RetryPolicy, Verdict

log = structlog.get_logger("tillhook.dispatcher")


@dataclass(frozen=True, slots=True)
class LogLine:
    level: Literal["debug", "info", "warning", "error"]
    event: str
    fields: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Judged:
    record: AttemptRecord
    change: HealthChange
    lines: tuple[LogLine, ...]


def emit(lines: Iterable[LogLine]) -> None:
    for line in lines:
        getattr(log, line.level)(line.event, **line.fields)


def judge(
    endpoint: Endpoint,
    delivery: ClaimedDelivery,
    result: AttemptResult,
    probe: bool,
    policy: RetryPolicy,
    standing: Standing,
    now: float,
    rand: Callable[[], float],
) -> Judged:
    """The record to write for this attempt, judged against the endpoint's `standing` before
    it. A 410 comes back with `disable_endpoint` set, a retry with its `next_attempt_at`, the
    success that ends a back-off with `release_backlog_at`."""
    attempt_no = delivery.attempts + 1
    first_at = delivery.first_attempt_at or result.started_at
    if result.filtered_out:
        return _filtered_out(endpoint, delivery, result, first_at)
    decision = policy.decide(result, attempt_no, first_at, now, rand)
    about = {
        "event_id": delivery.event_id,
        "endpoint": endpoint.name,
        "delivery_id": delivery.id,
        "attempt": attempt_no,
        "status": result.status,
        "duration_ms": round(result.duration_ms, 1),
    }
    lines: list[LogLine] = []
    state, disable, release, change = DeliveryState.PENDING, None, None, NO_CHANGE
    if decision.verdict is Verdict.DELIVERED:
        state, change = DeliveryState.DELIVERED, HealthChange("succeeded")
        # Every attempt is in the delivery log; a line per success would cost a tenth of
        # the CPU at hundreds a second and drown the lines that need a reader.
        lines.append(LogLine("debug", "delivery_succeeded", about))
        if standing.backing_off:
            release = now
            lines.append(LogLine("info", "endpoint_recovered", {"endpoint": endpoint.name}))
    elif decision.verdict is Verdict.GONE:
        disable = f"the receiver answered 410 Gone at attempt {attempt_no}"
        lines.append(LogLine("warning", "endpoint_gone", {**about, "reason": disable}))
    else:
        state, change = _failure(endpoint, result, probe, standing, decision, about, lines)
    record = AttemptRecord(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        result=result,
        state=state,
        next_attempt_at=decision.next_attempt_at,
        first_attempt_at=first_at,
        outcome=decision.verdict.value,
        disable_endpoint=disable,
        release_backlog_at=release,
    )
    return Judged(record, change, tuple(lines))


def _filtered_out(endpoint: Endpoint, delivery: ClaimedDelivery, result: AttemptResult, first_at: float) -> Judged:
    # Its filter failed when the event came in and now says no: nothing was sent, and
    # nothing about the receiver was learnt.
    record = AttemptRecord(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        result=replace(result, error="not sent: the endpoint's filter leaves this event out"),
        state=DeliveryState.CANCELLED,
        next_attempt_at=None,
        first_attempt_at=first_at,
        outcome="filtered_out",
    )
    about = {"event_id": delivery.event_id, "endpoint": endpoint.name, "delivery_id": delivery.id}
    return Judged(record, NO_CHANGE, (LogLine("info", "delivery_filtered_out", about),))


def _failure(
    endpoint: Endpoint,
    result: AttemptResult,
    probe: bool,
    standing: Standing,
    decision: Decision,
    about: dict[str, object],
    lines: list[LogLine],
) -> tuple[DeliveryState, HealthChange]:
    """An attempt that did not deliver (and was no 410): retried or given up, and what it
    says about the receiver, unless its own expression failed before anything was sent."""
    state, change = DeliveryState.PENDING, NO_CHANGE
    if not result.expression_failed:
        change = HealthChange("failed", result.error or f"HTTP {result.status}", probe)
        if standing.failure_starts_backoff:
            failures = standing.consecutive_failures + 1
            lines.append(LogLine("warning", "endpoint_backing_off", {"endpoint": endpoint.name, "failures": failures}))
    if decision.verdict is Verdict.FAILED:
        state = DeliveryState.FAILED
        lines.append(LogLine("error", "delivery_failed", {**about, "error": result.error}))
        return state, change
    retry = {**about, "error": result.error, "next_attempt_at": decision.next_attempt_at}
    lines.append(LogLine("info", "delivery_retry_scheduled", retry))
    if result.retry_after_s is not None and result.status in (429, 503) and decision.next_attempt_at:
        # The receiver asked for a pause: nothing goes to it until then.
        change = replace(change, paused_until=decision.next_attempt_at)
        lines.append(
            LogLine("warning", "endpoint_paused", {"endpoint": endpoint.name, "until": decision.next_attempt_at})
        )
    return state, change
