"""The outbox contract runs against every adapter in ADAPTERS: each test gets, per adapter, an
outbox of its own, opened, and closed again at teardown."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import pg
from tillhook.store.pg.connect import PostgresTarget, connect
from tillhook.store.pg.outbox import PostgresStore
from tillhook.store.port import Outbox
from tillhook.store.sqlite import SqliteStore


@dataclass(frozen=True)
class Place:
    """Where one test's outbox is kept, for one adapter."""

    new: Callable[[], Outbox]  # a new adapter on this outbox, not opened yet
    # A new adapter on the copy `backup` wrote to this file, not opened; None where copies are
    # the database's own tools' to take (`backup` refuses, saying which).
    from_copy: Callable[[Path], Outbox] | None
    spoil: Callable[[], Awaitable[object]]  # leave something there that is no outbox, as a wrong path or a wreck would
    # Rows of a query run on the database itself, beside the adapter: for what the database
    # keeps on its own (its triggers' tables), which no verb of the port reads.
    query: Callable[[str], Awaitable[list[tuple[Any, ...]]]]
    # Shared by several daemons: what one left delivering is another's to take back only once
    # its lease has run out, never merely because another opened the outbox.
    shared: bool = False


@asynccontextmanager
async def sqlite(tmp_path: Path) -> AsyncIterator[Place]:
    path = tmp_path / "outbox.db"

    async def spoil() -> None:
        path.write_bytes(b"these are not the pages of a database\n" * 200)

    async def query(sql: str) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(path)) as conn:
            return [tuple(row) for row in conn.execute(sql)]

    yield Place(new=lambda: SqliteStore(path), from_copy=SqliteStore, spoil=spoil, query=query)


@asynccontextmanager
async def postgres(tmp_path: Path) -> AsyncIterator[Place]:
    """A database of its own on the cluster $TILLHOOK_TEST_POSTGRES names (tests/pg.py), dropped
    after the test; the test fails, saying how to start a cluster, without one."""
    url = await pg.create_database()
    target = PostgresTarget.from_url(url)

    async def spoil() -> None:
        # Another program's database: a table of tillhook's name, of another shape.
        conn = await connect(target)
        try:
            await conn.execute("CREATE TABLE meta (key integer PRIMARY KEY, data bytea)")
        finally:
            await conn.close()

    async def query(sql: str) -> list[tuple[Any, ...]]:
        conn = await connect(target)
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    try:
        yield Place(new=lambda: PostgresStore(target), from_copy=None, spoil=spoil, query=query, shared=True)
    finally:
        await pg.drop_database(url)


# Every adapter the contract holds for, by the name its tests are shown under. An adapter that
# keeps its outbox elsewhere than in files makes (and drops) a place of its own per test here.
ADAPTERS: dict[str, Callable[[Path], AbstractAsyncContextManager[Place]]] = {
    "sqlite": sqlite,
    "postgres": postgres,
}


@pytest.fixture(params=list(ADAPTERS))
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    async with ADAPTERS[request.param](tmp_path) as made:
        yield made


Opener = Callable[..., Awaitable[Outbox]]


@pytest.fixture
async def opened(place: Place) -> AsyncIterator[Opener]:
    """`await opened()` opens a new adapter on the test's outbox (`await opened(adapter)` that
    one), as often as a test needs, e.g. once more after closing the first; every adapter
    opened is closed at teardown (closing twice is part of the contract)."""
    adapters: list[Outbox] = []

    async def open_one(adapter: Outbox | None = None) -> Outbox:
        chosen = place.new() if adapter is None else adapter
        adapters.append(chosen)
        await chosen.open()
        return chosen

    yield open_one
    for adapter in reversed(adapters):
        await adapter.close()


@pytest.fixture
async def outbox(opened: Opener) -> Outbox:
    return await opened()
