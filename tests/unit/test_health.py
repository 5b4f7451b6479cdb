"""Endpoint health: a failing endpoint backs off to one probe at a time; a success frees it."""

from __future__ import annotations

import pytest

from tillhook.health import EndpointHealth
from tillhook.retry import BACKOFF_AFTER_FAILURES, RetryPolicy

T0 = 1_800_000_020.0  # a whole minute plus 20 s, so minute buckets are easy to reason about
POLICY = RetryPolicy(schedule_s=(5.0, 300.0, 1800.0, 7200.0), give_up_after_s=72 * 3600.0)
FAST = RetryPolicy(schedule_s=(1.0, 2.0, 4.0, 8.0), give_up_after_s=3600.0)
LIMIT = 4


def failing(times: int, policy: RetryPolicy = POLICY, at: float = T0) -> tuple[EndpointHealth, list[bool]]:
    health = EndpointHealth()
    started = [health.failed(at + i, f"HTTP 50{i % 10}", policy, probe=False) for i in range(times)]
    return health, started


def test_a_new_endpoint_is_healthy() -> None:
    health = EndpointHealth()
    assert not health.backing_off
    assert health.slots(LIMIT, T0) == LIMIT
    assert health.last_hour(T0) == (0, 0)


@pytest.mark.parametrize("failures", range(1, BACKOFF_AFTER_FAILURES))
def test_fewer_than_five_failures_change_nothing(failures: int) -> None:
    health, started = failing(failures)
    assert started == [False] * failures
    assert not health.backing_off
    assert health.slots(LIMIT, T0 + failures) == LIMIT


def test_the_fifth_failure_in_a_row_starts_the_back_off() -> None:
    health, started = failing(5)
    assert started == [False, False, False, False, True]  # reported once, when it begins
    assert health.backing_off
    fifth_at = T0 + 4
    assert health.probe_not_before == fifth_at + POLICY.probe_interval_s(0) == fifth_at + 5.0


@pytest.mark.parametrize("limit", [1, 2, 4, 64])
def test_backing_off_allows_one_probe_once_the_wait_is_over(limit: int) -> None:
    health, _ = failing(5)
    due = health.probe_not_before
    assert health.slots(limit, due - 5.0) == 0
    assert health.slots(limit, due - 0.001) == 0
    assert health.slots(limit, due) == 1  # one at a time, whatever the endpoint's limit
    assert health.slots(limit, due + 3600.0) == 1


def test_a_failed_probe_stretches_the_wait_along_the_schedule_up_to_five_minutes() -> None:
    health, _ = failing(5)
    waits = []
    now = health.probe_not_before
    for _ in range(6):
        assert health.slots(LIMIT, now) == 1
        assert health.failed(now, "timed out", POLICY, probe=True) is False  # not a new back-off
        waits.append(health.probe_not_before - now)
        assert health.slots(LIMIT, now) == 0  # the next probe must wait
        now = health.probe_not_before
    assert waits == [300.0, 300.0, 300.0, 300.0, 300.0, 300.0]
    assert health.failed_probes == 6


def test_probe_waits_follow_a_short_schedule_step_by_step() -> None:
    health, _ = failing(5, FAST)
    assert health.probe_not_before - (T0 + 4) == 1.0
    waits = []
    now = health.probe_not_before
    for _ in range(5):
        health.failed(now, "HTTP 500", FAST, probe=True)
        waits.append(health.probe_not_before - now)
        now = health.probe_not_before
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]  # past the schedule: its last step


def test_failures_that_are_not_probes_do_not_stretch_the_wait() -> None:
    # Attempts already in flight when the back-off began end later, and fail too; they say
    # nothing new about the endpoint and must not push the probe further out.
    health, _ = failing(5)
    due = health.probe_not_before
    for i in range(3):
        assert health.failed(T0 + 5 + i, "HTTP 502", POLICY, probe=False) is False
    assert health.probe_not_before == due
    assert health.failed_probes == 0
    assert health.consecutive_failures == 8
    assert health.slots(LIMIT, due) == 1


def test_a_late_non_probe_failure_after_a_probe_failure_keeps_the_probe_wait() -> None:
    health, _ = failing(5)
    probe_at = health.probe_not_before
    health.failed(probe_at, "HTTP 500", POLICY, probe=True)
    due = health.probe_not_before
    health.failed(probe_at + 1.0, "HTTP 500", POLICY, probe=False)
    assert health.probe_not_before == due and health.failed_probes == 1


def test_a_success_releases_the_back_off() -> None:
    health, _ = failing(7)
    health.failed(health.probe_not_before, "HTTP 500", POLICY, probe=True)
    assert health.succeeded(T0 + 400.0) is True  # the backlog should be released now
    assert not health.backing_off
    assert (health.consecutive_failures, health.failed_probes, health.probe_not_before) == (0, 0, 0.0)
    assert health.slots(LIMIT, T0 + 400.0) == LIMIT


def test_after_a_release_it_takes_five_new_failures_to_back_off_again() -> None:
    health, _ = failing(5)
    health.succeeded(T0 + 10.0)
    started = [health.failed(T0 + 11.0 + i, "HTTP 500", POLICY, probe=False) for i in range(5)]
    assert started == [False, False, False, False, True]
    # A fresh back-off starts from the first probe interval, not where the last one ended.
    assert health.probe_not_before == T0 + 15.0 + POLICY.probe_interval_s(0)


def test_a_success_resets_the_streak_before_back_off() -> None:
    health, _ = failing(4)
    assert health.succeeded(T0 + 4.0) is False  # nothing to release
    for i in range(4):
        assert health.failed(T0 + 5.0 + i, "HTTP 500", POLICY, probe=False) is False
    assert not health.backing_off  # 4 + 4 failures, but not 5 in a row


def test_a_success_while_healthy_reports_no_release() -> None:
    health = EndpointHealth()
    assert health.succeeded(T0) is False
    assert health.slots(LIMIT, T0) == LIMIT


def test_last_outcomes_are_remembered() -> None:
    health = EndpointHealth()
    health.failed(T0, "cannot connect to x:443: Connection refused", POLICY, probe=False)
    assert (health.last_failure_at, health.last_failure, health.last_success_at) == (
        T0,
        "cannot connect to x:443: Connection refused",
        None,
    )
    health.succeeded(T0 + 1.0)
    health.failed(T0 + 2.0, "HTTP 503", POLICY, probe=False)
    assert (health.last_success_at, health.last_failure_at, health.last_failure) == (T0 + 1.0, T0 + 2.0, "HTTP 503")


def test_last_hour_counts_successes_and_failures() -> None:
    health = EndpointHealth()
    for i in range(3):
        health.succeeded(T0 + i)
    for i in range(2):
        health.failed(T0 + 90.0 + i, "HTTP 500", POLICY, probe=False)
    health.succeeded(T0 + 1800.0)
    assert health.last_hour(T0 + 1800.0) == (4, 2)


@pytest.mark.parametrize(
    ("later_s", "counted"),
    [
        (0.0, (1, 1)),
        (59 * 60 - 20.0, (1, 1)),  # still the 60th minute bucket
        (59 * 60 + 39.0, (1, 1)),
        (59 * 60 + 40.0, (0, 0)),  # a minute boundary past the hour: forgotten
        (86400.0, (0, 0)),
    ],
)
def test_last_hour_forgets_older_minutes(later_s: float, counted: tuple[int, int]) -> None:
    health = EndpointHealth()
    health.succeeded(T0)
    health.failed(T0 + 1.0, "HTTP 500", POLICY, probe=False)
    assert health.last_hour(T0 + later_s) == counted


def test_last_hour_keeps_a_bounded_memory() -> None:
    health = EndpointHealth()
    for minute in range(600):  # ten hours of one attempt a minute
        health.succeeded(T0 + minute * 60.0)
    assert health.last_hour(T0 + 599 * 60.0) == (60, 0)
    assert len(health.recent) == 60
