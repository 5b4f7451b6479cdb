"""The database file deleted under load: the daemon notices within seconds, stops answering
202 (ingest and /healthz answer 503 saying what to do), and saves what its open connection
still holds to a rescue file that holds every event that got a 202. Put back as the README
says, the rescue file is the outbox again and its deliveries go out."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.acceptance.conftest import Accepting, Daemon, write_config

POSTERS = 8
MAX_EVENTS = 5000  # the posters stop here at the latest
DELETE_AFTER = 200  # events acknowledged when the files are deleted


class Ok(Accepting):
    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        await self.accept(request.headers["webhook-id"])
        return web.Response(text="ok")


async def post(http: aiohttp.ClientSession, daemon: Daemon, n: int) -> tuple[int, Any]:
    body = {"type": "sale.completed", "data": {"n": n}}
    async with http.post(f"{daemon.url}/v1/events", json=body, headers=daemon.headers()) as response:
        return response.status, await response.json(content_type=None)


async def test_a_database_deleted_under_load_is_refused_and_rescued_with_every_acknowledged_event(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    behaviour = Ok()
    receiver = await receivers(behaviour=behaviour)
    config = write_config(tmp_path / "tillhook.toml", [{"name": "shop", "url": receiver.url}])
    daemon = await daemons(config).start()
    db = tmp_path / "tillhook.db"
    acked: list[str] = []
    refusals: list[Any] = []
    enough, lost = asyncio.Event(), asyncio.Event()
    sent = 0

    async def poster() -> None:
        nonlocal sent
        while sent < MAX_EVENTS:
            sent += 1
            code, body = await post(http, daemon, sent)
            if code == 202:
                acked.append(body["id"])
                if len(acked) >= DELETE_AFTER:
                    enough.set()
                continue
            refusals.append((code, body))
            if lost.is_set():
                return  # refused after the loss was logged: this poster is done

    load = [asyncio.create_task(poster()) for _ in range(POSTERS)]
    await asyncio.wait_for(enough.wait(), 60)
    for name in ("tillhook.db", "tillhook.db-wal", "tillhook.db-shm"):
        (tmp_path / name).unlink()
    acked_before_delete = len(acked)
    entry = await daemon.wait_log("database_lost", 30)
    lost.set()
    await asyncio.wait_for(asyncio.gather(*load), 60)
    assert sent < MAX_EVENTS, "the daemon never refused an event"
    # Some were acknowledged after the files were gone (before it noticed): the hard part.
    assert len(acked) > acked_before_delete, "the load stopped before the deletion took effect"

    # Every refusal says what happened and what to do, and stored nothing.
    assert refusals and all(code == 503 for code, _ in refusals), refusals[:3]
    rescue = Path(entry["rescue"])
    assert entry["path"] == str(db) and entry["change"] == "deleted"
    code, problem = await post(http, daemon, -1)
    assert code == 503 and problem["type"] == "urn:tillhook:problem:storage-unavailable"
    assert "nothing was stored" in problem["detail"] and f"{db} was deleted" in problem["detail"]
    assert str(rescue) in problem["detail"] and "stop tillhook" in problem["detail"]
    async with http.get(f"{daemon.url}/healthz") as response:
        assert response.status == 503
        assert f"{db} was deleted" in (await response.json(content_type=None))["detail"]
    assert [e for e in daemon.log if e.get("event") == "database_lost"] == [entry]
    assert not db.exists()  # the refusing daemon made no new, empty database

    # The rescue file holds every event that got a 202, and only those.
    assert stat.S_IMODE(rescue.stat().st_mode) == 0o600
    with sqlite3.connect(f"file:{rescue}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute("SELECT id FROM events")}
    conn.close()
    assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged events are not in the rescue"
    assert len(stored) == len(acked) == entry["events"]

    # Still running and refusing until stopped; then the README's steps: the rescue becomes
    # the database and the deliveries still pending go out.
    assert daemon.process is not None and daemon.process.returncode is None
    assert await daemon.terminate() == 0
    for name in ("tillhook.db-wal", "tillhook.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    rescue.rename(db)
    restarted = await daemons(config).start()
    await behaviour.wait_for_all(set(acked), 60)
    assert await restarted.terminate() == 0
