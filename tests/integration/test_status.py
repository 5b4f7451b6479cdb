"""GET /v1/status per endpoint, and the `tillhook status` table made from it: each state and
what it waits for (CONTRACT 9 names healthy, backing_off, paused, disabled)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ADMIN_TOKEN, Harness, make_config
from tests.integration.test_admin_api import api
from tests.support import FakeClock, status
from tillhook.cli_admin import _print_status
from tillhook.models import format_time


async def post_to(h: Harness, endpoint: str, n: int = 1) -> None:
    for _ in range(n):
        code, reply, _ = await h.post_events({"type": f"{endpoint}.done", "data": {}})
        assert code == 202 and reply["deliveries"] == 1, reply


def row_of(table: str, name: str) -> dict[str, str]:
    """A row of the printed table by its header (cells are separated by two spaces or more)."""
    lines = [line for line in table.splitlines() if line.startswith(("NAME", name + " "))]
    header, row = lines
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return {header[a:b].strip(): row[a:b].strip() for a, b in bounds}


@pytest.fixture
async def four(tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock):
    """One endpoint per state, each with its own receiver."""
    paused = await receivers(behaviour=status(429, headers={"Retry-After": "120"}))
    failing = await receivers(behaviour=status(500))
    fine = await receivers()
    config = make_config(
        tmp_path,
        [
            {"name": name, "url": r.url, "events": [f"{name}.*"]}
            for name, r in (("paused", paused), ("failing", failing), ("fine", fine), ("off", fine))
        ],
        delivery={"retry_schedule": ["1m"], "give_up_after": "1h"},
    )
    return await make_harness(config, clock=clock)


async def test_each_state_and_why(four: Harness, capsys: pytest.CaptureFixture[str]):
    h = four
    await post_to(h, "paused")
    await post_to(h, "failing", 5)
    await post_to(h, "fine")
    await api(h, "POST", "/v1/endpoints/off/disable")
    await post_to(h, "off", 2)
    await h.step()
    code, body = await api(h, "GET", "/v1/status")
    assert code == 200
    shown = {e["name"]: e for e in body["endpoints"]}

    assert shown["paused"]["state"] == "paused"
    assert shown["paused"]["paused_until"] == format_time(h.gate("paused").paused_until or 0)
    assert shown["paused"]["next_probe_at"] is None and shown["paused"]["held"] == 0
    assert shown["failing"]["state"] == "backing_off"
    assert shown["failing"]["next_probe_at"] == format_time(h.gate("failing").next_probe_at or 0)
    assert shown["failing"]["held"] == 0
    assert shown["fine"]["state"] == "healthy" and shown["fine"]["next_probe_at"] is None
    assert shown["off"]["state"] == "disabled" and shown["off"]["held"] == 2

    _print_status(body)
    table = capsys.readouterr().out
    assert row_of(table, "paused")["STATE"] == "paused"
    assert row_of(table, "paused")["WHY"] == f"paused until {shown['paused']['paused_until']}"
    assert row_of(table, "failing")["WHY"] == f"backing off, next probe {shown['failing']['next_probe_at']}"
    assert row_of(table, "fine")["WHY"] == "-" and row_of(table, "fine")["HELD"] == "0"
    assert row_of(table, "off")["WHY"] == "disabled: disabled through the admin API"
    assert row_of(table, "off")["HELD"] == "2"

    code, metrics = await api_text(h, "/metrics")
    assert 'tillhook_endpoint_state{endpoint="paused",state="paused"} 1.0' in metrics


async def api_text(h: Harness, path: str) -> tuple[int, str]:
    async with h.session.get(h.server.make_url(path), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        return r.status, await r.text()
