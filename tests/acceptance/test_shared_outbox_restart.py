"""PostgreSQL restarted under load, beneath two real daemons: while it is down ingest answers
503 and stores nothing of those requests; both daemons recover by themselves; every event
acknowledged is delivered."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.acceptance.conftest import Accepting, Daemon, write_config
from tests.acceptance.test_shared_outbox import LEASE, SECRET

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "postgres"


class Cluster:
    """A PostgreSQL cluster of this test's own (`.ci/postgres`), so that it can be stopped and
    started again without touching the one the other tests share."""

    def __init__(self, env_file: Path) -> None:
        env = dict(
            line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines() if line.strip()
        )
        self.url = env["TILLHOOK_TEST_POSTGRES"]
        self.dir = env["TILLHOOK_TEST_POSTGRES_DIR"]

    async def run(self, *args: str) -> None:
        process = await asyncio.create_subprocess_exec(str(SCRIPT), *args, stderr=subprocess.PIPE)
        _, err = await process.communicate()
        assert process.returncode == 0, f".ci/postgres {' '.join(args)} failed: {err.decode()}"

    async def halt(self) -> None:
        await self.run("halt", self.dir)

    async def resume(self) -> None:
        await self.run("resume", self.dir)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    env_file = tmp_path / "postgres.env"
    process = await asyncio.create_subprocess_exec(str(SCRIPT), "start", str(env_file), stderr=subprocess.PIPE)
    _, err = await process.communicate()
    assert process.returncode == 0, f".ci/postgres start failed: {err.decode()}"
    made = Cluster(env_file)
    try:
        yield made
    finally:
        await made.run("stop", made.dir)


class Tally:
    """The posters' results: ids acknowledged, and the `n` of each request refused with 503."""

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.refused: list[int] = []
        self.by_daemon: Counter[tuple[int, int]] = Counter()  # (daemon, status)
        self._changed = asyncio.Condition()

    async def note(self, daemon: int, status: int, n: int, event_id: str | None) -> None:
        async with self._changed:
            self.by_daemon[(daemon, status)] += 1
            if status == 202 and event_id is not None:
                self.acked.append(event_id)
            elif status == 503:
                self.refused.append(n)
            self._changed.notify_all()

    async def until(self, predicate: Any, timeout_s: float, what: str) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        try:
            await asyncio.wait_for(wait(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"not within {timeout_s}s: {what} ({dict(self.by_daemon)})") from None


async def posters(http: aiohttp.ClientSession, pair: list[Daemon], tally: Tally, stop: asyncio.Event) -> None:
    counter = iter(range(1, 100_000))

    async def poster(worker: int) -> None:
        while not stop.is_set():
            n = next(counter)
            which = n % 2
            body = {"type": "sale.completed", "data": {"n": n}}
            try:
                async with http.post(
                    f"{pair[which].url}/v1/events", json=body, headers=pair[which].headers()
                ) as response:
                    reply = await response.json()
                    await tally.note(which, response.status, n, reply.get("id"))
                    if response.status == 503:
                        await asyncio.sleep(0.02)  # as a POS backs off before its retry
            except (TimeoutError, aiohttp.ClientError):
                await tally.note(which, 0, n, None)

    await asyncio.gather(*(poster(w) for w in range(4)))


async def test_postgres_restarted_under_load(
    tmp_path: Path, cluster: Cluster, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    admin = await asyncpg.connect(cluster.url)
    await admin.execute("CREATE DATABASE tillhook_restart")
    await admin.close()
    url = cluster.url.rsplit("/", 1)[0] + "/tillhook_restart"
    behaviour = Accepting()

    async def accept(request: Any, n: int) -> Any:
        from aiohttp import web

        await behaviour.accept(request.headers["webhook-id"])
        return web.Response(text="ok")

    receiver = await receivers(secret=SECRET, behaviour=accept)
    endpoints = [{"name": "shop", "url": receiver.url, "secret": SECRET}]
    pair = [
        await daemons(write_config(tmp_path / f"{name}.toml", endpoints, storage={"url": url, "lease": LEASE})).start()
        for name in ("first", "second")
    ]
    tally, stop = Tally(), asyncio.Event()
    load = asyncio.create_task(posters(http, pair, tally, stop))
    try:
        await tally.until(lambda: len(tally.acked) >= 200, 60, "200 events acknowledged before the restart")
        await cluster.halt()
        await tally.until(
            lambda: tally.by_daemon[(0, 503)] >= 3 and tally.by_daemon[(1, 503)] >= 3,
            60,
            "both daemons answering 503 while PostgreSQL is down",
        )
        before = {d: tally.by_daemon[(d, 202)] for d in (0, 1)}
        await cluster.resume()
        await tally.until(
            lambda: all(tally.by_daemon[(d, 202)] >= before[d] + 100 for d in (0, 1)),
            90,
            "both daemons accepting again by themselves",
        )
    finally:
        stop.set()
        await load
    await behaviour.wait_for_all(set(tally.acked), 120)

    conn = await asyncpg.connect(url)
    try:
        stored = {json.loads(bytes(row[0]))["data"]["n"] for row in await conn.fetch("SELECT body FROM events")}
    finally:
        await conn.close()
    assert not stored & set(tally.refused), "a request answered 503 was stored"
    for daemon in pair:
        assert daemon.process is not None and daemon.process.returncode is None  # neither gave up
        await daemon.wait_log("store_reconnected", 10)
