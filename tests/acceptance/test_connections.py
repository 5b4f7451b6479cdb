"""The real daemon under the default open-file limit of 1024: a crowd of idle connections and
a few slow senders do not stop it from taking events, and the slow ones are closed after
their timeouts."""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.acceptance.conftest import INGEST_TOKEN, Daemon, write_config

IDLE = 1100
BATCH = 100
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
SLOW_BYTE_EVERY_S = 0.2  # a slow sender's pace: each byte comes well within any deadline
CLOSE_SLACK_S = 2.0  # the sweeper's tick, the loop and a busy host


@pytest.fixture
def more_open_files() -> Iterator[None]:
    """This process holds both ends' worth of sockets: raise its own soft limit for it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = IDLE + 200
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard open-file limit ({hard}) is below the {needed} this test holds")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@dataclass
class Sockets:
    writers: list[asyncio.StreamWriter]

    async def open(self, host: str, port: int, n: int) -> list[asyncio.StreamReader]:
        readers = []
        for start in range(0, n, BATCH):  # bounded batches: never more than a backlog at once
            opened = await asyncio.wait_for(
                asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(min(BATCH, n - start)))), 30
            )
            for reader, writer in opened:
                readers.append(reader)
                self.writers.append(writer)
        return readers


@pytest.fixture
async def sockets() -> AsyncIterator[Sockets]:
    held = Sockets([])
    yield held
    for writer in held.writers:
        writer.close()


@dataclass
class Slow:
    """A client that trickles its request one byte at a time until the daemon closes it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: bytes = b""
    closed_after_s: float = 0.0

    async def trickle(self, head: bytes, trickled: bytes) -> None:
        started = time.monotonic()
        self.writer.write(head)
        reading = asyncio.create_task(self.reader.read())
        for byte in trickled:
            done, _ = await asyncio.wait([reading], timeout=SLOW_BYTE_EVERY_S)  # the pace, or the close
            if done:
                break
            self.writer.write(bytes([byte]))
        self.received = await asyncio.wait_for(reading, 30)
        self.closed_after_s = time.monotonic() - started


def request_head(length: int) -> bytes:
    return (
        f"POST /v1/events HTTP/1.1\r\nHost: tillhook\r\nAuthorization: Bearer {INGEST_TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_idle_and_slow_connections_do_not_stop_ingest_under_1024_open_files(
    tmp_path: Path,
    daemons: Callable[..., Daemon],
    more_open_files: None,
    sockets: Sockets,
) -> None:
    config = write_config(
        tmp_path / "tillhook.toml",
        [],
        server={
            "idle_timeout": "60s",
            "header_timeout": f"{HEADER_TIMEOUT_S:g}s",
            "body_timeout": f"{BODY_TIMEOUT_S:g}s",
        },
    )
    daemon = await daemons(config, open_files=1024).start()
    lowered = await daemon.wait_log("max_connections_lowered", since=0)
    assert lowered["open_file_limit"] == 1024 and lowered["effective"] + 256 < 1024
    host, _, port = daemon.url.removeprefix("http://").rpartition(":")

    await sockets.open(host, int(port), IDLE)
    slow = [Slow(*await asyncio.open_connection(host, int(port))) for _ in range(3)]
    sockets.writers += [s.writer for s in slow]
    body = json.dumps({"type": "sale.completed", "data": {"amount": 1}}).encode()
    whole = request_head(len(body)) + body
    trickling = [
        asyncio.create_task(slow[0].trickle(b"", whole)),
        asyncio.create_task(slow[1].trickle(whole[:5], whole[5:])),
        asyncio.create_task(slow[2].trickle(request_head(len(body)), body)),
    ]

    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.post(
            f"{daemon.url}/v1/events",
            data=body,
            headers={
                **daemon.headers(),
                "Content-Type": "application/json",
            },
            timeout=aiohttp.ClientTimeout(total=2),
        ) as response:
            assert response.status == 202, await response.text()
        assert time.monotonic() - started < 2
        async with http.get(f"{daemon.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as response:
            assert response.status == 200

    await asyncio.wait_for(asyncio.gather(*trickling), 30)
    for client, timeout_s, which in (
        (slow[0], HEADER_TIMEOUT_S, "header"),
        (slow[1], HEADER_TIMEOUT_S, "header"),
        (slow[2], BODY_TIMEOUT_S, "body"),
    ):
        assert client.received.startswith(b"HTTP/1.1 408 Request Timeout"), client.received[:200]
        assert f"server.{which}_timeout".encode() in client.received
        assert timeout_s * 0.9 <= client.closed_after_s <= timeout_s + CLOSE_SLACK_S, (which, client.closed_after_s)

    reached = await daemon.wait_log("connection_limit_reached")
    assert reached["max_connections"] == lowered["effective"] and reached["idle_closed"] > 0
    accept_lines = [e for e in daemon.log if "accept" in json.dumps(e).lower()]
    assert len(accept_lines) < 5, accept_lines[:5]
    assert await daemon.terminate() == 0


async def test_a_unix_socket_listener_takes_events_and_closes_idle_connections(
    tmp_path_factory: pytest.TempPathFactory, daemons: Callable[..., Daemon]
) -> None:
    directory = tmp_path_factory.mktemp("unix")  # short: a socket path has at most 107 bytes
    path = directory / "tillhook.sock"
    config = write_config(directory / "tillhook.toml", [], server={"listen": f"unix:{path}", "idle_timeout": "1s"})
    daemon = await daemons(config).start()
    idle_reader, idle_writer = await asyncio.open_unix_connection(str(path))
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as http,
        http.post(
            "http://tillhook/v1/events", json={"type": "sale.completed", "data": {}}, headers=daemon.headers()
        ) as response,
    ):
        assert response.status == 202, await response.text()
    assert await asyncio.wait_for(idle_reader.read(), 10) == b""  # closed by the daemon
    idle_writer.close()
    assert await daemon.terminate() == 0
