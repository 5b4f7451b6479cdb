"""`tillhook status|endpoints|deliveries|events` as a user runs them, against the real daemon."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Self

import aiohttp
from aiohttp import web

from tests.acceptance.conftest import ADMIN_TOKEN, Accepting, write_config


class Ok(Accepting):
    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        await self.accept(request.headers["webhook-id"])
        return web.Response(text="ok")


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tillhook",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
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
    # The admin token comes from the config file; the address from the flag (the config says port 0).
    base = ("--config", str(config), "--daemon", daemon.url)

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
    code, _, err = await run_cli("status", "--daemon", "http://127.0.0.1:9", "--token", ADMIN_TOKEN)
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


class Recorder:
    """A loopback HTTP server that answers every method and path with 200 and keeps each
    request's method, path and headers: it shows where a command sent what."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        async with self._changed:
            self.requests.append((request.method, request.path, dict(request.headers)))
            self._changed.notify_all()
        return web.Response(text="ok")

    async def wait_count(self, n: int, timeout_s: float = 30.0) -> None:
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.requests) >= n)

        await asyncio.wait_for(until(), timeout_s)


async def test_url_is_the_endpoints_url_and_the_token_goes_only_to_the_daemon(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    first = await receivers()
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    base = ("--config", str(config), "--daemon", daemon.url)
    code, _, err = await run_cli("endpoints", "add", "shop", first.url, *base)
    assert code == 0, err

    async with Recorder() as recorder:
        code, out, err = await run_cli(
            "endpoints", "update", "shop", "--url", recorder.url, "--events", "sale.*", *base
        )
        async with http.post(
            f"{daemon.url}/v1/events", json={"type": "sale.completed", "data": {"total": 9}}, headers=daemon.headers()
        ) as response:
            assert response.status == 202
        await recorder.wait_count(1)
        # The only request the new URL got is the delivery: no admin call, no token.
        assert [(method, path) for method, path, _ in recorder.requests] == [("POST", "/hook")]
        assert all(ADMIN_TOKEN not in value for _, _, headers in recorder.requests for value in headers.values())
        assert "authorization" not in {k.lower() for _, _, headers in recorder.requests for k in headers}
    assert code == 0, err
    assert any(line.split() == ["url", recorder.url] for line in out.splitlines())
    assert first.received == []

    # The old spelling still works; `add` takes the URL as --url too.
    code, _, err = await run_cli("endpoints", "update", "shop", "--endpoint-url", first.url, *base)
    assert code == 0, err
    code, out, err = await run_cli("endpoints", "add", "till", "--url", first.url, "--json", *base)
    assert code == 0 and json.loads(out)["url"] == first.url, err
    for name in ("shop", "till"):
        code, out, _ = await run_cli("endpoints", "show", name, "--json", *base)
        assert json.loads(out)["url"] == first.url

    # --url where it names no endpoint is a usage error, in one sentence pointing to --daemon.
    code, _, err = await run_cli("status", "--url", daemon.url, "--config", str(config))
    assert code == 2 and "--daemon" in err and len(err.strip().splitlines()) == 1
    code, _, err = await run_cli("endpoints", "add", "nourl", *base)
    assert code == 2 and "URL" in err and len(err.strip().splitlines()) == 1
    code, _, err = await run_cli("endpoints", "update", "shop", *base)
    assert code == 2 and "nothing to change" in err
    code, _, err = await run_cli("status", "--daemon", daemon.url.removeprefix("http://"), "--config", str(config))
    assert code == 2 and "not an address" in err and "Traceback" not in err


async def test_rate_limit_off_and_max_in_flight_default(tmp_path: Path, receivers: Any, daemons: Any) -> None:
    receiver = await receivers()
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    base = ("--config", str(config), "--daemon", daemon.url, "--json")
    code, out, err = await run_cli(
        "endpoints", "add", "shop", receiver.url, "--rate-limit", "5", "--max-in-flight", "2", *base
    )
    assert code == 0, err
    assert (json.loads(out)["rate_limit"], json.loads(out)["max_in_flight"]) == (5.0, 2)
    code, out, err = await run_cli(
        "endpoints", "update", "shop", "--rate-limit", "off", "--max-in-flight", "default", *base
    )
    assert code == 0, err
    code, out, err = await run_cli("endpoints", "show", "shop", *base)
    assert (json.loads(out)["rate_limit"], json.loads(out)["max_in_flight"]) == (None, None)
    code, _, err = await run_cli("endpoints", "update", "shop", "--rate-limit", "fast", *base)
    assert code == 2 and "off" in err and len(err.strip().splitlines()) == 1


async def test_endpoints_secret_reads_a_config_managed_endpoints_generated_secret(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    behaviour = Ok()
    receiver = await receivers(behaviour=behaviour)
    config = write_config(tmp_path / "tillhook.toml", [{"name": "loyalty", "url": receiver.url, "events": ["sale.*"]}])
    daemon = await daemons(config).start()
    base = ("--config", str(config), "--daemon", daemon.url)
    code, out, err = await run_cli("endpoints", "secret", "loyalty", *base)
    assert code == 0, err
    secret = next(line.split()[1] for line in out.splitlines() if line.startswith("secret:"))
    assert secret.startswith("whsec_") and "previous" not in out
    receiver.secret = secret
    async with http.post(
        f"{daemon.url}/v1/events", json={"type": "sale.completed", "data": {"total": 9}}, headers=daemon.headers()
    ) as response:
        event_id = (await response.json())["id"]
    await behaviour.wait_for_all({event_id}, timeout_s=30)
    assert receiver.received[0].verified

    code, _, err = await run_cli("endpoints", "rotate-secret", "loyalty", "--grace", "1h", *base)
    assert code == 0, err
    code, out, err = await run_cli("endpoints", "secret", "loyalty", "--json", *base)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["name"] == "loyalty" and shown["secret"] != secret
    assert [p["secret"] for p in shown["previous"]] == [secret]
    code, out, _ = await run_cli("endpoints", "secret", "loyalty", *base)
    assert f"previous: {secret} (still signs until" in out
    assert secret not in daemon.log_text() and shown["secret"] not in json.dumps(daemon.log)


async def test_daemon_on_a_unix_socket(tmp_path: Path, daemons: Any) -> None:
    socket = tmp_path / "tillhook.sock"
    config = write_config(tmp_path / "tillhook.toml", [], server={"listen": f"unix:{socket}"})
    await daemons(config).start()
    # From the config's listen address, and named with --daemon.
    for args in (("--config", str(config)), ("--daemon", f"unix:{socket}", "--token", ADMIN_TOKEN)):
        code, out, err = await run_cli("status", "--json", *args)
        assert code == 0 and json.loads(out)["backlog"] == 0, err
    code, out, err = await run_cli(
        "send", "sale.completed", '{"total": 1}', "--daemon", f"unix:{socket}", "--config", str(config)
    )
    assert code == 0 and json.loads(out)["type"] == "sale.completed", err
