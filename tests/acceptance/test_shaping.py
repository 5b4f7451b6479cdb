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
from tests.support import Receiver, ok, status

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
    config = write_config(
        tmp_path / "tillhook.toml",
        [
            {
                "name": "big-sales",
                "url": big.url,
                "secret": SECRET,
                "events": ["transaction.*"],
                "filter": "data.amount >= 100.0",
            },
            {
                "name": "crm",
                "url": crm.url,
                "secret": SECRET,
                "events": ["transaction.completed"],
                "transform": (
                    '{"text": "Sale: " + string(data.amount) + " " + data.currency, "customer": data.customer_id}'
                ),
            },
            {
                "name": "aura",
                "url": aura.url,
                "secret": SECRET,
                "events": ["transaction.completed"],
                "extra_signature": {"header": "x-aura-signature"},
            },
        ],
    )
    daemon = await daemons(config).start()
    sales = [
        {"type": "transaction.completed", "data": {"amount": a, "currency": "EUR", "customer_id": f"c_{a}"}}
        for a in (50, 99.5, 100, 150.25)
    ]
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


def slack_text(body: bytes) -> str:
    """What a person reads in Slack: the blocks' texts, checked against the shape Slack takes."""
    message = json.loads(body)
    assert isinstance(message["text"], str) and message["text"]
    texts = [message["text"]]
    for block in message["blocks"]:
        assert block["type"] in ("header", "section", "context")
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [f["text"] for f in block.get("fields", []) + block.get("elements", [])]
    return "\n".join(texts)


async def test_a_slack_preset_gets_a_readable_sale_and_the_alerts_of_another_endpoint(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    slack: Receiver = await receivers(secret=SECRET)
    crm: Receiver = await receivers(secret=SECRET, behaviour=status(500))
    everything: Receiver = await receivers(secret=SECRET)
    config = write_config(
        tmp_path / "tillhook.toml",
        [
            {
                "name": "shop-slack",
                "url": slack.url,
                "secret": SECRET,
                "preset": "slack",
                "events": ["transaction.completed", "tillhook.**"],
            },
            {"name": "crm", "url": crm.url, "secret": SECRET, "events": ["transaction.completed"]},
            {"name": "everything", "url": everything.url, "secret": SECRET, "events": ["*"]},
        ],
    )
    daemon = await daemons(config).start()
    (sale,) = await post(
        http,
        daemon,
        [{"type": "transaction.completed", "data": {"amount": 55.39, "currency": "EUR", "customer_id": "c_1"}}],
    )
    await slack.wait_count(1)
    first = slack.received[0]
    assert first.headers["webhook-id"] == sale["id"]
    Webhook(SECRET).verify(first.body, first.headers)
    text = slack_text(first.body)
    assert "Transaction completed" in text and "55.39" in text and "EUR" in text and "c_1" in text
    assert "2026" in text or "<!date^" in text  # the time, in each reader's own zone

    # crm answers 500 until it fails into back-off: the Slack channel hears of it, in words.
    def said(words: str) -> bool:
        return any(words in slack_text(r.body) for r in slack.received[1:])

    await slack.wait_for(lambda got: said("Endpoint crm is failing"), timeout_s=30)
    crm.behaviour = ok
    await slack.wait_for(lambda got: said("Endpoint recovered"), timeout_s=30)
    assert all(r.verified for r in slack.received)
    types = [json.loads(r.body)["type"] for r in everything.received]
    assert types == ["transaction.completed"]  # ["*"] never gets an alert
    assert await daemon.terminate() == 0


async def test_a_runaway_or_huge_transform_is_stopped_and_everyone_else_is_served(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    """A comprehension that would run for hours, and a body of 1.2 MB: each attempt is
    stopped by its bound and recorded as a failed attempt, in words, while a plain endpoint
    and a transformed one beside them get every event."""
    plain: Receiver = await receivers(secret=SECRET)
    runaway: Receiver = await receivers(secret=SECRET)
    huge: Receiver = await receivers(secret=SECRET)
    fine: Receiver = await receivers(secret=SECRET)
    config = write_config(
        tmp_path / "tillhook.toml",
        [
            {"name": "plain", "url": plain.url, "secret": SECRET},
            {
                "name": "runaway",
                "url": runaway.url,
                "secret": SECRET,
                "transform": "lists.range(100000).map(x, lists.range(100000).map(y, x * y))",
            },
            {
                "name": "huge",
                "url": huge.url,
                "secret": SECRET,
                "transform": '{"text": data.s + data.s + data.s + data.s + data.s + data.s}',
            },
            {"name": "fine", "url": fine.url, "secret": SECRET, "transform": '{"n": data.n}'},
        ],
        delivery={"retry_schedule": ["1h"]},
    )
    daemon = await daemons(config).start()
    events = [{"type": "sale.completed", "data": {"n": i, "s": "x" * 200_000}} for i in range(5)]
    for event in events:  # one request each: a batch of them would pass the body limit
        await post(http, daemon, [event])
    await plain.wait_count(5)
    await fine.wait_count(5, timeout_s=30)
    assert sorted(json.loads(r.body)["n"] for r in fine.received) == list(range(5))
    assert runaway.received == [] and huge.received == []

    async def all_attempted(name: str) -> list[str]:
        """The errors of its first 5 attempts, as the daemon logs each outcome, in order."""
        errors: list[str] = []
        since = 0
        while len(errors) < 5:
            entry = await daemon.wait_log("delivery_retry_scheduled", timeout_s=30, since=since)
            since = daemon.log.index(entry, since) + 1
            if entry["endpoint"] == name:
                errors.append(entry["error"])
        return errors

    stopped = await all_attempted("runaway")
    assert any("stopped after 250 ms, its time bound" in e for e in stopped), stopped
    # The attempts queued behind the first stop are not evaluated again for a while.
    assert all("time bound" in e for e in stopped), stopped
    assert any(e.startswith("not evaluated: at an earlier attempt") for e in stopped), stopped
    too_big = await all_attempted("huge")
    assert all("body would be 1.1 MiB" in e and "over its 1 MiB bound" in e for e in too_big), too_big
    assert await daemon.terminate() == 0
