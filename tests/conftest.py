from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from tests import pg
from tests.support import FakeClock, Receiver
from tillhook.store.pg.connect import PostgresTarget


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    """Start as many real loopback receivers as a test needs; all stop at teardown."""
    started: list[Receiver] = []

    async def start(**kwargs: object) -> Receiver:
        receiver = await Receiver(**kwargs).start()  # type: ignore[arg-type]
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.stop()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, for the whole test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def not_http() -> AsyncIterator[int]:
    """A loopback server that answers anything with a line that is not HTTP: aiohttp's error
    then quotes the request URL."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for this test (its URL, password included), dropped
    after it. Fails, saying how to start a cluster, when $TILLHOOK_TEST_POSTGRES is not set."""
    url = await pg.create_database()
    yield url
    await pg.drop_database(url)


@pytest.fixture
def pg_target(pg_url: str) -> PostgresTarget:
    """The fresh database of `pg_url` as the PostgreSQL adapter is given it."""
    return PostgresTarget.from_url(pg_url)
