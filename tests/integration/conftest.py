"""The daemon as an in-process app on a real loopback port, with a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support import FakeClock
from tillhook.api.state import SERVICES, Services
from tillhook.app import build_app
from tillhook.config import Config, validate_config
from tillhook.dispatcher import Dispatcher
from tillhook.gates import EndpointGates, GateView

INGEST_TOKEN = "ingest-token-for-tests-0001"
ADMIN_TOKEN = "admin-token-for-tests-00001"
VIEWER_TOKEN = "viewer-token-for-tests-0001"


async def api(h: Harness, method: str, path: str, body: Any = None, token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    """One admin API call through the harness with `token`: (status, the JSON body or None)."""
    async with h.session.request(
        method, h.server.make_url(path), json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


def make_config(tmp_path: Path, endpoints: list[dict[str, Any]], **sections: dict[str, Any]) -> Config:
    raw: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:0", "shutdown_grace": "2s"},
        "auth": {"ingest_token": INGEST_TOKEN, "admin_token": ADMIN_TOKEN, "viewer_token": VIEWER_TOKEN},
        "storage": {"path": str(tmp_path / "tillhook.db")},
        "delivery": {
            "allow_http": True,
            "allow_networks": ["127.0.0.0/8"],
            "timeout": "2s",
            "retry_schedule": ["10s", "1m", "5m"],
        },
        "endpoints": endpoints,
    }
    if "url" in sections.get("storage", {}):
        del raw["storage"]["path"]  # a PostgreSQL outbox: the SQLite file cannot go with it
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return validate_config(raw, "test config")


@dataclass
class Harness:
    app: web.Application
    server: TestServer
    session: aiohttp.ClientSession
    clock: FakeClock | None

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    @property
    def dispatcher(self) -> Dispatcher:
        return self.services.dispatcher

    @property
    def gates(self) -> EndpointGates:
        return self.services.gates

    def gate(self, name: str) -> GateView:
        """The named endpoint's gate now, as the API sees it."""
        return self.gates.view(self.endpoint_id(name), self.services.clock.now())

    def endpoint_id(self, name: str) -> str:
        return next(e.id for e in self.services.registry.all() if e.name == name)

    async def post_events(
        self,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = INGEST_TOKEN,
        headers: dict[str, str] | None = None,
        path: str = "/v1/events",
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        sent = {"Content-Type": "application/json"}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        data = raw if raw is not None else json.dumps(body).encode()
        async with self.session.post(self.server.make_url(path), data=data, headers=sent) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None), response

    async def step(self, advance_s: float = 0.0) -> int:
        """Move the fake clock, claim what is due, and wait for those attempts to be recorded;
        returns how many attempts started, counting those claimed along with an outcome."""
        assert self.clock is not None, "step() needs a harness built with a FakeClock"
        self.clock.advance(advance_s)
        before = self.dispatcher.launched
        await self.dispatcher.run_once()
        await self.dispatcher.wait_idle()
        return self.dispatcher.launched - before


@pytest.fixture
async def make_harness() -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    made: list[Harness] = []

    async def make(config: Config, *, clock: FakeClock | None = None, run_dispatcher: bool | None = None) -> Harness:
        run = clock is None if run_dispatcher is None else run_dispatcher
        app = build_app(config, clock=clock, run_dispatcher=run)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        harness = Harness(app, server, aiohttp.ClientSession(), clock)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.session.close()
        await harness.server.close()
