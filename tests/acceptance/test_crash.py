"""kill -9 in the middle of a load, then a restart: every event that got a 202 is delivered;
only the attempts in flight at the kill may arrive twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.acceptance.conftest import Accepting, Daemon, write_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MAX_IN_FLIGHT = 8
MAX_EVENTS = 3000  # the posters stop here at the latest
KILL_AFTER = 150  # deliveries the receiver has accepted when the daemon is killed


class SlowReceiver(Accepting):
    """Answers after a short pause so that attempts are in flight when the kill comes."""

    def __init__(self) -> None:
        super().__init__()
        self.enough = asyncio.Event()

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        await asyncio.sleep(0.01)  # the receiver's own work, not a wait in the test
        await self.accept(request.headers["webhook-id"])
        if len(self.accepted) >= KILL_AFTER:
            self.enough.set()
        return web.Response(text="ok")


async def load(http: aiohttp.ClientSession, daemon: Daemon, acked: list[str], stop: asyncio.Event) -> None:
    """Posts until told to stop or the daemon goes away; records every id that got a 202."""
    sent = 0

    async def poster(worker: int) -> None:
        nonlocal sent
        while not stop.is_set() and sent < MAX_EVENTS:
            sent += 1
            body = {"type": "sale.completed", "data": {"worker": worker, "n": sent}}
            try:
                async with http.post(f"{daemon.url}/v1/events", json=body, headers=daemon.headers()) as response:
                    if response.status != 202:
                        return
                    acked.append((await response.json())["id"])
            except (TimeoutError, aiohttp.ClientError):
                return  # the daemon died under this request: no 202, no promise

    await asyncio.gather(*(poster(w) for w in range(10)))


def delivering_events(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM deliveries WHERE state = 'delivering'")}


async def test_kill_9_mid_load_loses_nothing(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    behaviour = SlowReceiver()
    receiver = await receivers(secret=SECRET, behaviour=behaviour)
    config = write_config(
        tmp_path / "tillhook.toml",
        [{"name": "pos", "url": receiver.url, "secret": SECRET, "max_in_flight": MAX_IN_FLIGHT}],
    )
    daemon = await daemons(config).start()
    acked: list[str] = []
    stop = asyncio.Event()
    loader = asyncio.create_task(load(http, daemon, acked, stop))
    try:
        await asyncio.wait_for(behaviour.enough.wait(), 60)
    except TimeoutError:
        raise AssertionError(
            f"only {len(behaviour.accepted)} delivered, {len(acked)} acked:\n{daemon.log_text()}"
        ) from None
    await daemon.kill()
    stop.set()
    await asyncio.wait_for(loader, 30)

    in_flight_at_kill = delivering_events(tmp_path / "tillhook.db")
    assert len(in_flight_at_kill) <= MAX_IN_FLIGHT
    assert len(acked) > KILL_AFTER, "the load should have run ahead of the deliveries"
    await daemon.start()
    try:
        await behaviour.wait_for_all(set(acked), timeout_s=90)
    except AssertionError:
        missing = set(acked) - set(behaviour.accepted)
        with sqlite3.connect(tmp_path / "tillhook.db") as conn:
            states = conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall()
            stored = conn.execute("SELECT count(*) FROM events").fetchone()
        raise AssertionError(
            f"{len(missing)} of {len(acked)} acknowledged events not delivered; stored events {stored},"
            f" deliveries by state {states}; log:\n{daemon.log_text()}"
        ) from None

    counts = Counter(behaviour.accepted)
    duplicates = {event_id for event_id, n in counts.items() if n > 1}
    assert duplicates <= in_flight_at_kill, "only attempts in flight at the kill may be repeated"
    assert all(n <= 2 for n in counts.values())
    assert all(r.verified for r in receiver.received)
    assert await daemon.terminate() == 0
