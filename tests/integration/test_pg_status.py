"""The status of an outbox two daemons share is the whole outbox's, whichever daemon is asked:
two in-process daemons on one fresh PostgreSQL database, a receiver that holds its requests
open. The daemon that does not serve the endpoint shows the deliveries the other holds in
flight, both daemons (each knowing which one it is), and the same daemon serving each
endpoint; `tillhook status` and the dashboard's overview show the same, escaped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.integration.conftest import Harness, make_config
from tests.integration.test_admin_api import api
from tests.integration.test_endpoint_pages import _page, _signed_in
from tests.integration.test_status import post_to, row_of
from tests.support import Receiver, hang_until_released
from tillhook.cli_admin import _print_status
from tillhook.store.pg.outbox import PostgresStore

DEADLINE_S = 15.0
HELD = 3  # deliveries the serving daemon holds in flight at once (endpoint_max_in_flight is 4)


def presence_of(h: Harness) -> tuple[str, tuple[str, ...]]:
    """(this daemon's id, the daemons it sees live)."""
    store = h.services.store
    assert isinstance(store, PostgresStore)
    return store.presence.daemon_id, store.presence.live


async def until(condition: Callable[[], Awaitable[bool] | bool]) -> None:
    """Polls what another daemon (or the database) is to change, up to a deadline."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            met = condition()
            if met if isinstance(met, bool) else await met:
                return
            await asyncio.sleep(0.02)


async def status(h: Harness) -> dict[str, Any]:
    code, body = await api(h, "GET", "/v1/status")
    assert code == 200, body
    return body


def endpoint(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in body["endpoints"] if e["name"] == name)


@pytest.fixture
async def shared(tmp_path: Path, pg_url: str, receivers: Any, make_harness: Any) -> tuple[Harness, Harness, Receiver]:
    """(the daemon serving `shop`, the other one, shop's receiver, which hangs until released),
    once each daemon sees both live."""
    hanging = await receivers()
    hanging.behaviour = hang_until_released(hanging.release)
    quiet = await receivers()
    config = make_config(
        tmp_path,
        [
            {"name": "shop", "url": hanging.url, "events": ["shop.*"]},
            {"name": "stock", "url": quiet.url, "events": ["stock.*"]},
        ],
        storage={"url": pg_url, "lease": "2s"},
    )
    one, two = await make_harness(config), await make_harness(config)
    ids = tuple(sorted([presence_of(one)[0], presence_of(two)[0]]))
    await until(lambda: presence_of(one)[1] == presence_of(two)[1] == ids)
    serving = one.services.sharing
    assert serving is not None
    holder, watcher = (one, two) if serving.serves(one.endpoint_id("shop")) else (two, one)
    return holder, watcher, hanging


async def test_the_daemon_not_serving_an_endpoint_shows_what_the_other_holds_in_flight(
    shared: tuple[Harness, Harness, Receiver], capsys: pytest.CaptureFixture[str]
) -> None:
    holder, watcher, hanging = shared
    holder_id, watcher_id = presence_of(holder)[0], presence_of(watcher)[0]
    await post_to(watcher, "shop", HELD)  # taken in by one daemon, attempted by the other
    await hanging.wait_count(HELD)
    assert holder.gates.in_flight == HELD and watcher.gates.in_flight == 0  # the holder's alone

    seen = await status(watcher)
    assert seen["in_flight"] == HELD and seen["deliveries"]["delivering"] == HELD and seen["backlog"] == HELD
    shop, stock = endpoint(seen, "shop"), endpoint(seen, "stock")
    assert (shop["in_flight"], shop["pending"], shop["served_by"]) == (HELD, 0, holder_id)
    assert stock["in_flight"] == 0 and stock["served_by"] in (holder_id, watcher_id)
    # How shop's attempts go is its server's to know: the watcher's gates have seen none.
    assert (shop["consecutive_failures"], shop["attempts_last_hour"], shop["success_rate_last_hour"]) == (
        None,
        None,
        None,
    )
    assert {d["id"]: (d["this"], d["live"]) for d in seen["daemons"]} == {
        holder_id: (False, True),
        watcher_id: (True, True),
    }
    assert all(d["pid"] > 0 and d["listen"] is None for d in seen["daemons"])  # in-process: none announced

    told = await status(holder)
    assert told["in_flight"] == HELD and endpoint(told, "shop")["in_flight"] == HELD
    assert [e["served_by"] for e in told["endpoints"]] == [e["served_by"] for e in seen["endpoints"]]
    assert endpoint(told, "shop")["consecutive_failures"] == 0  # its own: it attempts shop
    assert {d["id"]: d["this"] for d in told["daemons"]} == {holder_id: True, watcher_id: False}

    _print_status(seen)
    printed = capsys.readouterr().out
    assert "daemons sharing the outbox:" in printed and "in flight 3" in printed
    assert row_of(printed, "shop")["SERVED_BY"] == holder_id and row_of(printed, "shop")["IN_FLIGHT"] == "3"
    mine = next(line for line in printed.splitlines() if line.startswith(watcher_id))
    assert mine.split()[-2:] == ["yes", "yes"]  # live, and the one asked

    hanging.release.set()
    await until(lambda: holder.gates.in_flight == 0)

    async def none_in_flight() -> bool:
        return (await status(watcher))["in_flight"] == 0

    await until(none_in_flight)
    assert endpoint(await status(watcher), "shop")["last_success_at"] is not None


async def test_the_overview_shows_every_daemon_and_who_serves_each_endpoint_escaped(
    shared: tuple[Harness, Harness, Receiver], pg_url: str
) -> None:
    holder, watcher, _ = shared
    holder_id, watcher_id = presence_of(holder)[0], presence_of(watcher)[0]
    # A daemon gone without leaving, whose row says what no page may take for markup.
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO daemons (id, host, pid, listen, started_at, seen_at, lease_s)"
            " VALUES ($1, $2, 7, $3, $4, $4, 2)",
            '<script>alert("id")</script>',
            "box",
            "<b>127.0.0.1:1</b>",
            time.time() - 60,
        )
    finally:
        await conn.close()
    headers, _ = _signed_in(watcher, "viewer")
    code, page, _ = await _page(watcher, "GET", "/", headers)
    assert code == 200
    panel = page.split('aria-label="Daemons"', 1)[1].split("</section>", 1)[0]
    for daemon_id in (holder_id, watcher_id):
        assert f'data-daemon="{daemon_id}" data-live="yes"' in panel
    assert f'{watcher_id} <span class="chip">this one</span>' in panel
    assert f"{holder_id} <span" not in panel  # only the one answering is "this one"
    assert "<script>" not in page and "<b>" not in page
    assert 'data-daemon="&lt;script&gt;alert(&#34;id&#34;)&lt;/script&gt;" data-live="no"' in panel
    assert "&lt;b&gt;127.0.0.1:1&lt;/b&gt;" in panel and "Not seen within its lease" in panel
    served = endpoint(await status(watcher), "shop")["served_by"]
    assert served == holder_id
    shop = page.split('data-endpoint="shop"', 1)[1].split("</li>", 1)[0]
    assert f'<dd data-field="served_by">{holder_id}</dd>' in shop
    # The holder's own overview says it serves shop itself.
    headers, _ = _signed_in(holder, "viewer")
    _, own, _ = await _page(holder, "GET", "/?part=live", headers)
    assert f'<dd data-field="served_by">{holder_id} (this one)</dd>' in own.split('data-endpoint="shop"', 1)[1]


async def test_an_endpoint_changed_through_one_daemon_is_known_to_the_other(
    shared: tuple[Harness, Harness, Receiver], receivers: Any
) -> None:
    """Created, disabled and deleted through one daemon's API, the endpoint is taken up, held
    and let go by the other (its news, then its registry read again): events ingested there fan
    out to it, and nothing is sent while it is disabled."""
    one, other, _ = shared
    fresh = await receivers()
    code, made = await api(one, "POST", "/v1/endpoints", {"name": "fresh", "url": fresh.url, "events": ["fresh.*"]})
    assert code == 201, made
    await until(lambda: other.services.registry.get(made["id"]) is not None)
    await post_to(other, "fresh", 2)  # ingested by the daemon that did not create it
    await fresh.wait_count(2)

    assert (await api(one, "POST", f"/v1/endpoints/{made['id']}/disable"))[0] == 200

    def disabled_there() -> bool:
        seen = other.services.registry.get(made["id"])
        return seen is not None and not seen.enabled

    await until(disabled_there)
    await post_to(other, "fresh", 1)
    held = await status(other)
    assert endpoint(held, "fresh")["held"] == 1 and len(fresh.received) == 2  # held, not sent

    assert (await api(one, "DELETE", f"/v1/endpoints/{made['id']}"))[0] in (200, 204)
    await until(lambda: other.services.registry.get(made["id"]) is None)
