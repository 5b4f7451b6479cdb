"""Attempts per hour, as the `attempt_hours` table keeps them: counts by outcome and a
histogram of durations, from which each hour's p50 and p95 are estimated."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tillhook.store.port import HourOfAttempts
from tillhook.store.schema import DURATION_EDGES_MS


def hours_of_attempts(rows: Iterable[Sequence[int]], first_hour: int, hours: int) -> list[HourOfAttempts]:
    """`rows` of (hour, bucket, delivered, failed) -> one entry per hour from `first_hour`,
    hours without attempts included (as zeros)."""
    delivered = [0] * hours
    failed = [0] * hours
    histograms = [[0] * (len(DURATION_EDGES_MS) + 1) for _ in range(hours)]
    for hour, bucket, ok, bad in rows:
        i = hour - first_hour
        if 0 <= i < hours and 0 <= bucket < len(histograms[i]):
            delivered[i] += ok
            failed[i] += bad
            histograms[i][bucket] += ok
    return [
        HourOfAttempts(
            start=float((first_hour + i) * 3600),
            delivered=delivered[i],
            failed=failed[i],
            p50_ms=quantile(histograms[i], 0.50),
            p95_ms=quantile(histograms[i], 0.95),
        )
        for i in range(hours)
    ]


def quantile(histogram: Sequence[int], q: float) -> float | None:
    """The q-quantile of a duration histogram (counts per step of DURATION_EDGES_MS, the last
    step open-ended), interpolated linearly inside its step; the last step gives its lower edge."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bucket, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = DURATION_EDGES_MS[bucket - 1] if bucket > 0 else 0.0
            if bucket >= len(DURATION_EDGES_MS):
                return float(low)
            high = DURATION_EDGES_MS[bucket]
            return float(low + (high - low) * (rank - seen) / count)
        seen += count
    return float(DURATION_EDGES_MS[-1])
