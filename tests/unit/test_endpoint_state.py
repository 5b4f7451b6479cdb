"""The state an endpoint is shown in: what holds it back first wins."""

from __future__ import annotations

import pytest

from tillhook.api.endpoints import state_of
from tillhook.gates import EndpointGates, GateView
from tillhook.health import HealthChange
from tillhook.models import Endpoint
from tillhook.retry import RetryPolicy

NOW = 1_000_000.0
POLICY = RetryPolicy(schedule_s=(5.0, 300.0), give_up_after_s=3600.0)


def gate(*, failures: int = 0, paused_until: float | None = None) -> GateView:
    gates = EndpointGates(POLICY, max_in_flight=16, endpoint_max_in_flight=4)
    for i in range(failures):
        gates.apply("ep_1", HealthChange("failed", "HTTP 500"), NOW - 100 + i)
    if paused_until is not None:
        gates.apply("ep_1", HealthChange(paused_until=paused_until), NOW - 1)
    return gates.view("ep_1", NOW)


@pytest.mark.parametrize(
    ("enabled", "the_gate", "expected"),
    [
        (True, gate(), "healthy"),  # never attempted since start
        (True, gate(failures=4), "healthy"),  # one short of a back-off
        (True, gate(failures=5), "backing_off"),
        (True, gate(paused_until=NOW + 30), "paused"),
        (True, gate(failures=5, paused_until=NOW + 30), "paused"),  # paused beats backing_off
        (True, gate(failures=5, paused_until=NOW - 1), "backing_off"),  # the pause is over
        (True, gate(paused_until=NOW), "healthy"),  # a pause ends at its time
        (False, gate(failures=5, paused_until=NOW + 30), "disabled"),  # disabled beats everything
        (False, gate(), "disabled"),
    ],
)
def test_precedence(enabled: bool, the_gate: GateView, expected: str) -> None:
    endpoint = Endpoint(
        id="ep_1", name="loyalty", url="https://x.example/h", events=("*",), secrets=(), enabled=enabled
    )
    assert state_of(endpoint, the_gate) == expected
