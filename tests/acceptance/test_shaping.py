"""Filters, transforms, chat presets and the extra signature with the real daemon: what the
receivers get is checked on the bytes they received, signatures with the independent
`standardwebhooks` package and a receiver that knows only `sha256=<hex>`."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from tests.acceptance.conftest import ADMIN_TOKEN, Daemon, write_config
from tests.support import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def post(http: aiohttp.ClientSession, daemon: Daemon, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async with http.post(f"{daemon.url}/v1/events", json=events, headers=daemon.headers()) as response:
        assert response.status == 202, await response.text()
        return list(await response.json())


async def admin(http: aiohttp.ClientSession, daemon: Daemon, method: str, path: str) -> Any:
    async with http.request(method, f"{daemon.url}{path}", headers=daemon.headers(ADMIN_TOKEN)) as response:
        assert response.status == 200, await response.text()
        return await response.json()


class HexOnly:
    """A receiver written for `sha256=<hex HMAC of the body>` alone, as AuraPOS's docs show:
    it refuses anything whose header does not match."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.verified: list[bytes] = []

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        body = await request.read()
        algo, _, got = request.headers.get("x-aura-signature", "").partition("=")
        expected = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if algo != "sha256" or not hmac.compare_digest(got, expected):
            return web.Response(status=401, text="bad signature")
        self.verified.append(body)
        return web.Response(text="ok")


async def test_filter_transform_and_extra_signature_with_the_real_daemon(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    big: Receiver = await receivers(secret=SECRET)
    crm: Receiver = await receivers(secret=SECRET)
    hex_only = HexOnly(SECRET)
    aura: Receiver = await receivers(behaviour=hex_only)
    config = write_config(tmp_path / "tillhook.toml", [
        {"name": "big-sales", "url": big.url, "secret": SECRET, "events": ["transaction.*"],
         "filter": "data.amount >= 100.0"},
        {"name": "crm", "url": crm.url, "secret": SECRET, "events": ["transaction.completed"],
         "transform": '{"text": "Sale: " + string(data.amount) + " " + data.currency, "customer": data.customer_id}'},
        {"name": "aura", "url": aura.url, "secret": SECRET, "events": ["transaction.completed"],
         "extra_signature": {"header": "x-aura-signature"}},
    ])
    daemon = await daemons(config).start()
    sales = [{"type": "transaction.completed", "data": {"amount": a, "currency": "EUR", "customer_id": f"c_{a}"}}
             for a in (50, 99.5, 100, 150.25)]
    replies = await post(http, daemon, sales)
    assert [r["deliveries"] for r in replies] == [2, 2, 3, 3]

    await big.wait_count(2)
    await crm.wait_count(4)
    await aura.wait_count(4)
    assert sorted(json.loads(r.body)["data"]["amount"] for r in big.received) == [100, 150.25]
    assert all(r.verified for r in big.received)

    by_id = {r.headers["webhook-id"]: r for r in crm.received}
    for reply, sale in zip(replies, sales, strict=True):
        got = by_id[reply["id"]]
        data = sale["data"]
        assert json.loads(got.body) == {"text": f"Sale: {data['amount']:g} EUR", "customer": data["customer_id"]}
        Webhook(SECRET).verify(got.body, got.headers)  # on the exact bytes received
    assert len(hex_only.verified) == 4

    event = await admin(http, daemon, "GET", f"/v1/events/{replies[0]['id']}")
    assert [f["endpoint"] for f in event["filtered_out"]] == ["big-sales"]
    crm_delivery = next(d for d in event["deliveries"] if d["endpoint"] == "crm")
    detail = await admin(http, daemon, "GET", f"/v1/deliveries/{crm_delivery['id']}")
    assert detail["attempt_log"][-1]["body_sent"] == by_id[replies[0]["id"]].body.decode()
    code = await daemon.terminate()
    assert code == 0
