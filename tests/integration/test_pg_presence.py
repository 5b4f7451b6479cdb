"""Daemons sharing one PostgreSQL outbox, in one process: each endpoint served by exactly one
live daemon, the same answer on every daemon; a daemon that stops renewing its lease has its
claims taken back by another, which then serves its endpoints; one that leaves cleanly hands
its endpoints over at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.contract.build import endpoint, event
from tests.support import FakeClock
from tillhook.store.pg.connect import PostgresTarget
from tillhook.store.pg.outbox import PostgresStore
from tillhook.store.port import ClaimRequest, Due, EndpointsChanged, News

LEASE_S = 0.6
Opener = Callable[[], Awaitable[PostgresStore]]
ENDPOINTS = [f"ep_{i:02d}" for i in range(40)]


class Heard:
    """A store's news, waited on."""

    def __init__(self) -> None:
        self.news: list[News] = []
        self._changed = asyncio.Condition()

    def __call__(self, news: News) -> None:
        self.news.append(news)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(wait(), timeout_s)


@pytest.fixture
async def open_store(pg_target: PostgresTarget) -> AsyncIterator[Opener]:
    opened: list[PostgresStore] = []

    async def make() -> PostgresStore:
        store = PostgresStore(pg_target, lease_s=LEASE_S)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def add_endpoints(store: PostgresStore) -> None:
    async with store.pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO endpoints (id, name, url, events, secrets, created_at, updated_at)"
            " VALUES ($1, $1, 'https://example.com/hook', '[\"*\"]', '[]', 0, 0)",
            [(e,) for e in ENDPOINTS],
        )


async def test_each_endpoint_is_served_by_one_live_daemon(open_store: Opener) -> None:
    a: PostgresStore = await open_store()
    heard = Heard()
    a.presence.on_news = heard
    b: PostgresStore = await open_store()
    # a hears b arrive (its start says so) and looks at once.
    await heard.until(lambda: len(a.presence.live) == 2)
    assert a.presence.live == b.presence.live == tuple(sorted([a.presence.daemon_id, b.presence.daemon_id]))
    served_a = {e for e in ENDPOINTS if a.presence.serves(e)}
    served_b = {e for e in ENDPOINTS if b.presence.serves(e)}
    assert served_a | served_b == set(ENDPOINTS) and not served_a & served_b
    assert 5 <= len(served_a) <= 35  # shared out, not all to one
    # b leaves cleanly: a serves everything as soon as it hears so.
    await b.close()
    await heard.until(lambda: a.presence.live == (a.presence.daemon_id,))
    assert all(a.presence.serves(e) for e in ENDPOINTS)


async def test_a_silent_daemons_claims_are_taken_back_after_its_lease(open_store: Opener) -> None:
    a: PostgresStore = await open_store()
    b: PostgresStore = await open_store()
    await add_endpoints(a)
    now = time.time()
    await a.enqueue([event(f"msg_{i}", ["ep_00"], at=now) for i in range(3)])
    claimed = await a.claim_due(ClaimRequest({"ep_00": 3}, now))
    assert len(claimed) == 3
    assert await b.claim_due(ClaimRequest({"ep_00": 3}, now)) == []  # a's, while its lease lasts
    heard = Heard()
    b.presence.on_news = heard
    # a hangs: it stops renewing (as if killed, or cut off from the database).
    assert a.presence.task is not None
    a.presence.task.cancel()
    await heard.until(lambda: any(isinstance(n, Due) and n.endpoint_ids == {"ep_00"} for n in heard.news))
    await heard.until(lambda: b.presence.live == (b.presence.daemon_id,))
    again = await b.claim_due(ClaimRequest({"ep_00": 3}, time.time()))
    assert sorted(d.id for d in again) == sorted(d.id for d in claimed)
    assert all(b.presence.serves(e) for e in ENDPOINTS)


async def test_news_of_endpoints_and_due_deliveries_reach_the_other_daemon(open_store: Opener) -> None:
    a: PostgresStore = await open_store()
    b: PostgresStore = await open_store()
    heard = Heard()
    b.presence.on_news = heard
    await add_endpoints(a)
    await a.enqueue([event("msg_1", ["ep_03"], at=time.time())])
    await heard.until(lambda: any(isinstance(n, Due) and n.endpoint_ids == {"ep_03"} for n in heard.news))
    await a.create_endpoint(endpoint("fresh"), time.time())
    await heard.until(lambda: any(isinstance(n, EndpointsChanged) for n in heard.news))


async def test_a_daemon_that_cannot_renew_stops_serving_and_a_live_ones_work_is_never_taken(
    pg_target: PostgresTarget,
) -> None:
    clock = FakeClock()
    stores = [PostgresStore(pg_target, lease_s=30.0, now=clock.now, monotonic=clock.monotonic) for _ in range(2)]
    a, b = stores
    try:
        for store in stores:
            await store.open()
            assert store.presence.task is not None
            store.presence.task.cancel()  # beats stepped by the test from here
        await a.presence.beat_once()
        await b.presence.beat_once()
        await add_endpoints(a)
        await a.enqueue([event("msg_1", ["ep_00"], at=clock.now())])
        (claimed,) = await a.claim_due(ClaimRequest({"ep_00": 1}, clock.now()))
        # Its lease on the delivery runs out, but a beats: alive, so its work stays its own,
        # even for b, which has been beating for far longer than a lease.
        clock.advance(40)
        await a.presence.beat_once()
        async with a.pool.acquire() as conn:
            await conn.execute("UPDATE deliveries SET lease_until = $1", clock.now() - 1)
        clock.advance(40)
        await a.presence.beat_once()
        async with a.pool.acquire() as conn:
            await conn.execute("UPDATE deliveries SET lease_until = $1", clock.now() - 1)
        await b.presence.beat_once()
        assert (await a.get_delivery(claimed.id)).state.value == "delivering"
        assert all(a.presence.serves(e) or b.presence.serves(e) for e in ENDPOINTS)
        # a falls silent: two thirds of a lease without a renewal and it serves nothing more,
        # before anyone may take its work.
        clock.advance(21)
        assert not any(a.presence.serves(e) for e in ENDPOINTS)
        clock.advance(10)
        await b.presence.beat_once()  # a not seen within its lease: dead to b
        assert (await b.get_delivery(claimed.id)).state.value == "pending"
        assert all(b.presence.serves(e) for e in ENDPOINTS)
    finally:
        for store in stores:
            await store.close()


async def test_a_daemon_takes_nothing_back_before_it_has_beaten_for_a_lease(pg_target: PostgresTarget) -> None:
    """As after PostgreSQL was away for longer than a lease, when every lease looks run out to
    the first daemon back: a daemon starting (or coming back: its beats failed) first gives the
    others a lease's time to renew their own."""
    clock = FakeClock()
    stores = [PostgresStore(pg_target, lease_s=30.0, now=clock.now, monotonic=clock.monotonic) for _ in range(2)]
    a, b = stores
    try:
        await a.open()
        assert a.presence.task is not None
        a.presence.task.cancel()
        await add_endpoints(a)
        await a.enqueue([event("msg_1", ["ep_00"], at=clock.now())])
        (claimed,) = await a.claim_due(ClaimRequest({"ep_00": 1}, clock.now()))
        clock.advance(60)  # a silent for two leases
        await b.open()
        assert b.presence.task is not None
        b.presence.task.cancel()
        await b.presence.beat_once()
        assert (await b.get_delivery(claimed.id)).state.value == "delivering"  # not at b's start
        await a.presence.beat_once()  # a back, renewing its claim
        clock.advance(31)
        await a.presence.beat_once()
        await b.presence.beat_once()
        assert (await b.get_delivery(claimed.id)).state.value == "delivering"  # a's: a is alive
    finally:
        for store in stores:
            await store.close()
