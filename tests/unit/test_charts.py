"""The overview's charts: shapes scaled to the data, labels and summaries in words, and every
piece of text escaped when drawn as SVG."""

from __future__ import annotations

import calendar
import re
import xml.etree.ElementTree as ET

from tillhook.api.dashboard.charts import (
    PLOT_H,
    TOP,
    deliveries_chart,
    latency_chart,
    milliseconds,
    nice_ceiling,
    number,
)
from tillhook.api.dashboard.render import environment
from tillhook.store.port import HourOfAttempts

START = float(calendar.timegm((2026, 11, 30, 13, 0, 0)))  # the top of an hour, UTC


def hours(values: list[tuple[int, int, float | None, float | None]]) -> list[HourOfAttempts]:
    return [HourOfAttempts(START + 3600 * i, ok, bad, p50, p95) for i, (ok, bad, p50, p95) in enumerate(values)]


def draw(chart) -> ET.Element:
    text = environment().get_template("chart.html").render(chart=chart)
    return ET.fromstring(text)  # well-formed: the SVG and its caption parse as XML


SVG = "{http://www.w3.org/2000/svg}"


def test_axis_tops_are_round_numbers() -> None:
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 3, 7, 12, 24, 99, 101, 1204)] == [
        1,
        0.5,
        1,
        5,
        10,
        20,
        25,
        100,
        200,
        2000,
    ]
    assert number(1204) == "1,204" and number(2.5) == "2.5" and number(12.34) == "12"
    assert milliseconds(4.56) == "4.6 ms" and milliseconds(130.4) == "130 ms" and milliseconds(2500) == "2.5 s"
    assert milliseconds(None) == "-"


def test_deliveries_bars_stack_failed_on_delivered_scaled_to_the_busiest_hour() -> None:
    chart = deliveries_chart(hours([(80, 20, 1.0, 2.0), (0, 0, None, None), (40, 0, 1.0, 2.0)]))
    assert chart.summary == "last 3 h: 120 delivered, 20 failed (14.3% of attempts)"
    ok, bad, ok2 = chart.bars
    assert (ok.css, bad.css, ok2.css) == ("bar-delivered", "bar-failed", "bar-delivered")
    bottom = TOP + PLOT_H
    # 100 attempts fill the plot (axis top 100): 80 delivered from the bottom, 20 failed above.
    assert ok.height == PLOT_H * 0.8 and ok.y + ok.height == bottom
    assert bad.height == PLOT_H * 0.2 and round(bad.y + bad.height, 1) == round(ok.y, 1) and bad.y == TOP
    assert ok2.height == PLOT_H * 0.4 and ok2.x > bad.x  # the empty hour has no bar
    assert ok.title == "13:00 UTC: 80 delivered, 20 failed"
    assert [t.label for t in chart.y_ticks] == ["0", "25", "50", "75", "100"]
    assert [t.label for t in chart.x_ticks] == ["13:00", "15:00"]


def test_deliveries_svg_has_a_title_a_summary_and_a_legend_in_words() -> None:
    figure = draw(deliveries_chart(hours([(1204, 3, 2.0, 9.0)] * 24)))
    svg = figure.find(f"{SVG}svg") or figure.find("svg")
    assert svg is not None and svg.get("data-chart") == "deliveries" and svg.get("role") == "img"
    title = svg.find("title")
    assert title is not None and "delivered and failed" in (title.text or "")
    summary = figure.find(".//p[@data-summary='deliveries']")
    assert summary is not None and summary.text == "last 24 h: 28,896 delivered, 72 failed (0.2% of attempts)"
    assert svg.get("aria-labelledby") == f"{title.get('id')} {summary.get('id')}"
    legend = [li.text_content() if hasattr(li, "text_content") else "".join(li.itertext()) for li in figure.iter("li")]
    assert [w.strip() for w in legend] == ["delivered", "failed (retried or given up)"]
    assert len(svg.findall("rect")) == 48
    assert "style=" not in ET.tostring(figure, encoding="unicode")  # the CSP allows no inline styles


def test_latency_lines_break_where_an_hour_delivered_nothing() -> None:
    chart = latency_chart(hours([(10, 0, 4.0, 10.0), (5, 0, 6.0, 20.0), (0, 3, None, None), (7, 0, 5.0, 40.0)]))
    p50 = [line for line in chart.lines if line.css == "line-p50"]
    p95 = [line for line in chart.lines if line.css == "line-p95"]
    assert [len(line.points.split()) for line in p50] == [2, 1] and len(p95) == 2
    # Scaled to the highest p95 (axis top 50 ms): 40 ms is 4/5 of the way up.
    last_y = float(p95[-1].points.split(",")[1])
    assert last_y == round(TOP + PLOT_H * (1 - 40 / 50), 1)
    assert [t.label for t in chart.y_ticks] == ["0 ms", "25 ms", "50 ms"]
    assert chart.summary == (
        "last 4 h: latest hour with deliveries (16:00 UTC) p50 5 ms, p95 40 ms; highest hourly p95 40 ms at 16:00 UTC"
    )
    assert any(d.title == "14:00 UTC: p95 20 ms" for d in chart.dots)
    figure = draw(chart)
    assert figure.find(".//p[@data-summary='latency']") is not None


def test_latency_without_deliveries_says_so() -> None:
    chart = latency_chart(hours([(0, 4, None, None)] * 24))
    assert chart.lines == () and chart.summary == "last 24 h: nothing delivered, so no latency to show"


def test_text_is_escaped_in_the_drawing() -> None:
    chart = deliveries_chart(hours([(1, 0, 1.0, 1.0)]))
    hostile = chart.__class__(**{**{f: getattr(chart, f) for f in chart.__slots__}, "title": "<script>x</script>&"})
    text = environment().get_template("chart.html").render(chart=hostile)
    assert "<script>" not in text and "&lt;script&gt;x&lt;/script&gt;&amp;" in text
    assert re.search(r"<svg data-chart=\"deliveries\"", text)
