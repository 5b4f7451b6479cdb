"""The connection tracker on a real loopback port: idle and slow connections are closed after
their timeouts, and at the cap the longest-idle one makes room or the newcomer gets a 503."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tillhook.api.connections import ConnectionLimits, ConnectionTracker, TrackedSite
from tillhook.config import Listen

WAIT_S = 10.0
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


@dataclass
class Tracked:
    tracker: ConnectionTracker
    listen: Listen
    entered: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.listen.unix_path is not None:
            return await asyncio.open_unix_connection(self.listen.unix_path)
        return await asyncio.open_connection(self.listen.host, self.listen.port)


Serve = Callable[..., Awaitable[Tracked]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """A small app behind the tracker: GET / answers at once, GET /block waits for release."""
    made: list[tuple[web.AppRunner, asyncio.Task[None]]] = []

    async def make(
        *, max_connections: int = 100, idle: float = 30.0, header: float = 30.0, unix_path: str | None = None
    ) -> Tracked:
        tracker = ConnectionTracker(ConnectionLimits(max_connections, idle, header))
        tracked = Tracked(tracker, Listen(unix_path=unix_path) if unix_path else Listen("127.0.0.1", 0))

        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def block(request: web.Request) -> web.Response:
            tracked.entered.put_nowait(None)
            await tracked.release.wait()
            return web.Response(text="released")

        app = web.Application(middlewares=[tracker.middleware])
        app.router.add_get("/", ok)
        app.router.add_get("/block", block)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = TrackedSite(runner, tracked.listen, tracker)
        await site.start()
        if unix_path is None:
            tracked.listen = Listen("127.0.0.1", runner.addresses[0][1])
        made.append((runner, asyncio.create_task(tracker.sweep())))
        return tracked

    yield make
    for runner, sweeper in made:
        sweeper.cancel()
        await runner.cleanup()


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes = REQUEST) -> bytes:
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await asyncio.wait_for(reader.readexactly(length), WAIT_S)


async def wait_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server still sends, up to its close; and how long that took."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), WAIT_S)
    return data, time.monotonic() - started


async def test_an_unused_connection_is_closed_after_idle_timeout(serve: Serve) -> None:
    tracked = await serve(idle=0.5)
    reader, writer = await tracked.connect()
    data, took = await wait_closed(reader)
    assert data == b"" and 0.4 <= took < 3
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_idle_timeout(serve: Serve) -> None:
    tracked = await serve(idle=0.5)
    reader, writer = await tracked.connect()
    assert (await roundtrip(reader, writer)).startswith(b"HTTP/1.1 200")
    data, took = await wait_closed(reader)
    assert data == b"" and 0.4 <= took < 3
    assert tracked.tracker.open_count == 0
    writer.close()


async def test_headers_sent_slowly_get_408_after_header_timeout(serve: Serve) -> None:
    tracked = await serve(idle=30.0, header=0.5)
    reader, writer = await tracked.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")  # the blank line that ends the headers never comes
    data, took = await wait_closed(reader)
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"Connection: close" in data
    problem = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert problem["status"] == 408 and "server.header_timeout" in problem["detail"]
    assert 0.4 <= took < 3
    writer.close()


async def test_at_the_cap_the_longest_idle_connection_makes_room(serve: Serve) -> None:
    tracked = await serve(max_connections=3)
    conns = []
    for _ in range(3):
        reader, writer = await tracked.connect()
        await roundtrip(reader, writer)  # accepted and idle, in this order
        conns.append((reader, writer))
    newcomer = await tracked.connect()
    assert (await roundtrip(*newcomer)).startswith(b"HTTP/1.1 200")
    data, _ = await wait_closed(conns[0][0])
    assert data == b""
    for reader, writer in conns[1:]:
        assert (await roundtrip(reader, writer)).startswith(b"HTTP/1.1 200")
    assert tracked.tracker.open_count == 3
    for _, writer in [*conns, newcomer]:
        writer.close()


async def test_at_the_cap_with_every_connection_busy_a_newcomer_gets_503(serve: Serve) -> None:
    tracked = await serve(max_connections=2)
    busy = []
    for _ in range(2):
        reader, writer = await tracked.connect()
        writer.write(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.wait_for(tracked.entered.get(), WAIT_S)
        busy.append((reader, writer))
    reader, writer = await tracked.connect()
    writer.write(REQUEST)
    data, _ = await wait_closed(reader)
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Connection: close" in head and b"Content-Type: application/problem+json" in head
    assert "server.max_connections" in json.loads(body)["detail"]
    writer.close()
    tracked.release.set()
    for reader, writer in busy:
        assert (await asyncio.wait_for(reader.readuntil(b"released"), WAIT_S)).startswith(b"HTTP/1.1 200")
        writer.close()


async def test_a_busy_connection_is_not_closed_by_the_idle_timeout(serve: Serve) -> None:
    tracked = await serve(idle=0.3, header=0.3)
    reader, writer = await tracked.connect()
    writer.write(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
    await asyncio.wait_for(tracked.entered.get(), WAIT_S)
    # An unused connection opened after it is closed after its idle timeout: by then the busy
    # one is past both timeouts, and must still get its answer.
    other_reader, other_writer = await tracked.connect()
    await wait_closed(other_reader)
    tracked.release.set()
    assert (await asyncio.wait_for(reader.readuntil(b"released"), WAIT_S)).startswith(b"HTTP/1.1 200")
    writer.close()
    other_writer.close()


async def test_a_unix_socket_listener_is_tracked_too(serve: Serve, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = str(tmp_path_factory.mktemp("sock") / "t.sock")
    tracked = await serve(idle=0.5, unix_path=path)
    reader, writer = await tracked.connect()
    assert (await roundtrip(reader, writer)).startswith(b"HTTP/1.1 200")
    data, took = await wait_closed(reader)
    assert data == b"" and took >= 0.4
    writer.close()
