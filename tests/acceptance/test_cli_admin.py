"""`tillhook status|endpoints|deliveries` as a user runs them, against the real daemon."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.acceptance.conftest import ADMIN_TOKEN, Accepting, write_config


class Ok(Accepting):
    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        await self.accept(request.headers["webhook-id"])
        return web.Response(text="ok")


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tillhook", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_day_at_the_shop_from_the_terminal(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    behaviour = Ok()
    receiver = await receivers(behaviour=behaviour)
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    # The admin token comes from the config file; the URL from the flag (the config says port 0).
    base = ("--config", str(config), "--url", daemon.url)

    async def cli(*args: str) -> str:
        code, out, err = await run_cli(*args, *base)
        assert code == 0, f"{args}: {err}"
        assert "Traceback" not in err
        return out

    out = await cli("endpoints", "add", "shop", receiver.url, "--events", "sale.*", "--header", "x-till=3")
    secret = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("secret: "))
    receiver.secret = secret
    assert "shop" in await cli("endpoints", "list")
    shown = json.loads(await cli("endpoints", "show", "shop", "--json"))
    assert shown["events"] == ["sale.*"] and shown["headers"] == {"x-till": "3"} and "secret" not in shown

    async with http.post(
        f"{daemon.url}/v1/events", json={"type": "sale.completed", "data": {"total": 9}}, headers=daemon.headers()
    ) as response:
        event_id = (await response.json())["id"]
    await behaviour.wait_for_all({event_id}, timeout_s=30)
    assert receiver.received[0].verified  # signed with the secret the CLI printed

    listing = json.loads(await cli("deliveries", "list", "--json", "--endpoint", "shop"))
    (delivery,) = listing["data"]
    assert delivery["event_id"] == event_id
    detail = await cli("deliveries", "show", str(delivery["id"]))
    assert "attempts" in detail and "200" in detail
    table = await cli("deliveries", "list", "--state", "delivered")
    assert table.splitlines()[0].split()[:3] == ["ID", "STATE", "ENDPOINT"] and "sale.completed" in table

    ping = json.loads(await cli("endpoints", "test", "shop", "--json"))
    await behaviour.wait_for_all({event_id, ping["event_id"]}, timeout_s=30)
    # The ping is not a sale.* event, so only the sale goes again.
    assert "1 delivery queued" in await cli("endpoints", "replay", "shop", "--since", "1h", "--all")
    assert "pending" in await cli("deliveries", "retry", str(delivery["id"]))
    rotated = await cli("endpoints", "rotate-secret", "shop", "--grace", "1h")
    assert "secret: whsec_" in rotated and secret not in rotated
    assert "disabled" in await cli("endpoints", "disable", "shop")
    assert "healthy" in await cli("endpoints", "enable", "shop")
    updated = await cli("endpoints", "update", "shop", "--max-in-flight", "2")
    assert any(line.split() == ["max_in_flight", "2"] for line in updated.splitlines())
    status = await cli("status")
    assert "shop" in status and "backlog" in status
    assert "deleted" in await cli("endpoints", "remove", "shop")

    # Mistakes are one clear sentence and exit 2; an unreachable daemon exits 1.
    code, _, err = await run_cli("endpoints", "show", "nope", *base)
    assert code == 2 and "no endpoint" in err and "Traceback" not in err
    code, _, err = await run_cli("endpoints", "add", "bad name", "ftp://x", *base)
    assert code == 2 and "name" in err and "url" in err
    code, _, err = await run_cli("status", "--url", "http://127.0.0.1:9", "--token", ADMIN_TOKEN)
    assert code == 1 and "cannot reach" in err


async def test_url_and_token_from_the_environment(tmp_path: Path, daemons: Any) -> None:
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    env = {"TILLHOOK_URL": daemon.url, "TILLHOOK_ADMIN_TOKEN": ADMIN_TOKEN}
    code, out, err = await run_cli("status", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["backlog"] == 0
    code, _, err = await run_cli("status", env={**env, "TILLHOOK_ADMIN_TOKEN": "wrong"})
    assert code == 1 and "401" in err
