"""1,000 events across three endpoints, one of them down for a while: every endpoint gets
every event it subscribes to, signed, exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.acceptance.conftest import Accepting, Daemon, write_config
from tests.support import Receiver

SECRETS = {
    "everything": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "sales": "whsec_c2FsZXMtc2VjcmV0LWZvci10ZXN0cy0wMDAwMDE=",
    "customers": "whsec_Y3VzdG9tZXJzLXNlY3JldC1mb3ItdGVzdHMtMDE=",
}
PATTERNS = {"everything": ["*"], "sales": ["sale.*"], "customers": ["customer.*", "reward.redeemed"]}
TYPES = ["sale.completed", "sale.refunded", "customer.created", "reward.redeemed", "inventory.low"]
EVENTS = 1000
CLIENTS = 30


class Delivered(Accepting):
    """A receiver behaviour that answers 503 while `down`, else 200, and keeps what it accepted."""

    def __init__(self, down: bool = False) -> None:
        super().__init__()
        self.down = down
        self.refused = 0
        self.changed = asyncio.Event()

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        self.changed.set()
        if self.down:
            self.refused += 1
            return web.Response(status=503, text="maintenance")
        await self.accept(request.headers["webhook-id"])
        return web.Response(text="ok")


def matches(patterns: list[str], event_type: str) -> bool:
    def one(pattern: str) -> bool:
        if pattern == "*":
            return True
        want, have = pattern.split("."), event_type.split(".")
        return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))

    return any(one(p) for p in patterns)


async def post_all(http: aiohttp.ClientSession, daemon: Daemon) -> dict[str, str]:
    """Posts EVENTS events from CLIENTS concurrent clients, singles and batches of 10; returns id -> type."""

    def make(i: int) -> dict[str, Any]:
        return {"type": TYPES[i % len(TYPES)], "data": {"n": i, "amount": i * 1.5}}

    # A quarter in batches of 10, the rest one per request.
    bodies: list[Any] = [[make(i) for i in range(start, start + 10)] for start in range(0, EVENTS // 4, 10)]
    bodies += [make(i) for i in range(EVENTS // 4, EVENTS)]
    accepted: dict[str, str] = {}
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client() -> None:
        while not queue.empty():
            body = queue.get_nowait()
            async with http.post(f"{daemon.url}/v1/events", json=body, headers=daemon.headers()) as response:
                assert response.status == 202, await response.text()
                reply = await response.json()
            for item in reply if isinstance(reply, list) else [reply]:
                accepted[item["id"]] = item["type"]

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return accepted


async def test_thousand_events_three_endpoints_one_down_for_a_while(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    behaviours = {name: Delivered(down=(name == "customers")) for name in SECRETS}
    started: dict[str, Receiver] = {
        name: await receivers(secret=SECRETS[name], behaviour=behaviours[name]) for name in SECRETS
    }
    config = write_config(
        tmp_path / "tillhook.toml",
        [{"name": n, "url": started[n].url, "events": PATTERNS[n], "secret": SECRETS[n]} for n in SECRETS],
    )
    daemon = await daemons(config).start()

    accepted = await post_all(http, daemon)
    assert len(accepted) == EVENTS

    # The down endpoint has been tried (and is backing off); now it comes back.
    await asyncio.wait_for(behaviours["customers"].changed.wait(), 30)
    assert behaviours["customers"].refused > 0
    behaviours["customers"].down = False

    expected = {name: {i for i, t in accepted.items() if matches(PATTERNS[name], t)} for name in SECRETS}
    for name in started:
        await behaviours[name].wait_for_all(expected[name], timeout_s=60)

    for name, receiver in started.items():
        got = behaviours[name].accepted
        assert set(got) == expected[name], f"{name} got events it does not subscribe to"
        assert len(got) == len(set(got)), f"{name} got duplicates"
        # Every request that reached the receiver carried a valid Standard Webhooks signature.
        assert all(r.verified for r in receiver.received), f"{name} saw a bad signature"
    assert {len(v) for v in expected.values()} and all(expected.values())
    assert await daemon.terminate() == 0
