"""Two real `tillhook serve` daemons on one PostgreSQL outbox: events posted to either are
delivered to every subscribed endpoint, the ordered one in order, no delivery attempted by both
at once; one daemon killed with -9 mid-load leaves nothing acknowledged undelivered, its
attempts in flight taken over once their lease runs out."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.acceptance.conftest import ADMIN_TOKEN, Accepting, Daemon, write_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EVENTS = 2000
ORDERED_EVENTS = 300  # of them, the ordered endpoint's type, posted one after the other
LEASE = "2s"
# The flaky receiver answers 503 this many times first: enough for a back-off and failed probes.
FLAKY_FAILURES = 12


class Watch(Accepting):
    """A receiver's behaviour that records each delivery it answered 200 (and its type) and
    notes any event being received twice at the same instant: attempted by both daemons."""

    def __init__(self, *, fail_first: int = 0) -> None:
        super().__init__()
        self.fail_first = fail_first  # answer 503 to this many requests, then 200
        self.types: list[str] = []  # of the events accepted, in the same order
        self.overlaps: list[str] = []
        self._open: Counter[str] = Counter()

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        event_id = request.headers["webhook-id"]
        self._open[event_id] += 1
        if self._open[event_id] > 1:
            self.overlaps.append(event_id)
        try:
            await asyncio.sleep(0.002)  # the receiver's own work, so attempts overlap in time
            if n <= self.fail_first:
                return web.Response(status=503, text="down for a while")
            self.types.append(json.loads(await request.read())["type"])
            await self.accept(event_id)
            return web.Response(text="ok")
        finally:
            self._open[event_id] -= 1

    async def wait_count(self, n: int, timeout_s: float) -> None:
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.accepted) >= n)

        await asyncio.wait_for(until(), timeout_s)


def shared_config(tmp_path: Path, name: str, pg_url: str, endpoints: list[dict[str, Any]]) -> Path:
    return write_config(tmp_path / f"{name}.toml", endpoints, storage={"url": pg_url, "lease": LEASE})


async def post(http: aiohttp.ClientSession, daemon: Daemon, event_type: str, n: int) -> str | None:
    body = {"type": event_type, "data": {"n": n}}
    try:
        async with http.post(f"{daemon.url}/v1/events", json=body, headers=daemon.headers()) as response:
            if response.status != 202:
                return None
            return str((await response.json())["id"])
    except (TimeoutError, aiohttp.ClientError):
        return None  # the daemon died under this request: no 202, no promise


async def start_pair(
    tmp_path: Path, pg_url: str, receivers: Any, daemons: Any
) -> tuple[list[Daemon], dict[str, Watch]]:
    watches = {"all": Watch(), "ordered": Watch(), "flaky": Watch(fail_first=FLAKY_FAILURES), "alerts": Watch()}
    urls = {name: (await receivers(secret=SECRET, behaviour=watch)).url for name, watch in watches.items()}
    endpoints = [
        {"name": "everything", "url": urls["all"], "secret": SECRET, "max_in_flight": 8},
        {"name": "ledger", "url": urls["ordered"], "secret": SECRET, "ordered": True, "events": ["ledger.*"]},
        {"name": "flaky", "url": urls["flaky"], "secret": SECRET, "max_in_flight": 4},
        {"name": "shop-chat", "url": urls["alerts"], "secret": SECRET, "events": ["tillhook.endpoint.*"]},
    ]
    pair = [await daemons(shared_config(tmp_path, name, pg_url, endpoints)).start() for name in ("first", "second")]
    return pair, watches


async def load(http: aiohttp.ClientSession, pair: list[Daemon], acked: dict[str, list[str]], start: int) -> None:
    """EVENTS events, alternately to each daemon: the ordered endpoint's type one at a time
    (so that their order of acceptance is the order posted), the rest by six posters."""
    counter = itertools.count(start)
    plain = EVENTS - ORDERED_EVENTS

    async def ordered() -> None:
        for i in range(ORDERED_EVENTS):
            event_id = await post(http, pair[i % 2], "ledger.entry", next(counter))
            if event_id is not None:
                acked["ledger"].append(event_id)

    async def poster(worker: int) -> None:
        for i in range(worker, plain, 6):
            event_id = await post(http, pair[i % 2], "sale.completed", next(counter))
            if event_id is not None:
                acked["sale"].append(event_id)

    await asyncio.gather(ordered(), *(poster(w) for w in range(6)))


@pytest.mark.timeout(300)
async def test_two_daemons_deliver_everything_once_in_order(
    tmp_path: Path, pg_url: str, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    pair, watches = await start_pair(tmp_path, pg_url, receivers, daemons)
    acked: dict[str, list[str]] = {"ledger": [], "sale": []}
    await load(http, pair, acked, 0)
    assert len(acked["ledger"]) == ORDERED_EVENTS and len(acked["sale"]) == EVENTS - ORDERED_EVENTS
    every = set(acked["ledger"]) | set(acked["sale"])
    await watches["all"].wait_for_all(every, 120)
    await watches["flaky"].wait_for_all(every, 120)
    await watches["ordered"].wait_for_all(set(acked["ledger"]), 120)

    assert watches["ordered"].accepted == acked["ledger"]  # every one once, in the order accepted
    # The flaky endpoint's back-off and recovery, told once each, by the daemon serving it.
    await watches["alerts"].wait_count(2, 30)
    assert Counter(watches["alerts"].types) == {"tillhook.endpoint.failing": 1, "tillhook.endpoint.recovered": 1}
    for name, watch in watches.items():
        assert watch.overlaps == [], f"{name}: attempted by both daemons at once: {watch.overlaps[:5]}"
        assert not [e for e, n in Counter(watch.accepted).items() if n > 1], f"{name}: delivered twice"
    # Both daemons took part: each acknowledged half of the events, and their logs say each
    # saw the other.
    for daemon in pair:
        seen = await daemon.wait_log("daemons_changed", 10)
        assert seen["live"] == 2
    # Either daemon's status is the whole outbox's: both daemons, each where it listens, the one
    # asked marked, and the same daemon serving each endpoint.
    statuses = []
    for daemon in pair:
        async with http.get(f"{daemon.url}/v1/status", headers=daemon.headers(ADMIN_TOKEN)) as response:
            assert response.status == 200
            statuses.append(await response.json())
    for daemon, status in zip(pair, statuses, strict=True):
        assert daemon.process is not None
        assert {d["listen"] for d in status["daemons"]} == {d.url.removeprefix("http://") for d in pair}
        (this,) = [d for d in status["daemons"] if d["this"]]
        assert (this["listen"], this["pid"]) == (daemon.url.removeprefix("http://"), daemon.process.pid)
        assert all(d["live"] for d in status["daemons"]) and status["in_flight"] == 0
    served = [[e["served_by"] for e in status["endpoints"]] for status in statuses]
    assert served[0] == served[1] and set(served[0]) <= {d["id"] for d in statuses[0]["daemons"]}


@pytest.mark.timeout(300)
async def test_kill_9_of_one_daemon_loses_nothing(
    tmp_path: Path, pg_url: str, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    pair, watches = await start_pair(tmp_path, pg_url, receivers, daemons)
    victim, survivor = pair
    acked: dict[str, list[str]] = {"ledger": [], "sale": []}
    loader = asyncio.create_task(load(http, pair, acked, 0))

    await watches["all"].wait_count(400, 60)
    assert victim.process is not None
    victim_pid = victim.process.pid
    await victim.kill()
    # What it had claimed and not finished, read before any lease can have run out.
    conn = await asyncpg.connect(pg_url)
    try:
        in_flight = {
            (row[0], row[1])
            for row in await conn.fetch(
                "SELECT d.event_id, ep.name FROM deliveries d JOIN endpoints ep ON ep.id = d.endpoint_id"
                " WHERE d.state = 'delivering' AND d.claimed_by LIKE $1",
                f"%:{victim_pid}:%",
            )
        }
    finally:
        await conn.close()
    await loader  # the victim's share of the posts now fails: those got no 202
    every = set(acked["ledger"]) | set(acked["sale"])
    await watches["all"].wait_for_all(every, 120)
    await watches["flaky"].wait_for_all(every, 120)
    await watches["ordered"].wait_for_all(set(acked["ledger"]), 120)

    names = {"all": "everything", "ordered": "ledger", "flaky": "flaky", "alerts": "shop-chat"}
    for name, watch in watches.items():
        assert watch.overlaps == [], f"{name}: attempted by both daemons at once: {watch.overlaps[:5]}"
        twice = {e for e, n in Counter(watch.accepted).items() if n > 1}
        allowed = {e for e, endpoint in in_flight if endpoint == names[name]}
        assert twice <= allowed, f"{name}: delivered twice without being in flight at the kill: {twice - allowed}"
    # In order, a repeat of the head in flight at the kill aside. (An event the victim stored
    # but was killed before acknowledging is delivered too, in its place: no promise was made
    # for it, so it is left out of the comparison.)
    promised = set(acked["ledger"])
    ledger = [e for i, e in enumerate(watches["ordered"].accepted) if e not in watches["ordered"].accepted[:i]]
    assert [e for e in ledger if e in promised] == acked["ledger"]
    # The survivor saw the victim go once its lease ran out, and serves every endpoint since.
    assert any(e.get("event") == "daemons_changed" and e.get("live") == 1 for e in survivor.log), survivor.log_text()
    if in_flight:
        taken = await survivor.wait_log("deliveries_taken_back", 30)
        assert taken["deliveries"] >= 1
