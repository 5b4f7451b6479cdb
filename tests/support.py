"""Real parts for tests: a loopback HTTP receiver that verifies Standard Webhooks
signatures with the independent `standardwebhooks` package, and a steppable clock."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import ssl
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tillhook.store.port import DeliveryRow, LogFilter, Outbox

Behaviour = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


class FakeClock:
    """Starts at the real time (receivers check webhook-timestamp) and moves only when told."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._monotonic = 1000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    async def sleep(self, delay_s: float) -> None:
        self.advance(delay_s)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._monotonic += seconds


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]


async def ok(request: web.Request, n: int) -> web.StreamResponse:
    return web.Response(text="ok")


async def reset_connection(request: web.Request, n: int) -> web.StreamResponse:
    """Abort with an RST, as a crashing receiver or a middlebox would."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    raise asyncio.CancelledError  # aiohttp drops the request quietly once the transport is gone


def status(code: int, text: str = "", headers: dict[str, str] | None = None) -> Behaviour:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=code, text=text, headers=headers)

    return answer


@dataclass
class Receiver:
    """A real aiohttp server on 127.0.0.1. `behaviour(request, n)` answers the n-th request
    (1-based); every request is recorded and its signature checked with `secret`."""

    secret: str | None = None
    behaviour: Behaviour = ok
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # frees hanging handlers
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = False
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        self.received.append(Received(request.path, headers, body, verified, time.monotonic()))
        n = len(self.received)
        async with self._changed:
            self._changed.notify_all()
        return await self.behaviour(request, n)

    async def wait_for(self, predicate: Callable[[list[Received]], bool], timeout_s: float = 20.0) -> None:
        """Until predicate(received) holds; fails the test after timeout_s."""

        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.received))

        await asyncio.wait_for(until(), timeout_s)

    async def wait_count(self, n: int, timeout_s: float = 20.0) -> None:
        await self.wait_for(lambda got: len(got) >= n, timeout_s)

    def event_ids(self) -> list[str]:
        return [r.event_id for r in self.received]


def hang_until_released(receiver_release: asyncio.Event) -> Behaviour:
    async def hang(request: web.Request, n: int) -> web.StreamResponse:
        await receiver_release.wait()
        return web.Response(text="late")

    return hang


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by nobody a client trusts, made by openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def json_of(received: Received) -> Any:
    import json

    return json.loads(received.body)


class PeakInFlight:
    """A receiver behaviour answering 200 that keeps the most attempts the gates had in
    flight at once while requests arrived."""

    def __init__(self, gates: Any) -> None:
        self._gates = gates
        self.peak = 0

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        self.peak = max(self.peak, self._gates.in_flight)
        return web.Response()


async def on_writer(store: Any, fn: Callable[[sqlite3.Connection], Any]) -> Any:
    """Run `fn(conn)` on the SQLite adapter's writer connection, inside its next write
    transaction, and return what it returns. Fault injection for tests of the SQLite adapter
    (PRAGMAs that fill the disk or forbid writes) and rows written as such a test needs them:
    nothing above the store reaches past the port like this."""
    return await store._call(fn)


async def deliveries_of(store: Outbox, event_id: str) -> list[DeliveryRow]:
    """An event's deliveries, oldest first, read through the port."""
    return list(reversed(await store.list_deliveries(LogFilter(event_id=event_id, limit=1000))))
