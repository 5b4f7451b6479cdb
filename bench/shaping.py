"""Figure 9: what a filter, a transform and a chat preset cost per delivery, next to plain
deliveries, on the same daemon setup as figure 3 (4 endpoints, a fast receiver).

Used by bench/run.py (`--only shaping`), which runs the daemons; this file holds the
variants, the table rows and the README section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dashboard  # beside this file; the README's sections are spliced the same way

# Each variant gives all 4 endpoints the same keys. The filter keeps every event (the bench's
# events all have an amount above 0), so each variant delivers the same number of events and
# only the cost of evaluating differs.
VARIANTS: dict[str, dict[str, str]] = {
    "plain": {},
    "filter": {"filter": "data.amount > 0.0"},
    "transform": {"transform": '{"text": "Sale: " + string(data.amount), "customer": data.customer_id}'},
    "preset": {"preset": "slack"},
}


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (the sandbox children), from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def rows(runs: list[dict[str, Any]], fmt_rate: Any, span: Any, med: Any) -> list[dict[str, str]]:
    """Per variant: deliveries/s against plain's in the same run, and CPU µs per delivery
    (daemon and sandbox children) against plain's."""
    out = []
    for name in VARIANTS:
        if name == "plain":
            continue
        values = [r[name]["per_s"] for r in runs]
        plains = [r["plain"]["per_s"] for r in runs]
        ratios = [v / p for v, p in zip(values, plains, strict=True) if p]
        cpu = [r[name]["cpu_us"] for r in runs]
        plain_cpu = [r["plain"]["cpu_us"] for r in runs]
        extra = [c - p for c, p in zip(cpu, plain_cpu, strict=True)]
        ratio = med(ratios)
        out.append(
            {
                "figure": f"Delivery, 4 endpoints with a {name} (deliveries/s; CPU per delivery)",
                "value": f"{fmt_rate(med(values))}; {med(cpu):.0f} µs",
                "ceiling": f"{fmt_rate(med(plains))}; {med(plain_cpu):.0f} µs (the same, plain, same run)",
                "ratio": f"{ratio:.2f}; +{med(extra):.0f} µs" if ratio is not None else "n/a",
                "spread": f"{span(values, fmt_rate)}; ratio {span(ratios, lambda x: f'{x:.2f}')}",
                "target": "—",
            }
        )
    return out


def details(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i, r in enumerate(runs):
        lines.append(
            f"- shaping run {i}: "
            + "; ".join(
                f"{name} {v['delivered']} deliveries in {v['window_s']:.2f} s ({v['per_s']:.0f}/s),"
                f" CPU {v['cpu_s']:.2f} s"
                f" in {v['processes']} process(es)"
                for name, v in r.items()
                if name in VARIANTS
            )
        )
    return lines


NOTE = """\
- **Filters and transforms**: figure 3's setup (5,000 events in batches of 100 to 4
  endpoints subscribed to `*`, one fast receiver) once per variant, each on a fresh daemon,
  in an order that rotates from run to run: *plain*; every endpoint with the filter
  `data.amount > 0.0` (keeps every event, so the same 20,000 deliveries; evaluated at
  fan-out, one sandbox round trip per endpoint per ingest batch); every endpoint with the
  transform `{"text": "Sale: " + string(data.amount), "customer": data.customer_id}`
  (evaluated before each attempt, one round trip per delivery); every endpoint with
  `preset = "slack"`. CPU is utime + stime of the daemon and its sandbox children (from
  `/proc`) over the whole run, divided by the deliveries; the ratio is the variant's rate
  over plain's in the same run, and +N µs its CPU per delivery above plain's.
  What limits the transformed figures: every attempt's transform goes through the one
  delivery sandbox process, one request at a time (a round trip over its pipes, the event
  bound into CEL, the result written as JSON), about 1 ms each for the transform and 1.6 ms
  for the Slack preset on this machine, so all transformed endpoints together get about
  1,000 (600) deliveries a second, far above what a chat webhook takes (Slack: about one
  message a second). The filter costs one round trip per endpoint per ingest batch of 100.
"""

MARK_START, MARK_END = "<!-- shaping figure -->", "<!-- /shaping figure -->"


def section(table_text: str, detail_lines: list[str], command: str, when: str) -> str:
    return (
        f"{MARK_START}\n## What a filter, a transform and a preset cost\n\n"
        f"Measured by `{command}`, apart from the tables above ({when}).\n\n"
        f"{table_text}\n\n{NOTE}\n" + "\n".join(detail_lines) + f"\n{MARK_END}\n"
    )


def splice(readme: str, text: str) -> str:
    return dashboard.splice(readme, text, (MARK_START, MARK_END))
