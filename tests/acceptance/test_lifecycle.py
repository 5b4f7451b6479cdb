"""Stopping with SIGTERM drains the attempt in flight; the terminal commands work against
the real daemon."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.acceptance.conftest import INGEST_TOKEN, Accepting, write_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def tillhook(*args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tillhook", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_sigterm_waits_for_the_attempt_in_flight_and_exits_0(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def hold(request: web.Request, n: int) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.Response(text="finally")

    receiver = await receivers(secret=SECRET, behaviour=hold)
    config = write_config(tmp_path / "tillhook.toml", [{"name": "pos", "url": receiver.url, "secret": SECRET}])
    daemon = await daemons(config).start()
    async with http.post(
        f"{daemon.url}/v1/events", json={"type": "sale.completed", "data": {}}, headers=daemon.headers()
    ) as response:
        assert response.status == 202
    await asyncio.wait_for(arrived.wait(), 30)

    assert daemon.process is not None
    daemon.process.terminate()
    await daemon.wait_log("serve_stopping")
    release.set()  # the receiver answers while the daemon is draining
    assert await daemon.wait_exit() == 0
    with sqlite3.connect(tmp_path / "tillhook.db") as conn:
        assert conn.execute("SELECT state, attempts FROM deliveries").fetchall() == [("delivered", 1)]


async def test_sigterm_right_after_start_is_a_clean_stop(tmp_path: Path, daemons: Any) -> None:
    # The handlers are in place before the daemon says it has started, so a service manager
    # that stops it at once gets a clean exit, not a kill by the default signal action.
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    assert await daemon.terminate() == 0
    await daemon.wait_log("serve_stopped")


async def test_tokens_are_generated_once_and_printed(tmp_path: Path, daemons: Any, http: aiohttp.ClientSession) -> None:
    config = write_config(tmp_path / "tillhook.toml", [], tokens=False)
    # Before the first start there are none yet, and `tokens` makes no database to hold some.
    code, out, err = await tillhook("tokens", "--config", str(config))
    assert code == 2 and "no tillhook database" in err and not (tmp_path / "tillhook.db").exists(), err
    daemon = await daemons(config).start()
    code, out, err = await tillhook("tokens", "--config", str(config))
    assert code == 0, err
    tokens = dict(line.split(":", 1) for line in out.splitlines())
    ingest, admin = tokens["ingest"].strip(), tokens["admin"].strip()
    assert ingest.startswith("ing_") and admin.startswith("adm_")
    # The daemon uses the same stored tokens.
    async with http.post(
        f"{daemon.url}/v1/events", json={"type": "a", "data": {}}, headers={"Authorization": f"Bearer {ingest}"}
    ) as response:
        assert response.status == 202
    async with http.get(f"{daemon.url}/v1/status", headers={"Authorization": f"Bearer {admin}"}) as response:
        assert response.status == 200
    assert (await tillhook("tokens", "--config", str(config)))[1] == out


async def test_send_posts_one_event(tmp_path: Path, receivers: Any, daemons: Any) -> None:
    class Ok(Accepting):
        async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
            await self.accept(request.headers["webhook-id"])
            return web.Response(text="ok")

    behaviour = Ok()
    receiver = await receivers(secret=SECRET, behaviour=behaviour)
    config = write_config(tmp_path / "tillhook.toml", [{"name": "pos", "url": receiver.url, "secret": SECRET}])
    daemon = await daemons(config).start()
    code, out, err = await tillhook(
        "send", "sale.completed", '{"total": 12.5}', "--daemon", daemon.url, "--token", INGEST_TOKEN, "--id", "pos-1"
    )
    assert code == 0, err
    import json

    reply = json.loads(out)
    assert reply["deliveries"] == 1 and reply["duplicate"] is False
    await behaviour.wait_for_all({reply["id"]}, timeout_s=30)
    body = json.loads(receiver.received[0].body)
    assert body["type"] == "sale.completed" and body["data"] == {"total": 12.5}

    code, out, err = await tillhook(
        "send", "sale.completed", "{not json", "--daemon", daemon.url, "--token", INGEST_TOKEN
    )
    assert code == 2 and "JSON" in err and "Traceback" not in err
    code, out, err = await tillhook("send", "sale.completed", "--daemon", daemon.url, "--token", "wrong")
    assert code == 1 and "401" in err
