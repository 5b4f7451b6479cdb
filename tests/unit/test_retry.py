"""The retry policy as a table: one row per kind of answer, with why."""

from __future__ import annotations

import pytest

from tillhook.models import AttemptResult
from tillhook.retry import RetryPolicy, Verdict, parse_retry_after

NOW = 1_800_000_000.0
POLICY = RetryPolicy(schedule_s=(5.0, 300.0, 1800.0), give_up_after_s=3 * 86400.0)
MIDDLE = 0.5  # rand() that gives no jitter


def result(status: int | None = None, error: str | None = None, retry_after_s: float | None = None) -> AttemptResult:
    return AttemptResult(started_at=NOW, duration_ms=12.0, status=status, error=error, retry_after_s=retry_after_s)


@pytest.mark.parametrize(
    ("attempt", "attempts_made", "verdict", "delay_s"),
    [
        (result(200), 1, Verdict.DELIVERED, None),  # any 2xx is a delivery
        (result(204), 1, Verdict.DELIVERED, None),
        (result(299), 3, Verdict.DELIVERED, None),
        (result(301), 1, Verdict.RETRY, 5.0),  # redirects are not followed: a failure
        (result(302), 2, Verdict.RETRY, 300.0),
        (result(400), 1, Verdict.RETRY, 5.0),  # a receiver's 4xx may be a bug it fixes: keep trying
        (result(404), 3, Verdict.RETRY, 1800.0),
        (result(410), 1, Verdict.GONE, 0.0),  # 410: stop delivering to it, keep the delivery pending
        (result(500), 1, Verdict.RETRY, 5.0),
        (result(500), 7, Verdict.RETRY, 1800.0),  # past the schedule its last delay repeats
        (result(429, retry_after_s=120.0), 1, Verdict.RETRY, 120.0),  # Retry-After wins over the schedule
        (result(503, retry_after_s=30.0), 2, Verdict.RETRY, 30.0),
        (result(429, retry_after_s=0.0), 1, Verdict.RETRY, 1.0),  # at least a second
        (result(503, retry_after_s=86400.0), 1, Verdict.RETRY, 3600.0),  # at most an hour
        (result(429), 2, Verdict.RETRY, 300.0),  # without Retry-After: the schedule
        (result(500, retry_after_s=30.0), 1, Verdict.RETRY, 5.0),  # Retry-After counts on 429/503 only
        (result(error="timed out after 15s"), 1, Verdict.RETRY, 5.0),  # no answer at all
        (result(error="cannot connect"), 2, Verdict.RETRY, 300.0),
    ],
)
def test_decide(attempt: AttemptResult, attempts_made: int, verdict: Verdict, delay_s: float | None) -> None:
    decision = POLICY.decide(attempt, attempts_made, first_attempt_at=NOW, now=NOW, rand=lambda: MIDDLE)
    assert decision.verdict is verdict
    if delay_s is None:
        assert decision.next_attempt_at is None
    else:
        assert decision.next_attempt_at == pytest.approx(NOW + delay_s)


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.8), (MIDDLE, 1.0), (1.0, 1.2)])
def test_jitter_stays_within_twenty_percent(rand: float, factor: float) -> None:
    assert POLICY.delay_s(2, lambda: rand) == pytest.approx(300.0 * factor)


def test_final_try_lands_on_the_give_up_deadline() -> None:
    first = NOW - POLICY.give_up_after_s + 60.0  # a minute before giving up
    decision = POLICY.decide(result(500), 9, first_attempt_at=first, now=NOW, rand=lambda: MIDDLE)
    assert decision.verdict is Verdict.RETRY
    assert decision.next_attempt_at == pytest.approx(first + POLICY.give_up_after_s)


@pytest.mark.parametrize("late_s", [0.0, 1.0, 86400.0])
def test_failing_at_or_after_give_up_is_final(late_s: float) -> None:
    first = NOW - POLICY.give_up_after_s - late_s
    decision = POLICY.decide(result(500), 12, first_attempt_at=first, now=NOW)
    assert decision.verdict is Verdict.FAILED
    assert decision.next_attempt_at is None


def test_success_after_give_up_still_counts() -> None:
    first = NOW - 10 * POLICY.give_up_after_s
    assert POLICY.decide(result(200), 30, first_attempt_at=first, now=NOW).verdict is Verdict.DELIVERED


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 3600.0),  # an HTTP date an hour after NOW below
        ("soon", None),
        ("-5", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    now = 1445408880.0  # 2015-10-21T06:28:00Z
    assert parse_retry_after(header, now) == seconds


@pytest.mark.parametrize(("failed_probes", "interval_s"), [(0, 5.0), (1, 300.0), (2, 300.0), (9, 300.0)])
def test_probe_interval_follows_the_schedule_up_to_five_minutes(failed_probes: int, interval_s: float) -> None:
    assert POLICY.probe_interval_s(failed_probes) == interval_s
