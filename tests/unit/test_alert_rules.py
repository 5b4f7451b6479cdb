"""When alerts are said: the hourly give-up count, the back-off alarm, the backlog watch; and
durations in words."""

from __future__ import annotations

from itertools import pairwise

import pytest

from tests.support import FakeClock
from tillhook.alert_rules import BacklogWatch, BackoffAlarm, HourlyCount, span

H = 3600.0


def run_script(script: list[tuple[str, float, str]]) -> list[tuple[float, str, int, str]]:
    """Steps of (what, seconds since the start, key): "fail" is a give-up, "check" the periodic
    look at windows over. Returns each report as (when, key, count, detail of the last one)."""
    clock = FakeClock(start=1_000_000.0)
    start = clock.now()
    counts: HourlyCount[str] = HourlyCount()
    reports = []
    for n, (what, at_s, key) in enumerate(script):
        clock.advance(start + at_s - clock.now())
        if what == "fail":
            count = counts.occurred(key, clock.now(), f"give-up {n}")
            if count is not None:
                reports.append((at_s, key, count, f"give-up {n}"))
        else:
            reports += [(at_s, k, c, d) for k, c, d in counts.due(clock.now())]
    return reports


@pytest.mark.parametrize(
    ("script", "reports"),
    [
        # The first give-up is reported at once, with a count of 1.
        ([("fail", 0, "a")], [(0, "a", 1, "give-up 0")]),
        # Later ones within the hour are counted, and reported together when it is over.
        (
            [("fail", 0, "a"), ("fail", 10, "a"), ("fail", 20, "a"), ("check", 1800, ""), ("check", H, "")],
            [(0, "a", 1, "give-up 0"), (H, "a", 2, "give-up 2")],
        ),
        # A check before the hour is over reports nothing yet.
        ([("fail", 0, "a"), ("fail", 5, "a"), ("check", H - 1, "")], [(0, "a", 1, "give-up 0")]),
        # An hour that counted nothing more closes: the next give-up is reported at once.
        (
            [("fail", 0, "a"), ("check", H, ""), ("fail", H + 100, "a")],
            [(0, "a", 1, "give-up 0"), (H + 100, "a", 1, "give-up 2")],
        ),
        # No check ran since the hour was over: the counted ones go with the next give-up.
        (
            [("fail", 0, "a"), ("fail", 10, "a"), ("fail", 4000, "a")],
            [(0, "a", 1, "give-up 0"), (4000, "a", 2, "give-up 2")],
        ),
        # A report of a count opens the next hour: a give-up right after it waits for that one.
        (
            [
                ("fail", 0, "a"),
                ("fail", 10, "a"),
                ("check", H, ""),
                ("fail", H + 60, "a"),
                ("check", H + 1800, ""),
                ("check", 2 * H, ""),
            ],
            [(0, "a", 1, "give-up 0"), (H, "a", 1, "give-up 1"), (2 * H, "a", 1, "give-up 3")],
        ),
        # ... and when that next hour counts nothing, it closes.
        (
            [("fail", 0, "a"), ("fail", 10, "a"), ("check", H, ""), ("check", 2 * H, ""), ("fail", 2 * H + 1, "a")],
            [(0, "a", 1, "give-up 0"), (H, "a", 1, "give-up 1"), (2 * H + 1, "a", 1, "give-up 4")],
        ),
        # Each endpoint has its own hour.
        (
            [
                ("fail", 0, "a"),
                ("fail", 10, "b"),
                ("fail", 20, "a"),
                ("fail", 30, "b"),
                ("fail", 40, "b"),
                ("check", H + 5, ""),
                ("check", H + 30, ""),
            ],
            [
                (0, "a", 1, "give-up 0"),
                (10, "b", 1, "give-up 1"),
                (H + 5, "a", 1, "give-up 2"),
                (H + 30, "b", 2, "give-up 4"),
            ],
        ),
        # A steady stream, one every ten minutes for five hours: one report an hour.
        (
            [("fail", 600 * i, "a") for i in range(30)] + [("check", H * i, "") for i in range(1, 6)],
            None,  # checked by the property below
        ),
    ],
)
def test_at_most_one_give_up_report_per_endpoint_per_hour(script, reports) -> None:
    script = sorted(script, key=lambda step: step[1])
    got = run_script(script)
    if reports is not None:
        assert got == reports
    for key in {k for _, k, _, _ in got}:
        times = [t for t, k, _, _ in got if k == key]
        assert all(later - earlier >= H for earlier, later in pairwise(times)), times
    # Nothing is lost: every give-up is in a report's count or still counted for the next.
    fails = sum(1 for what, _, _ in script if what == "fail")
    assert sum(c for _, _, c, _ in got) <= fails


def test_a_steady_stream_of_give_ups_is_all_counted() -> None:
    script = [("fail", 600.0 * i + 1, "a") for i in range(30)] + [("check", H * i, "") for i in range(1, 7)]
    got = run_script(sorted(script, key=lambda step: step[1]))
    # The first at once; then each give-up just past an hour carries that hour's count, and
    # the last hour's count goes out at the first check after it is over.
    assert [(t, c) for t, _, c, _ in got] == [
        (1, 1),
        (H + 1, 6),
        (2 * H + 1, 6),
        (3 * H + 1, 6),
        (4 * H + 1, 6),
        (6 * H, 5),
    ]
    assert sum(c for _, _, c, _ in got) == 30


@pytest.mark.parametrize(
    ("steps", "said"),
    [
        # (what, seconds since the start): "start" / "end" of a back-off, "check" the periodic
        # look (the endpoint still backing off when the last start was not followed by an end).
        # Each back-off is said when it starts, and its end.
        ([("start", 0), ("end", 60)], ["failing 0", "recovered 60"]),
        (
            [("start", 0), ("end", 60), ("start", H), ("end", H + 5)],
            ["failing 0", "recovered 60", f"failing {H:g}", f"recovered {H + 5:g}"],
        ),
        # Flapping within the hour: the first start and end only.
        (
            [("start", 0), ("end", 10), ("start", 20), ("end", 30), ("start", 40), ("end", 50), ("check", H + 60)],
            ["failing 0", "recovered 10"],
        ),
        # A start unsaid that still lasts once the hour is over is said at the next check, and its end then.
        (
            [("start", 0), ("end", 10), ("start", 20), ("check", 1800), ("check", H), ("end", H + 100)],
            ["failing 0", "recovered 10", f"failing {H:g}", f"recovered {H + 100:g}"],
        ),
        # Still failing, once said: nothing more, however long it lasts.
        ([("start", 0), ("check", H), ("check", 5 * H)], ["failing 0"]),
        # An end without a start said (a health reset by enabling it) says nothing.
        ([("end", 0), ("start", 10)], ["failing 10"]),
        # A start while told failing (its end went unseen): a new start, under the same hour.
        (
            [("start", 0), ("start", 100), ("check", H + 1), ("end", H + 2)],
            ["failing 0", f"failing {H + 1:g}", f"recovered {H + 2:g}"],
        ),
    ],
)
def test_back_offs_are_said_at_most_once_an_hour_and_recoveries_only_after_them(steps, said) -> None:
    alarm = BackoffAlarm()
    start = 1_000_000.0
    backing_off = False
    got = []
    for what, at in steps:
        now = start + at
        if what == "start":
            backing_off = True
            if alarm.started("e", now):
                got.append(f"failing {at:g}")
        elif what == "end":
            backing_off = False
            if alarm.ended("e"):
                got.append(f"recovered {at:g}")
        else:
            off = backing_off
            got += [f"failing {at:g}" for _ in alarm.due(now, lambda key, off=off: off)]
    assert got == said


def test_an_unsaid_back_off_that_ended_unseen_is_forgotten() -> None:
    alarm = BackoffAlarm()
    assert alarm.started("e", 0.0) and alarm.ended("e")
    assert not alarm.started("e", 10.0)
    assert alarm.due(H + 10, lambda key: False) == []  # it is not backing off any more
    assert alarm.due(H + 20, lambda key: True) == []  # and no longer waiting to be said


@pytest.mark.parametrize(
    ("steps", "alerts"),
    [
        # (oldest pending age in s or None, seconds since the start) -> alert now?
        ([(60, 0), (899, 30), (900, 60)], [False, False, False]),  # at the limit is not over it
        ([(901, 0)], [True]),  # over: at once
        ([(901, 0), (931, 30), (5000, 3599)], [True, False, False]),  # still over: not again within the hour
        ([(901, 0), (931, 30), (5000, H)], [True, False, True]),  # ... again once the hour is over
        ([(901, 0), (10, 30), (901, 60)], [True, False, True]),  # back under re-arms it
        ([(901, 0), (None, 30), (901, 60)], [True, False, True]),  # nothing pending re-arms it too
        ([(None, 0), (None, 30)], [False, False]),
    ],
)
def test_backlog_alerts_once_per_crossing_and_at_most_hourly_while_over(steps, alerts) -> None:
    watch = BacklogWatch(limit_s=900.0)
    assert [watch.over(age, 1_000_000.0 + at) for age, at in steps] == alerts


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "0s"),
        (45.4, "45s"),
        (119, "119s"),
        (120, "2 min"),
        (899, "14 min"),
        (7199, "119 min"),
        (7200, "2 h"),
        (11100, "3 h 5 min"),
        (47 * H, "47 h"),
        (48 * H, "2 d"),
        (52 * H, "2 d 4 h"),
    ],
)
def test_durations_in_words(seconds: float, said: str) -> None:
    assert span(seconds) == said
