"""outcomes.judge as a table: an attempt's result and its endpoint's standing before it give
the delivery's next state, the health change the gates apply, and the lines logged."""

from __future__ import annotations

from typing import Any

import pytest

from tillhook.health import HealthChange, Standing
from tillhook.models import AttemptResult, ClaimedDelivery, DeliveryState, Endpoint
from tillhook.outcomes import judge
from tillhook.retry import RetryPolicy

NOW = 1_800_000_000.0
POLICY = RetryPolicy(schedule_s=(10.0, 60.0), give_up_after_s=3600.0)
ENDPOINT = Endpoint(id="ep_1", name="loyalty", url="https://x.example/h", events=("*",), secrets=())
HEALTHY, FOUR_FAILED, BACKING_OFF = Standing(), Standing(False, 4), Standing(True, 7)


def result(status: int | None, **fields: Any) -> AttemptResult:
    return AttemptResult(started_at=NOW - 1, duration_ms=12.3, status=status, **fields)


# (what, result, standing, probe, first attempt at: state, health change, events logged)
ROWS = [
    ("delivered", result(200), HEALTHY, False, None, "delivered", HealthChange("succeeded"), ["delivery_succeeded"]),
    (
        "delivered, ending a back-off: the backlog is released",
        result(204),
        BACKING_OFF,
        True,
        None,
        "delivered",
        HealthChange("succeeded"),
        ["delivery_succeeded", "endpoint_recovered"],
    ),
    (
        "a 500 is retried and counts towards a back-off",
        result(500),
        HEALTHY,
        False,
        None,
        "pending",
        HealthChange("failed", "HTTP 500"),
        ["delivery_retry_scheduled"],
    ),
    (
        "the fifth failure in a row starts the back-off",
        result(None, error="timed out after 2 s"),
        FOUR_FAILED,
        False,
        None,
        "pending",
        HealthChange("failed", "timed out after 2 s"),
        ["endpoint_backing_off", "delivery_retry_scheduled"],
    ),
    (
        "a failed probe: said to stretch the wait, no new back-off",
        result(502),
        BACKING_OFF,
        True,
        None,
        "pending",
        HealthChange("failed", "HTTP 502", probe=True),
        ["delivery_retry_scheduled"],
    ),
    (
        "a 429 with Retry-After pauses the endpoint",
        result(429, retry_after_s=30.0),
        HEALTHY,
        False,
        None,
        "pending",
        HealthChange("failed", "HTTP 429", paused_until=NOW + 30),
        ["delivery_retry_scheduled", "endpoint_paused"],
    ),
    (
        "past give_up_after: failed",
        result(500),
        HEALTHY,
        False,
        NOW - 3600,
        "failed",
        HealthChange("failed", "HTTP 500"),
        ["delivery_failed"],
    ),
    (
        "410 disables the endpoint and says nothing of its health",
        result(410),
        HEALTHY,
        False,
        None,
        "pending",
        HealthChange(),
        ["endpoint_gone"],
    ),
    (
        "its own expression failed: retried, the receiver's health untouched",
        result(None, error="transform failed", expression_failed=True),
        FOUR_FAILED,
        False,
        None,
        "pending",
        HealthChange(),
        ["delivery_retry_scheduled"],
    ),
    (
        "left out by its filter, checked again: cancelled, nothing learnt",
        result(None, filtered_out=True),
        BACKING_OFF,
        True,
        None,
        "cancelled",
        HealthChange(),
        ["delivery_filtered_out"],
    ),
]


@pytest.mark.parametrize(
    ("what", "the_result", "standing", "probe", "first_at", "state", "change", "logged"), ROWS, ids=[r[0] for r in ROWS]
)
def test_judge(
    what: str,
    the_result: AttemptResult,
    standing: Standing,
    probe: bool,
    first_at: float | None,
    state: str,
    change: HealthChange,
    logged: list[str],
) -> None:
    delivery = ClaimedDelivery(7, "msg_1", ENDPOINT.id, 2 if first_at else 0, first_at, b"{}")
    judged = judge(ENDPOINT, delivery, the_result, probe, POLICY, standing, NOW, lambda: 0.5)
    assert judged.record.state is DeliveryState(state)
    assert judged.change == change
    assert [line.event for line in judged.lines] == logged
    assert (judged.record.release_backlog_at is not None) == ("endpoint_recovered" in logged)
    assert (judged.record.disable_endpoint is not None) == ("endpoint_gone" in logged)
    if "endpoint_backing_off" in logged:
        (line,) = [line for line in judged.lines if line.event == "endpoint_backing_off"]
        assert line.fields == {"endpoint": "loyalty", "failures": 5}
