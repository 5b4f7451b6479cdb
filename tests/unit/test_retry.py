"""The retry policy as a table: one row per kind of answer, with why."""

from __future__ import annotations

import random

import pytest

from tillhook.models import AttemptResult
from tillhook.retry import (
    BACKOFF_AFTER_FAILURES,
    MAX_PROBE_INTERVAL_S,
    RETRY_AFTER_MAX_S,
    RETRY_AFTER_MIN_S,
    Decision,
    RetryPolicy,
    Verdict,
    parse_retry_after,
)

NOW = 1_800_000_000.0
DAY_S = 86400.0
POLICY = RetryPolicy(schedule_s=(5.0, 300.0, 1800.0), give_up_after_s=3 * DAY_S)
# The contract's default schedule, for the rows that depend on its real shape.
DEFAULT = RetryPolicy(schedule_s=(5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0), give_up_after_s=72 * 3600.0)
MIDDLE = 0.5  # rand() that gives no jitter


def no_jitter() -> float:
    return MIDDLE


def result(status: int | None = None, error: str | None = None, retry_after_s: float | None = None) -> AttemptResult:
    return AttemptResult(started_at=NOW, duration_ms=12.0, status=status, error=error, retry_after_s=retry_after_s)


def test_constants_match_the_contract() -> None:
    assert (RETRY_AFTER_MIN_S, RETRY_AFTER_MAX_S) == (1.0, 3600.0)
    assert BACKOFF_AFTER_FAILURES == 5
    assert MAX_PROBE_INTERVAL_S == 300.0
    # Verdicts end up in the attempt log and the API as these strings.
    assert [v.value for v in Verdict] == ["delivered", "retry", "gone", "failed"]


@pytest.mark.parametrize(
    ("attempt", "attempts_made", "verdict", "delay_s"),
    [
        (result(200), 1, Verdict.DELIVERED, None),  # any 2xx is a delivery
        (result(201), 1, Verdict.DELIVERED, None),
        (result(204), 1, Verdict.DELIVERED, None),
        (result(299), 3, Verdict.DELIVERED, None),
        (result(100), 1, Verdict.RETRY, 5.0),  # not 2xx: not delivered
        (result(199), 1, Verdict.RETRY, 5.0),
        (result(300), 1, Verdict.RETRY, 5.0),  # redirects are not followed: a failure
        (result(301), 1, Verdict.RETRY, 5.0),
        (result(302), 2, Verdict.RETRY, 300.0),
        (result(304), 1, Verdict.RETRY, 5.0),
        (result(307), 1, Verdict.RETRY, 5.0),
        (result(308), 3, Verdict.RETRY, 1800.0),
        (result(400), 1, Verdict.RETRY, 5.0),  # a receiver's 4xx may be a bug it fixes: keep trying
        (result(401), 1, Verdict.RETRY, 5.0),
        (result(403), 2, Verdict.RETRY, 300.0),
        (result(404), 3, Verdict.RETRY, 1800.0),
        (result(408), 1, Verdict.RETRY, 5.0),
        (result(409), 1, Verdict.RETRY, 5.0),
        (result(413), 1, Verdict.RETRY, 5.0),
        (result(422), 1, Verdict.RETRY, 5.0),
        (result(451), 1, Verdict.RETRY, 5.0),
        (result(410), 1, Verdict.GONE, 0.0),  # 410: stop delivering to it, keep the delivery pending
        (result(410), 9, Verdict.GONE, 0.0),
        (result(500), 1, Verdict.RETRY, 5.0),
        (result(502), 2, Verdict.RETRY, 300.0),
        (result(504), 1, Verdict.RETRY, 5.0),
        (result(500), 4, Verdict.RETRY, 1800.0),  # past the schedule its last delay repeats
        (result(500), 40, Verdict.RETRY, 1800.0),
        (result(429, retry_after_s=120.0), 1, Verdict.RETRY, 120.0),  # Retry-After wins over the schedule
        (result(503, retry_after_s=30.0), 2, Verdict.RETRY, 30.0),
        (result(429, retry_after_s=2.5), 3, Verdict.RETRY, 2.5),  # even when shorter than the schedule
        (result(429, retry_after_s=0.0), 1, Verdict.RETRY, 1.0),  # at least a second
        (result(503, retry_after_s=0.2), 1, Verdict.RETRY, 1.0),
        (result(429, retry_after_s=1.0), 1, Verdict.RETRY, 1.0),
        (result(503, retry_after_s=3600.0), 1, Verdict.RETRY, 3600.0),
        (result(503, retry_after_s=3601.0), 1, Verdict.RETRY, 3600.0),  # at most an hour
        (result(429, retry_after_s=86400.0), 1, Verdict.RETRY, 3600.0),
        (result(429, retry_after_s=float("inf")), 1, Verdict.RETRY, 3600.0),  # a 400-digit header parses to inf
        (result(429), 2, Verdict.RETRY, 300.0),  # without Retry-After: the schedule
        (result(503), 1, Verdict.RETRY, 5.0),
        (result(500, retry_after_s=30.0), 1, Verdict.RETRY, 5.0),  # Retry-After counts on 429/503 only
        (result(302, retry_after_s=30.0), 1, Verdict.RETRY, 5.0),
        (result(error="timed out after 15s"), 1, Verdict.RETRY, 5.0),  # no answer at all
        (result(error="cannot connect to x:443: Connection refused"), 2, Verdict.RETRY, 300.0),
        (result(error="cannot connect to x:443: Name or service not known"), 3, Verdict.RETRY, 1800.0),
        (result(error="the receiver closed the connection without answering"), 1, Verdict.RETRY, 5.0),
    ],
)
def test_decide(attempt: AttemptResult, attempts_made: int, verdict: Verdict, delay_s: float | None) -> None:
    decision = POLICY.decide(attempt, attempts_made, first_attempt_at=NOW, now=NOW, rand=no_jitter)
    assert decision.verdict is verdict
    if delay_s is None:
        assert decision.next_attempt_at is None
    else:
        assert decision.next_attempt_at == pytest.approx(NOW + delay_s)


@pytest.mark.parametrize(
    ("attempts_made", "delay_s"),
    [
        (1, 5.0),
        (2, 300.0),
        (3, 1800.0),
        (4, 7200.0),
        (5, 18000.0),
        (6, 36000.0),
        (7, 36000.0),
        (8, 36000.0),
        (30, 36000.0),
    ],
)
def test_default_schedule_step_by_step(attempts_made: int, delay_s: float) -> None:
    assert DEFAULT.delay_s(attempts_made, no_jitter) == delay_s
    decision = DEFAULT.decide(result(500), attempts_made, first_attempt_at=NOW, now=NOW, rand=no_jitter)
    assert decision == Decision(Verdict.RETRY, NOW + delay_s)


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.8), (0.25, 0.9), (MIDDLE, 1.0), (0.75, 1.1), (1.0, 1.2)])
def test_jitter_is_linear_within_twenty_percent(rand: float, factor: float) -> None:
    assert POLICY.delay_s(2, lambda: rand) == pytest.approx(300.0 * factor)
    decision = POLICY.decide(result(500), 2, first_attempt_at=NOW, now=NOW, rand=lambda: rand)
    assert decision.next_attempt_at == pytest.approx(NOW + 300.0 * factor)


@pytest.mark.parametrize("attempts_made", range(1, 10))
def test_jitter_bounds_over_many_draws(attempts_made: int) -> None:
    rand = random.Random(attempts_made).random
    base = DEFAULT.delay_s(attempts_made, no_jitter)
    delays = [DEFAULT.delay_s(attempts_made, rand) for _ in range(2000)]
    assert all(0.8 * base <= d <= 1.2 * base for d in delays)
    # Jitter must actually spread retries out, not just stay in bounds: both halves are used
    # and the draws do not all collapse onto a few values.
    assert min(delays) < 0.85 * base and max(delays) > 1.15 * base
    assert len(set(delays)) > 1900


def test_default_rand_is_jittered_and_bounded() -> None:
    delays = {DEFAULT.delay_s(2) for _ in range(500)}
    assert all(240.0 <= d <= 360.0 for d in delays)
    assert len(delays) > 1


def test_jitter_zero_gives_the_schedule_exactly() -> None:
    steady = RetryPolicy(schedule_s=(5.0, 60.0), give_up_after_s=DAY_S, jitter=0.0)
    assert {steady.delay_s(2) for _ in range(50)} == {60.0}


def test_final_try_lands_on_the_give_up_deadline() -> None:
    first = NOW - POLICY.give_up_after_s + 60.0  # a minute before giving up
    decision = POLICY.decide(result(500), 9, first_attempt_at=first, now=NOW, rand=no_jitter)
    assert decision == Decision(Verdict.RETRY, first + POLICY.give_up_after_s)


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999999])
def test_no_retry_is_scheduled_past_the_deadline_whatever_the_jitter(rand: float) -> None:
    first = NOW - POLICY.give_up_after_s + 1500.0  # less than the 1800 s step left, more than 0.8 of it
    decision = POLICY.decide(result(error="timeout"), 3, first_attempt_at=first, now=NOW, rand=lambda: rand)
    assert decision.verdict is Verdict.RETRY
    assert decision.next_attempt_at is not None
    assert decision.next_attempt_at <= first + POLICY.give_up_after_s
    assert decision.next_attempt_at == pytest.approx(
        min(NOW + 1800.0 * (0.8 + 0.4 * rand), first + POLICY.give_up_after_s)
    )


def test_a_retry_well_before_the_deadline_is_not_pulled_forward() -> None:
    first = NOW - 3600.0
    decision = POLICY.decide(result(500), 1, first_attempt_at=first, now=NOW, rand=no_jitter)
    assert decision.next_attempt_at == NOW + 5.0


@pytest.mark.parametrize("late_s", [0.0, 0.001, 1.0, DAY_S])
@pytest.mark.parametrize(
    "attempt",
    [
        result(500),
        result(302),
        result(404),
        result(error="timeout"),
        result(429, retry_after_s=10.0),
        result(503, retry_after_s=10.0),
    ],
)
def test_failing_at_or_after_give_up_is_final(late_s: float, attempt: AttemptResult) -> None:
    first = NOW - POLICY.give_up_after_s - late_s
    decision = POLICY.decide(attempt, 12, first_attempt_at=first, now=NOW)
    assert decision == Decision(Verdict.FAILED, None)


def test_a_millisecond_before_give_up_is_still_a_retry() -> None:
    first = NOW - POLICY.give_up_after_s + 0.001
    decision = POLICY.decide(result(500), 12, first_attempt_at=first, now=NOW, rand=no_jitter)
    assert decision.verdict is Verdict.RETRY
    assert decision.next_attempt_at == pytest.approx(first + POLICY.give_up_after_s)


def test_success_after_give_up_still_counts() -> None:
    first = NOW - 10 * POLICY.give_up_after_s
    assert POLICY.decide(result(200), 30, first_attempt_at=first, now=NOW).verdict is Verdict.DELIVERED


def test_gone_after_give_up_still_disables_rather_than_fails() -> None:
    # The contract keeps a 410'd endpoint's deliveries pending: nothing is dropped by it.
    first = NOW - 10 * POLICY.give_up_after_s
    assert POLICY.decide(result(410), 30, first_attempt_at=first, now=NOW) == Decision(Verdict.GONE, NOW)


def test_retry_after_is_honoured_even_past_the_deadline() -> None:
    # "No sooner than Retry-After" outranks landing on the deadline; the attempt then made
    # past the deadline is the one that fails.
    first = NOW - POLICY.give_up_after_s + 10.0
    decision = POLICY.decide(result(503, retry_after_s=600.0), 5, first_attempt_at=first, now=NOW)
    assert decision == Decision(Verdict.RETRY, NOW + 600.0)
    again = POLICY.decide(result(503, retry_after_s=600.0), 6, first_attempt_at=first, now=NOW + 600.0)
    assert again.verdict is Verdict.FAILED


NOW_2015 = 1445408880.0  # 2015-10-21T06:28:00Z


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),  # decide() then raises it to the one-second floor
        (" 7 ", 7.0),
        ("86400", 86400.0),  # decide() caps it; parsing keeps what the receiver said
        ("Wed, 21 Oct 2015 07:28:00 GMT", 3600.0),  # IMF-fixdate, an hour after NOW_2015
        ("Wed, 21 Oct 2015 06:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 +0000", 3600.0),
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 3600.0),  # obsolete RFC 850 form
        ("Wed, 21 Oct 2015 05:28:00 GMT", 0.0),  # a date in the past: no wait, never negative
        ("Wed, 21 Oct 2015 07:28:00 -0000", 3600.0),  # "zone unknown": read as GMT, as every HTTP date is
        ("soon", None),
        ("-5", None),
        ("1.5", None),  # delta-seconds is an integer
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW_2015) == seconds


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        ("0", 1.0),
        ("7200", 3600.0),
        ("Wed, 21 Oct 2015 06:33:00 GMT", 300.0),
        ("Wed, 21 Oct 2015 09:00:00 GMT", 3600.0),
        ("Tue, 20 Oct 2015 06:28:00 GMT", 1.0),
    ],
)
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_header_to_next_attempt(status: int, header: str, seconds: float) -> None:
    attempt = AttemptResult(
        started_at=NOW_2015, duration_ms=3.0, status=status, retry_after_s=parse_retry_after(header, NOW_2015)
    )
    decision = POLICY.decide(attempt, 1, first_attempt_at=NOW_2015, now=NOW_2015, rand=no_jitter)
    assert decision == Decision(Verdict.RETRY, NOW_2015 + seconds)


@pytest.mark.parametrize("header", ["²", "①", "1²"])
def test_parse_retry_after_ignores_non_ascii_digits(header: str) -> None:
    assert parse_retry_after(header, NOW_2015) is None


@pytest.mark.parametrize("header", ["Wed, 21 Oct 2015 99999999999:00:00 GMT", "21 Oct 9999999999 07:28:00 GMT"])
def test_parse_retry_after_ignores_overflowing_dates(header: str) -> None:
    assert parse_retry_after(header, NOW_2015) is None


def test_parse_retry_after_accepts_the_asctime_form() -> None:
    assert parse_retry_after("Wed Oct 21 07:28:00 2015", NOW_2015) == 3600.0


@pytest.mark.parametrize(
    ("policy", "failed_probes", "interval_s"),
    [
        (DEFAULT, 0, 5.0),  # the first probe waits the first step
        (DEFAULT, 1, 300.0),
        (DEFAULT, 2, 300.0),  # 30 min step, but a probe is never more than 5 min away
        (DEFAULT, 6, 300.0),
        (DEFAULT, 50, 300.0),  # past the schedule: still its last step, still capped
        (RetryPolicy((1.0, 2.0, 4.0), DAY_S), 0, 1.0),
        (RetryPolicy((1.0, 2.0, 4.0), DAY_S), 1, 2.0),
        (RetryPolicy((1.0, 2.0, 4.0), DAY_S), 2, 4.0),
        (RetryPolicy((1.0, 2.0, 4.0), DAY_S), 9, 4.0),
        (RetryPolicy((600.0,), DAY_S), 0, 300.0),
        (RetryPolicy((300.0, 301.0), DAY_S), 1, 300.0),
    ],
)
def test_probe_interval_follows_the_schedule_up_to_five_minutes(
    policy: RetryPolicy, failed_probes: int, interval_s: float
) -> None:
    assert policy.probe_interval_s(failed_probes) == interval_s


def test_probe_interval_has_no_jitter() -> None:
    assert {DEFAULT.probe_interval_s(1) for _ in range(50)} == {300.0}
