"""The state an endpoint is shown in: what holds it back first wins."""

from __future__ import annotations

import pytest

from tillhook.api.endpoints import state_of
from tillhook.health import EndpointHealth
from tillhook.models import Endpoint

NOW = 1_000_000.0


def health(*, failures: int = 0, paused_until: float = 0.0) -> EndpointHealth:
    return EndpointHealth(consecutive_failures=failures, paused_until=paused_until)


@pytest.mark.parametrize(
    ("enabled", "the_health", "expected"),
    [
        (True, None, "healthy"),  # never attempted since start
        (True, health(), "healthy"),
        (True, health(failures=4), "healthy"),  # one short of a back-off
        (True, health(failures=5), "backing_off"),
        (True, health(paused_until=NOW + 30), "paused"),
        (True, health(failures=5, paused_until=NOW + 30), "paused"),  # paused beats backing_off
        (True, health(failures=5, paused_until=NOW - 1), "backing_off"),  # the pause is over
        (True, health(paused_until=NOW), "healthy"),  # a pause ends at its time
        (False, health(failures=5, paused_until=NOW + 30), "disabled"),  # disabled beats everything
        (False, None, "disabled"),
    ],
)
def test_precedence(enabled: bool, the_health: EndpointHealth | None, expected: str) -> None:
    endpoint = Endpoint(
        id="ep_1", name="loyalty", url="https://x.example/h", events=("*",), secrets=(), enabled=enabled
    )
    assert state_of(endpoint, the_health, NOW) == expected
