"""Disabled by an admin, by a 410, or taken out of the config file, with events posted
meanwhile, then on again: every event arrives, signed, in order. With the real daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.acceptance.conftest import ADMIN_TOKEN, Accepting, Daemon, write_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Scripted(Accepting):
    """Answers each attempt with the next status of `script`, then 200; keeps every id that
    arrived, in order, refused or not."""

    def __init__(self, *script: int) -> None:
        super().__init__()
        self.script = list(script)
        self.arrived: list[str] = []

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        event_id = request.headers["webhook-id"]
        self.arrived.append(event_id)
        if self.script:
            return web.Response(status=self.script.pop(0), text="not now")
        await self.accept(event_id)
        return web.Response(text="ok")


async def post(http: aiohttp.ClientSession, daemon: Daemon, n: int, event_type: str = "sale.completed") -> list[str]:
    body = [{"type": event_type, "data": {"n": i}} for i in range(n)]
    async with http.post(f"{daemon.url}/v1/events", json=body, headers=daemon.headers()) as response:
        assert response.status == 202, await response.text()
        replies = await response.json()
    return [r["id"] for r in replies if r["deliveries"] == 1]


async def admin(http: aiohttp.ClientSession, daemon: Daemon, method: str, path: str, **params: str) -> Any:
    async with http.request(
        method, f"{daemon.url}{path}", headers=daemon.headers(ADMIN_TOKEN), params=params
    ) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def endpoint_status(http: aiohttp.ClientSession, daemon: Daemon) -> dict[str, Any]:
    (shown,) = (await admin(http, daemon, "GET", "/v1/status"))["endpoints"]
    return shown


async def held_log(http: aiohttp.ClientSession, daemon: Daemon) -> list[tuple[str, int, str | None]]:
    page = await admin(http, daemon, "GET", "/v1/deliveries", endpoint="loyalty", state="pending")
    return [(d["event_id"], d["attempts"], d["held_reason"]) for d in reversed(page["data"])]


def config_with(tmp_path: Path, receiver_url: str | None) -> Path:
    endpoints = (
        [] if receiver_url is None else [{"name": "loyalty", "url": receiver_url, "secret": SECRET, "max_in_flight": 1}]
    )
    return write_config(tmp_path / "tillhook.toml", endpoints, delivery={"retry_schedule": ["1h"]})


async def test_admin_disable_then_enable_delivers_every_event(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    behaviour = Scripted()
    receiver = await receivers(secret=SECRET, behaviour=behaviour)
    daemon = await daemons(config_with(tmp_path, receiver.url)).start()
    first = await post(http, daemon, 1)
    await behaviour.wait_for_all(set(first), timeout_s=30)

    await admin(http, daemon, "POST", "/v1/endpoints/loyalty/disable")
    held = await post(http, daemon, 5)
    assert len(held) == 5  # a delivery for every event, disabled or not
    reason = "endpoint loyalty is disabled: disabled through the admin API"
    assert await held_log(http, daemon) == [(event_id, 0, reason) for event_id in held]
    shown = await endpoint_status(http, daemon)
    assert shown["state"] == "disabled" and shown["held"] == 5

    await admin(http, daemon, "POST", "/v1/endpoints/loyalty/enable")
    await behaviour.wait_for_all(set(held), timeout_s=30)
    assert behaviour.arrived == [*first, *held]
    assert all(r.verified for r in receiver.received)
    assert (await endpoint_status(http, daemon))["held"] == 0


async def test_a_410_then_enable_delivers_every_event_including_the_one_refused(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    behaviour = Scripted(410)
    receiver = await receivers(secret=SECRET, behaviour=behaviour)
    daemon = await daemons(config_with(tmp_path, receiver.url)).start()
    gone = await post(http, daemon, 1)
    await daemon.wait_log("endpoint_gone")
    later = await post(http, daemon, 3)
    assert len(later) == 3
    reason = "endpoint loyalty is disabled: the receiver answered 410 Gone at attempt 1"
    assert await held_log(http, daemon) == [(gone[0], 1, reason)] + [(e, 0, reason) for e in later]
    shown = await endpoint_status(http, daemon)
    assert shown["state"] == "disabled" and shown["held"] == 4

    await admin(http, daemon, "POST", "/v1/endpoints/loyalty/enable")
    await behaviour.wait_for_all({*gone, *later}, timeout_s=30)
    assert behaviour.arrived == [*gone, *gone, *later]
    assert behaviour.accepted == [*gone, *later]
    assert all(r.verified for r in receiver.received)


async def test_out_of_the_config_file_and_back_delivers_what_it_held(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    behaviour = Scripted(500, 500)  # both fail once; the retry is an hour away
    receiver = await receivers(secret=SECRET, behaviour=behaviour)
    daemon = await daemons(config_with(tmp_path, receiver.url)).start()
    waiting = await post(http, daemon, 2)
    await receiver.wait_count(2)
    mark = len(daemon.log)
    assert await daemon.terminate() == 0

    config_with(tmp_path, None)
    await daemon.start()
    removed = await daemon.wait_log("endpoint_removed_from_config", since=mark)
    assert removed["endpoint"] == "loyalty"
    assert await post(http, daemon, 2) == []  # out of the file: no new deliveries
    shown = await endpoint_status(http, daemon)
    assert shown["state"] == "disabled" and shown["disabled_reason"] == "removed from the config file"
    assert shown["held"] == 2
    reason = "endpoint loyalty is disabled: removed from the config file"
    assert await held_log(http, daemon) == [(e, 1, reason) for e in waiting]
    mark = len(daemon.log)
    assert await daemon.terminate() == 0

    config_with(tmp_path, receiver.url)
    await daemon.start()
    restored = await daemon.wait_log("endpoint_restored_from_config", since=mark)
    assert restored["endpoint"] == "loyalty" and restored["level"] == "info" and restored["released"] == 2
    await behaviour.wait_for_all(set(waiting), timeout_s=30)  # at once, not an hour later
    assert behaviour.arrived == [*waiting, *waiting]
    assert all(r.verified for r in receiver.received)
    endpoint = await admin(http, daemon, "GET", "/v1/endpoints/loyalty")
    assert endpoint["enabled"] and endpoint["config_managed"] and endpoint["state"] == "healthy"
    assert len(await post(http, daemon, 1)) == 1  # subscribed again
