"""The outbox contract runs against every adapter in ADAPTERS: each test gets, per adapter, an
outbox of its own, opened, and closed again at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tillhook.store.port import Outbox
from tillhook.store.sqlite import SqliteStore


@dataclass(frozen=True)
class Place:
    """Where one test's outbox is kept, for one adapter."""

    new: Callable[[], Outbox]  # a new adapter on this outbox, not opened yet
    from_copy: Callable[[Path], Outbox]  # a new adapter on the copy `backup` wrote to this file, not opened
    spoil: Callable[[], object]  # leave something there that is no outbox, as a wrong path or a wreck would


@asynccontextmanager
async def sqlite(tmp_path: Path) -> AsyncIterator[Place]:
    path = tmp_path / "outbox.db"
    yield Place(
        new=lambda: SqliteStore(path),
        from_copy=SqliteStore,
        spoil=lambda: path.write_bytes(b"these are not the pages of a database\n" * 200),
    )


# Every adapter the contract holds for, by the name its tests are shown under. An adapter that
# keeps its outbox elsewhere than in files makes (and drops) a place of its own per test here.
ADAPTERS: dict[str, Callable[[Path], AbstractAsyncContextManager[Place]]] = {
    "sqlite": sqlite,
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
