"""The overview's two charts as shapes (bars, lines, ticks) in a fixed drawing box, drawn as
inline SVG by templates/chart.html, where autoescape makes every label text. Pure: given the
hours of attempts, the same chart every time."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tillhook.store.port import HourOfAttempts

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 30  # margins for the axis labels
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Line:
    points: str  # "x,y x,y ..." for <polyline>
    css: str


@dataclass(frozen=True, slots=True)
class Dot:
    x: float
    y: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # y for the value axis, x for the time axis
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    name: str  # data-chart="name"
    title: str  # the <title>: what the chart shows
    summary: str  # the same in one sentence of figures, shown beside it
    axis: str  # what the value axis counts
    legend: tuple[tuple[str, str], ...]  # (css class, words)
    bars: tuple[Bar, ...] = ()
    lines: tuple[Line, ...] = ()
    dots: tuple[Dot, ...] = ()
    y_ticks: tuple[Tick, ...] = ()
    x_ticks: tuple[Tick, ...] = ()
    box: tuple[int, int, int, int, int, int] = field(default=(WIDTH, HEIGHT, LEFT, TOP, PLOT_W, PLOT_H))


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above `value` (1 for nothing), for the axis top."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power


def number(n: float) -> str:
    """1234 -> "1,234"; 2.5 -> "2.5"; 12.3456 -> "12"."""
    if float(n).is_integer():
        return f"{int(n):,}"
    return f"{n:,.1f}" if abs(n) < 10 else f"{n:,.0f}"


def milliseconds(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{number(round(ms, 1) if ms < 10 else round(ms))} ms"


def hour_label(start: float) -> str:
    return time.strftime("%H:%M", time.gmtime(start))


def _slot(i: int, count: int) -> tuple[float, float]:
    """The x and width of the i-th of `count` hour slots."""
    width = PLOT_W / max(count, 1)
    return LEFT + i * width, width


def _y(value: float, top: float) -> float:
    return TOP + PLOT_H - PLOT_H * value / top


def _value_ticks(top: float, fmt: Callable[[float], str] = number) -> tuple[Tick, ...]:
    parts = 4 if float(top / 4).is_integer() else 2  # round labels: 0-25-50, 0-25-50-75-100
    return tuple(Tick(at=round(_y(top * k / parts, top), 1), label=fmt(top * k / parts)) for k in range(parts + 1))


def _hour_ticks(hours: Sequence[HourOfAttempts]) -> tuple[Tick, ...]:
    ticks = []
    for i, hour in enumerate(hours):
        if i % 6 == 0 or i == len(hours) - 1:
            x, width = _slot(i, len(hours))
            ticks.append(Tick(at=round(x + width / 2, 1), label=hour_label(hour.start)))
    return tuple(ticks)


def deliveries_chart(hours: Sequence[HourOfAttempts]) -> Chart:
    """Attempts per hour, delivered and failed stacked, failed on top."""
    delivered = sum(h.delivered for h in hours)
    failed = sum(h.failed for h in hours)
    top = nice_ceiling(max((h.delivered + h.failed for h in hours), default=0))
    bars = []
    for i, hour in enumerate(hours):
        x, width = _slot(i, len(hours))
        gap = min(2.0, width / 4)
        title = f"{hour_label(hour.start)} UTC: {number(hour.delivered)} delivered, {number(hour.failed)} failed"
        base = float(TOP + PLOT_H)
        for count, css in ((hour.delivered, "bar-delivered"), (hour.failed, "bar-failed")):
            if count:
                height = PLOT_H * count / top
                bars.append(
                    Bar(
                        round(x + gap, 1),
                        round(base - height, 1),
                        round(width - 2 * gap, 1),
                        round(height, 1),
                        css,
                        title,
                    )
                )
                base -= height
    span = len(hours)
    return Chart(
        name="deliveries",
        title=f"Delivery attempts per hour, last {span} h (UTC): delivered and failed",
        summary=f"last {span} h: {number(delivered)} delivered, {number(failed)} failed"
        + (f" ({failed / (delivered + failed):.1%} of attempts)" if failed else ""),
        axis="attempts per hour",
        legend=(("key-delivered", "delivered"), ("key-failed", "failed (retried or given up)")),
        bars=tuple(bars),
        y_ticks=_value_ticks(top),
        x_ticks=_hour_ticks(hours),
    )


def latency_chart(hours: Sequence[HourOfAttempts]) -> Chart:
    """p50 and p95 of the duration of the attempts that delivered, per hour; hours without
    any break the line."""
    top = nice_ceiling(max((h.p95_ms or 0.0 for h in hours), default=0.0))
    lines, dots = [], []
    for css, pick, words in (("line-p50", "p50_ms", "p50"), ("line-p95", "p95_ms", "p95")):
        run: list[str] = []
        for i, hour in enumerate([*hours, None]):
            value = getattr(hour, pick) if hour is not None else None
            if hour is None or value is None:
                if run:
                    lines.append(Line(" ".join(run), css))
                run = []
                continue
            x, width = _slot(i, len(hours))
            point = (round(x + width / 2, 1), round(_y(value, top), 1))
            run.append(f"{point[0]},{point[1]}")
            dots.append(
                Dot(
                    point[0],
                    point[1],
                    css.replace("line", "dot"),
                    f"{hour_label(hour.start)} UTC: {words} {milliseconds(value)}",
                )
            )
    span = len(hours)
    measured = [h for h in hours if h.p95_ms is not None]
    if measured:
        latest, worst = measured[-1], max(measured, key=lambda h: h.p95_ms or 0.0)
        summary = (
            f"last {span} h: latest hour with deliveries ({hour_label(latest.start)} UTC) p50"
            f" {milliseconds(latest.p50_ms)}, p95 {milliseconds(latest.p95_ms)}; highest hourly p95"
            f" {milliseconds(worst.p95_ms)} at {hour_label(worst.start)} UTC"
        )
    else:
        summary = f"last {span} h: nothing delivered, so no latency to show"
    return Chart(
        name="latency",
        title=f"Duration of the attempts that delivered, per hour, last {span} h (UTC): p50 and p95",
        summary=summary,
        axis="ms",
        legend=(("key-p50", "p50 (half the attempts took less)"), ("key-p95", "p95 (95 in 100 took less)")),
        lines=tuple(lines),
        dots=tuple(dots),
        y_ticks=_value_ticks(top, milliseconds),
        x_ticks=_hour_ticks(hours),
    )
