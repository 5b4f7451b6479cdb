"""Each hour's p50 and p95 from the attempt-duration histogram the database keeps."""

from __future__ import annotations

from tillhook.store.hourly import hours_of_attempts, quantile
from tillhook.store.schema import DURATION_EDGES_MS


def test_quantiles_interpolate_inside_a_step() -> None:
    histogram = [0] * (len(DURATION_EDGES_MS) + 1)
    step = DURATION_EDGES_MS.index(10)  # durations in [7, 10) ms
    histogram[step] = 100
    assert quantile(histogram, 0.5) == 8.5 and quantile(histogram, 0.95) == 9.85
    histogram[-1] = 1_000  # longer than the last edge: only its lower edge is known
    assert quantile(histogram, 0.95) == DURATION_EDGES_MS[-1]
    assert quantile([0] * len(histogram), 0.5) is None


def test_hours_are_filled_in_order_with_empty_hours_as_zeros() -> None:
    rows = [(101, 3, 5, 1), (101, 4, 5, 0), (103, 0, 0, 2), (99, 0, 7, 7)]  # hour 99 is before the window
    got = hours_of_attempts(rows, first_hour=100, hours=4)
    assert [h.start for h in got] == [360000.0, 363600.0, 367200.0, 370800.0]
    assert [(h.delivered, h.failed) for h in got] == [(0, 0), (10, 1), (0, 0), (0, 2)]
    # Steps 3 and 4 hold [2, 3) and [3, 5) ms, 5 attempts each: the median is where they meet.
    assert (
        got[1].p50_ms == 3.0 and got[1].p95_ms == 4.8 and got[0].p50_ms is None and got[3].p95_ms is None
    )  # failures have no latency
