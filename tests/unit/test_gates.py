"""The gates' accounting as a table: each row a short story of slots and tokens taken and given
back, attempts failing and succeeding, each step with what the gates must say after it."""

from __future__ import annotations

from typing import Any

import pytest

from tillhook.gates import EndpointGates
from tillhook.health import HealthChange
from tillhook.models import Endpoint
from tillhook.retry import RetryPolicy

T0 = 1_800_000_000.0
POLICY = RetryPolicy(schedule_s=(10.0, 60.0), give_up_after_s=3600.0)


def _endpoint(name: str, **fields: Any) -> Endpoint:
    return Endpoint(id=name, name=name, url=f"https://{name}.example/h", events=("*",), secrets=(), **fields)


ENDPOINTS = {
    "a": _endpoint("a"),  # the default limit: 4
    "b": _endpoint("b"),
    "c": _endpoint("c"),
    "wide": _endpoint("wide", max_in_flight=10),
    "rated": _endpoint("rated", rate_limit=2.0, max_in_flight=10),
    "ordered": _endpoint("ordered", ordered=True, max_in_flight=10),
}

# Each step: (seconds after T0, what, *arguments, what the gates answer or hold afterwards).
#   acquire NAME N [SHARING_WITH] -> taken     release NAME N     refund NAME N (tokens too)
#   free NAME -> n     quotas [NAMES] -> {given} [token at]     in_flight -> total
#   fail NAME PROBE     succeed NAME     pause NAME UNTIL     forget NAME
#   view NAME -> {field: value}     probing NAME -> bool
STORIES = [
    (
        "an endpoint's own limit",
        16,
        [
            (0, "acquire", "a", 10, 4),
            (0, "acquire", "a", 1, 0),
            (0, "free", "a", 0),
            (0, "release", "a", 1),
            (0, "free", "a", 1),
            (0, "acquire", "a", 3, 1),
            (0, "in_flight", 4),
        ],
    ),
    (
        "the global limit, over every endpoint",
        5,
        [
            (0, "acquire", "a", 4, 4),
            (0, "acquire", "b", 4, 1),
            (0, "free", "b", 3),  # its own slots: the global limit is the caller's to add
            (0, "acquire", "b", 1, 0),
            (0, "release", "a", 2),
            (0, "acquire", "b", 4, 2),
            (0, "in_flight", 5),
            (0, "view", "b", {"in_flight": 3}),
        ],
    ),
    (
        "tokens: a burst, then `rate` a second; given back only when nothing went",
        16,
        [
            (0, "acquire", "rated", 10, 2),
            (0, "acquire", "rated", 1, 0),
            (0, "refund", "rated", 2),  # kept for a claim that found nothing
            (0, "acquire", "rated", 10, 2),
            (0, "release", "rated", 2),  # attempts that went: their tokens are spent
            (0, "acquire", "rated", 1, 0),
            (0.5, "acquire", "rated", 10, 1),
            (1.5, "free", "rated", 2),
            (1.5, "refund", "rated", 1),  # never beyond the burst
            (1.5, "free", "rated", 2),
        ],
    ),
    (
        "a fair part of the global limit while others have work waiting",
        8,
        [
            (0, "acquire", "wide", 10, 1, 4),  # one other waits: half of 8
            (0, "acquire", "wide", 10, 1, 0),
            (0, "acquire", "wide", 10, 7, 0),  # seven others: an eighth, and it has four
            (0, "acquire", "a", 4, 7, 1),  # but never less than one
            (0, "acquire", "wide", 10, 0, 3),  # nobody else: whatever is left
            (0, "in_flight", 8),
        ],
    ),
    (
        "a claim's quotas: the fewest in flight first, ties in turn, under the global limit",
        6,
        [
            (0, "acquire", "a", 3, 3),
            (0, "quotas", ["a", "b", "c"], {"b": 2, "c": 1}),
            (0, "in_flight", 6),  # reserved until the claim says what it found
            (0, "refund", "b", 2),
            (0, "refund", "c", 1),
            (0, "in_flight", 3),
            (0, "quotas", ["a", "b", "c"], {"c": 2, "b": 1}),  # the next turn: c first of the two tied
        ],
    ),
    (
        "every free slot, when there are enough for all",
        16,
        [
            (0, "quotas", ["a", "wide", "ordered"], {"a": 4, "wide": 10, "ordered": 1}),
            (0, "quotas", ["a", "wide", "ordered"], {}),
            (0, "in_flight", 15),
        ],
    ),
    (
        "quotas say when the next token comes for an endpoint that has slots but no token",
        16,
        [
            (0, "acquire", "rated", 2, 2),
            (0.1, "quotas", ["rated", "a"], {"a": 4}, 0.5),
            (0.5, "quotas", ["rated"], {"rated": 1}, None),
        ],
    ),
    (
        "back-off: one probe at a time, spaced out; only a failed probe stretches the wait",
        16,
        [
            *[(t, "fail", "a", False) for t in range(5)],
            (4, "view", "a", {"state": "backing_off", "consecutive_failures": 5, "next_probe_at": T0 + 14}),
            (4, "free", "a", 0),
            (14, "free", "a", 1),
            (14, "probing", "a", True),
            (14, "acquire", "a", 4, 1),
            (14, "acquire", "a", 4, 0),
            (15, "release", "a", 1),
            (15, "fail", "a", True),  # the probe: the next waits the schedule's next step
            (16, "fail", "a", False),  # one already under way when the back-off began
            (16, "view", "a", {"next_probe_at": T0 + 75, "consecutive_failures": 7, "failed_last_hour": 7}),
            (74, "free", "a", 0),
            (75, "free", "a", 1),
            (76, "succeed", "a"),
            (76, "free", "a", 4),
            (76, "probing", "a", False),
            (76, "view", "a", {"state": "healthy", "next_probe_at": None, "succeeded_last_hour": 1}),
        ],
    ),
    (
        "a pause the receiver asked for holds every slot until its time",
        16,
        [
            (0, "pause", "a", 30),
            (0, "view", "a", {"state": "paused", "paused_until": T0 + 30, "backing_off": False}),
            (29.9, "free", "a", 0),
            (30, "free", "a", 4),
            (30, "view", "a", {"state": "healthy", "paused_until": None}),
        ],
    ),
    (
        "an ordered endpoint: one at a time, whatever its limit",
        16,
        [(0, "acquire", "ordered", 10, 1), (0, "acquire", "ordered", 10, 0)],
    ),
    (
        "forgetting its health (enabled again) keeps the slots in use counted",
        16,
        [
            (0, "acquire", "a", 2, 2),
            *[(t, "fail", "a", False) for t in range(5)],
            (5, "free", "a", 0),
            (5, "forget", "a"),
            (5, "free", "a", 2),
            (5, "view", "a", {"state": "healthy", "consecutive_failures": 0, "in_flight": 2}),
        ],
    ),
]


@pytest.mark.parametrize(("story", "max_in_flight", "steps"), STORIES, ids=[s[0] for s in STORIES])
def test_accounting(story: str, max_in_flight: int, steps: list[tuple[Any, ...]]) -> None:
    gates = EndpointGates(POLICY, max_in_flight=max_in_flight, endpoint_max_in_flight=4)
    for number, (at_s, what, *args) in enumerate(steps):
        now = T0 + at_s
        said = f"step {number}: {what} {args}"
        if what == "acquire":
            name, n, *sharing, expected = args
            assert gates.acquire(ENDPOINTS[name], n, now, sharing_with=sharing[0] if sharing else 0) == expected, said
        elif what in ("release", "refund"):
            gates.release(args[0], args[1], refund_tokens=what == "refund")
        elif what == "free":
            assert gates.free_for(ENDPOINTS[args[0]], now) == args[1], said
        elif what == "quotas":
            quotas = gates.quotas([ENDPOINTS[name] for name in args[0]], now)
            assert quotas.given == args[1], said
            if len(args) > 2:
                assert quotas.token_at == (None if args[2] is None else T0 + args[2]), said
        elif what == "in_flight":
            assert gates.in_flight == args[0], said
        elif what == "fail":
            gates.apply(args[0], HealthChange("failed", "HTTP 500", probe=args[1]), now)
        elif what == "succeed":
            gates.apply(args[0], HealthChange("succeeded"), now)
        elif what == "pause":
            gates.apply(args[0], HealthChange(paused_until=T0 + args[1]), now)
        elif what == "forget":
            gates.forget(args[0])
        elif what == "probing":
            assert gates.probing(args[0]) is args[1], said
        elif what == "view":
            view = gates.view(args[0], now)
            assert {field: getattr(view, field) for field in args[1]} == args[1], said
        else:
            raise AssertionError(f"no such step: {what}")
