"""Alerts from the real daemon: a receiver failing into back-off is announced to the endpoint
that subscribes to `tillhook.**`, and so is its recovery; an endpoint on ["*"] gets neither."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import ADMIN_TOKEN, Daemon, write_config
from tests.support import Receiver, json_of, ok, status
from tillhook.redact import origin
from tillhook.rules import new_secret

FAILING = "tillhook.endpoint.failing"
RECOVERED = "tillhook.endpoint.recovered"


def alert_types(receiver: Receiver) -> list[str]:
    return [t for t in (json_of(r)["type"] for r in receiver.received) if t.startswith("tillhook.")]


async def admin_get(http: aiohttp.ClientSession, daemon: Daemon, path: str) -> Any:
    async with http.get(f"{daemon.url}{path}", headers=daemon.headers(ADMIN_TOKEN)) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_back_off_and_recovery_reach_the_alert_endpoint_and_not_the_others(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    secrets = {name: new_secret() for name in ("crm", "watch", "everything")}
    crm = await receivers(secret=secrets["crm"], behaviour=status(500))
    watch = await receivers(secret=secrets["watch"])
    everything = await receivers(secret=secrets["everything"])
    config = write_config(
        tmp_path / "tillhook.toml",
        [
            {"name": "crm", "url": crm.url, "secret": secrets["crm"], "events": ["sale.*", "tillhook.**"]},
            {"name": "watch", "url": watch.url, "secret": secrets["watch"], "events": ["tillhook.**"]},
            {"name": "everything", "url": everything.url, "secret": secrets["everything"], "events": ["*"]},
        ],
    )
    daemon = await daemons(config).start()
    body = [{"type": "sale.completed", "data": {"n": i}} for i in range(6)]
    async with http.post(f"{daemon.url}/v1/events", json=body, headers=daemon.headers()) as response:
        assert response.status == 202, await response.text()

    # Five failures in a row (the retry schedule is 200 ms, 500 ms, 1 s) start the back-off.
    await watch.wait_for(lambda got: FAILING in alert_types(watch))
    failing = next(json_of(r) for r in watch.received if json_of(r)["type"] == FAILING)
    assert failing["data"]["endpoint"]["name"] == "crm"
    assert failing["data"]["summary"].startswith("Endpoint crm is failing: ")
    assert failing["data"]["check"] == f"Is {origin(crm.url)} up? Last error: HTTP 500"
    assert "/hook" not in json.dumps(failing)  # an alert says where an endpoint goes, never its path
    assert all(r.verified for r in watch.received)  # signed with watch's secret, as any delivery

    crm.behaviour = ok
    await watch.wait_for(lambda got: RECOVERED in alert_types(watch))
    assert alert_types(watch) == [FAILING, RECOVERED]
    recovered = next(json_of(r) for r in watch.received if json_of(r)["type"] == RECOVERED)
    assert recovered["data"]["endpoint"]["name"] == "crm"
    await crm.wait_for(
        lambda got: {json_of(r)["data"]["n"] for r in got if json_of(r)["type"] == "sale.completed"} == set(range(6))
    )
    await everything.wait_count(6)

    # Each alert was delivered to watch alone: not to crm, which it is about, nor to ["*"].
    for alert in (failing, recovered):
        event = await admin_get(http, daemon, f"/v1/events/{alert['id']}")
        assert [d["endpoint"] for d in event["deliveries"]] == ["watch"]
    assert alert_types(crm) == [] and alert_types(everything) == []
    assert await daemon.wait_log("alert_emitted")
    assert await daemon.terminate() == 0
