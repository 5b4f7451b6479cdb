"""What one attempt's result means: the delivery's next state and its endpoint's health.
Logs what an operator needs to see; the caller applies the rest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import structlog

from tillhook.health import EndpointHealth
from tillhook.models import (
    AttemptRecord,
    AttemptResult,
    ClaimedDelivery,
    DeliveryState,
    Endpoint,
)
from tillhook.retry import RetryPolicy, Verdict

log = structlog.get_logger("tillhook.dispatcher")


def judge(
    endpoint: Endpoint,
    delivery: ClaimedDelivery,
    result: AttemptResult,
    probe: bool,
    policy: RetryPolicy,
    health: EndpointHealth,
    now: float,
    rand: Callable[[], float],
) -> AttemptRecord:
    """The record to write for this attempt; `health` is updated. A 410 comes back with
    `disable_endpoint` set, a retry with its `next_attempt_at`."""
    attempt_no = delivery.attempts + 1
    first_at = delivery.first_attempt_at or result.started_at
    if result.filtered_out:
        # Its filter failed when the event came in and now says no: nothing was sent, and
        # nothing about the receiver was learnt.
        log.info("delivery_filtered_out", event_id=delivery.event_id, endpoint=endpoint.name, delivery_id=delivery.id)
        return AttemptRecord(
            delivery_id=delivery.id,
            endpoint_id=endpoint.id,
            result=replace(result, error="not sent: the endpoint's filter leaves this event out"),
            state=DeliveryState.CANCELLED,
            next_attempt_at=None,
            first_attempt_at=first_at,
            outcome="filtered_out",
        )
    decision = policy.decide(result, attempt_no, first_at, now, rand)
    about = {
        "event_id": delivery.event_id,
        "endpoint": endpoint.name,
        "delivery_id": delivery.id,
        "attempt": attempt_no,
        "status": result.status,
        "duration_ms": round(result.duration_ms, 1),
    }
    state, disable, release = DeliveryState.PENDING, None, None
    if decision.verdict is Verdict.DELIVERED:
        state = DeliveryState.DELIVERED
        # Every attempt is in the delivery log; a line per success would cost a tenth of
        # the CPU at hundreds a second and drown the lines that need a reader.
        log.debug("delivery_succeeded", **about)
        if health.succeeded(now):
            release = now
            log.info("endpoint_recovered", endpoint=endpoint.name)
    elif decision.verdict is Verdict.GONE:
        disable = f"the receiver answered 410 Gone at attempt {attempt_no}"
        log.warning("endpoint_gone", **about, reason=disable)
    else:
        reason = result.error or f"HTTP {result.status}"
        if not result.expression_failed and health.failed(now, reason, policy, probe=probe):
            log.warning("endpoint_backing_off", endpoint=endpoint.name, failures=health.consecutive_failures)
        if decision.verdict is Verdict.FAILED:
            state = DeliveryState.FAILED
            log.error("delivery_failed", **about, error=result.error)
        else:
            log.info("delivery_retry_scheduled", **about, error=result.error, next_attempt_at=decision.next_attempt_at)
            if result.retry_after_s is not None and result.status in (429, 503) and decision.next_attempt_at:
                # The receiver asked for a pause: nothing goes to it until then.
                health.paused_until = max(health.paused_until, decision.next_attempt_at)
                log.warning("endpoint_paused", endpoint=endpoint.name, until=decision.next_attempt_at)
    return AttemptRecord(
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
