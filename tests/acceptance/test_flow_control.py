"""Ordered delivery across a kill -9, and a rate limit measured in real time, with the
real daemon."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.acceptance.conftest import Accepting, Daemon, write_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def post_batches(http: aiohttp.ClientSession, daemon: Daemon, n: int, batch: int = 100) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, batch):
        body = [{"type": "sale.completed", "data": {"n": i}} for i in range(start, min(n, start + batch))]
        async with http.post(f"{daemon.url}/v1/events", json=body, headers=daemon.headers()) as response:
            assert response.status == 202
            ids += [r["id"] for r in await response.json()]
    return ids


class Ledger(Accepting):
    """Fails the third event twice; answers after a short pause so one attempt is always in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []  # every id that arrived, including refused attempts
        self.third: str | None = None
        self.refusals = 0
        self.halfway = asyncio.Event()

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        event_id = request.headers["webhook-id"]
        self.order.append(event_id)
        await asyncio.sleep(0.005)  # the receiver's own work
        if event_id == self.third and self.refusals < 2:
            self.refusals += 1
            return web.Response(status=500, text="ledger locked")
        await self.accept(event_id)
        if len(self.accepted) >= 80:
            self.halfway.set()
        return web.Response(text="ok")


async def test_ordered_endpoint_keeps_order_through_failures_and_a_kill_9(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    ledger = Ledger()
    receiver = await receivers(secret=SECRET, behaviour=ledger)
    config = write_config(
        tmp_path / "tillhook.toml",
        [{"name": "ledger", "url": receiver.url, "secret": SECRET, "ordered": True}],
    )
    daemon = await daemons(config).start()
    ids = await post_batches(http, daemon, 200)
    ledger.third = ids[2]
    await asyncio.wait_for(ledger.halfway.wait(), 60)
    await daemon.kill()
    await daemon.start()
    await ledger.wait_for_all(set(ids), timeout_s=90)

    assert ledger.refusals == 2
    # Accepted in exactly the order they were posted, at most the one in flight at the kill twice.
    deduplicated = [
        event_id for i, event_id in enumerate(ledger.accepted) if i == 0 or ledger.accepted[i - 1] != event_id
    ]
    assert deduplicated == ids
    assert len(ledger.accepted) - len(ids) <= 1
    # Never two at once: each arrival came after the previous one was answered.
    assert ledger.order[:5] == [ids[0], ids[1], ids[2], ids[2], ids[2]]
    assert all(r.verified for r in receiver.received)
    assert await daemon.terminate() == 0


class Clocked(Accepting):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        self.times.append(time.monotonic())
        await self.accept(request.headers["webhook-id"])
        return web.Response(text="ok")


async def test_rate_limit_holds_under_a_burst_while_an_unlimited_endpoint_runs_free(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    limited, free = Clocked(), Clocked()
    limited_receiver = await receivers(behaviour=limited)
    free_receiver = await receivers(behaviour=free)
    config = write_config(
        tmp_path / "tillhook.toml",
        [
            {"name": "limited", "url": limited_receiver.url, "rate_limit": 20, "max_in_flight": 50},
            {"name": "free", "url": free_receiver.url, "max_in_flight": 50},
        ],
    )
    daemon = await daemons(config).start()
    ids = set(await post_batches(http, daemon, 500))
    await free.wait_for_all(ids, timeout_s=60)
    await limited.wait_for_all(ids, timeout_s=90)

    # The first 20 may go at once (the bucket's burst); after that, 20 per second.
    steady = limited.times[20:]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert abs(rate - 20) <= 2, f"measured {rate:.2f}/s"
    # The unlimited endpoint was done long before: the limit slowed nothing else.
    free_span = free.times[-1] - free.times[0]
    assert free.times[-1] < limited.times[100] and free_span < 5, f"free took {free_span:.1f}s"
    print(f"limited: {rate:.2f}/s; free: 500 in {free_span:.2f}s")
    assert await daemon.terminate() == 0
