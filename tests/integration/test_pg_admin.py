"""The PostgreSQL outbox's admin writes where several daemons share it (what the contract, one
adapter at a time, cannot show): daemons starting together with one config file apply it one
after the other and keep one set of tokens; every change is told to the other daemons
(NOTIFY) in its own transaction, and a refused one tells nothing; one daemon purges at a time,
and never what a replay is making unfinished again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from tests.contract.build import NOW, attempt, claim, endpoint, event, settle
from tillhook.errors import Conflict
from tillhook.models import DeliveryState, Endpoint
from tillhook.store.pg import admin
from tillhook.store.pg.connect import PostgresTarget
from tillhook.store.pg.outbox import PostgresStore
from tillhook.store.pg.schema import LOCK_SPACE
from tillhook.store.port import ConfigApplied, LogFilter, RetriedMatching

OLD = NOW - 10 * 86400
DEADLINE_S = 10.0

Daemons = Callable[[], Awaitable[PostgresStore]]


@pytest.fixture
async def daemons(pg_target: PostgresTarget) -> AsyncIterator[Daemons]:
    """`await daemons()` opens one more daemon's outbox on the test's database."""
    opened: list[PostgresStore] = []

    async def open_one() -> PostgresStore:
        store = PostgresStore(pg_target)
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def sql(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, as another program (or daemon) would hold one."""
    conn = await asyncpg.connect(pg_url)
    yield conn
    await conn.close()


async def _until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Polls `condition` (another session's state, or what a listener heard) up to a deadline."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            met = condition()
            if met if isinstance(met, bool) else await met:
                return
            await asyncio.sleep(0.01)


async def test_daemons_starting_together_apply_one_config_one_after_the_other(
    daemons: Daemons, sql: asyncpg.Connection
) -> None:
    first, second = await daemons(), await daemons()
    config = [endpoint("shop"), endpoint("stock", events=("stock.*",))]
    # Held here until both wait for it: then they would both find no endpoint, both insert.
    async with sql.transaction():
        await sql.execute("SELECT pg_advisory_xact_lock($1, 2)", LOCK_SPACE)
        both = asyncio.gather(first.apply_config_endpoints(config, NOW), second.apply_config_endpoints(config, NOW + 1))
        await _until(
            lambda: sql.fetchval("SELECT count(*) = 2 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )
    assert await both == [ConfigApplied(), ConfigApplied()]
    rows = await sql.fetch("SELECT name, config_managed, enabled FROM endpoints ORDER BY name")
    assert [tuple(r) for r in rows] == [("shop", True, True), ("stock", True, True)]


async def test_daemons_starting_together_keep_one_set_of_tokens(daemons: Daemons, sql: asyncpg.Connection) -> None:
    stores = [await daemons() for _ in range(4)]
    made = await asyncio.gather(*(s.tokens(None, None, None) for s in stores))
    assert all(tokens == made[0] for tokens in made)
    assert made[0].ingest.startswith("ing_") and made[0].admin.startswith("adm_")
    assert await sql.fetchval("SELECT count(*) FROM meta WHERE key LIKE '%_token'") == 3


class Heard:
    """What was said on the outbox's channels, in the order it was said (commit order)."""

    def __init__(self) -> None:
        self.said: list[tuple[str, frozenset[str]]] = []

    def __call__(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        self.said.append((channel.removeprefix("tillhook_"), frozenset(payload.split(","))))

    async def up_to(self, channel: str, *ids: str) -> list[tuple[str, frozenset[str]]]:
        """Everything said until `ids` on `channel`, which ends it."""
        await _until(lambda: (channel, frozenset(ids)) in self.said)
        end = self.said.index((channel, frozenset(ids))) + 1
        told, self.said = self.said[:end], self.said[end:]
        return told


async def test_every_change_is_told_to_the_other_daemons_and_a_refused_one_tells_nothing(
    daemons: Daemons, sql: asyncpg.Connection
) -> None:
    outbox = await daemons()
    shop = await outbox.create_endpoint(endpoint("shop"), NOW - 3600)
    stock = await outbox.create_endpoint(endpoint("stock"), NOW - 3599)
    await outbox.enqueue([event(f"msg_{i}", [shop.id], at=NOW - 400 + i) for i in range(3)])
    await outbox.enqueue([event("msg_held", [stock.id], at=NOW - 300)])
    failed, other, delivered = await claim(outbox, {shop.id: 3})
    await settle(
        outbox,
        attempt(failed, DeliveryState.FAILED, status=500),
        attempt(other, DeliveryState.FAILED, status=500),
        attempt(delivered, DeliveryState.DELIVERED),
    )
    await outbox.set_endpoint_enabled(stock.id, False, "paused", NOW - 200)
    heard = Heard()
    for channel in ("tillhook_endpoints", "tillhook_due"):
        await sql.add_listener(channel, heard)

    await outbox.set_endpoint_enabled(stock.id, True, None, NOW)  # releases the held one
    assert await heard.up_to("due", stock.id) == [("endpoints", {stock.id}), ("due", {stock.id})]
    await outbox.update_endpoint(shop.id, {"url": "https://shop.example.com/v2"}, NOW)
    with pytest.raises(Conflict):
        await outbox.update_endpoint(stock.id, {"name": "shop"}, NOW)
    await outbox.retry_delivery(failed.id, NOW)
    assert await heard.up_to("due", shop.id) == [("endpoints", {shop.id}), ("due", {shop.id})]
    assert await outbox.retry_matching(LogFilter(endpoint_id=shop.id), NOW, 10) == RetriedMatching(1, 1, (shop.id,))
    assert await heard.up_to("due", shop.id) == [("due", {shop.id})]
    assert await outbox.replay(shop, NOW - 500, NOW - 350, False, NOW) == 1  # msg_2: the others are pending
    assert await heard.up_to("due", shop.id) == [("due", {shop.id})]
    await outbox.rotate_secret(shop.id, "whsec_" + "A" * 43, NOW + 60, NOW)
    await outbox.delete_endpoint(stock.id, NOW)
    audit = await outbox.create_endpoint(endpoint("audit"), NOW)
    assert await heard.up_to("endpoints", audit.id) == [
        ("endpoints", {shop.id}),
        ("endpoints", {stock.id}),
        ("endpoints", {audit.id}),
    ]

    # The config file: what it makes and changes, what it takes out, and what it puts back.
    await outbox.apply_config_endpoints([endpoint("shop"), endpoint("till")], NOW)
    till = await sql.fetchval("SELECT id FROM endpoints WHERE name = 'till'")
    assert await heard.up_to("endpoints", shop.id, till) == [("endpoints", {shop.id, till})]
    assert await outbox.apply_config_endpoints([endpoint("shop")], NOW + 1) == ConfigApplied(removed=("till",))
    await outbox.enqueue([event("msg_for_till", [till], at=NOW + 1)])
    assert await heard.up_to("due", till) == [("endpoints", {shop.id, till}), ("due", {till})]
    applied = await outbox.apply_config_endpoints([endpoint("shop"), endpoint("till")], NOW + 2)
    assert applied == ConfigApplied(restored=(("till", True, 1),))
    assert await heard.up_to("due", till) == [("endpoints", {shop.id, till}), ("due", {till})]
    await outbox.check_writable()  # a write, but no change to tell
    await outbox.rotate_secret(audit.id, "whsec_" + "B" * 43, NOW + 60, NOW + 3)
    assert await heard.up_to("endpoints", audit.id) == [("endpoints", {audit.id})]


async def _old_delivered_event(outbox: PostgresStore) -> Endpoint:
    shop = await outbox.create_endpoint(endpoint("shop"), OLD - 60)
    await outbox.enqueue([event("msg_old", [shop.id], at=OLD)])
    (delivery,) = await claim(outbox, {shop.id: 1})
    await settle(outbox, attempt(delivery, DeliveryState.DELIVERED))
    return shop


async def test_while_another_daemon_purges_a_daemon_skips_its_turn(daemons: Daemons, sql: asyncpg.Connection) -> None:
    outbox = await daemons()
    await _old_delivered_event(outbox)
    async with sql.transaction():
        await sql.execute("SELECT pg_advisory_xact_lock($1, 3)", LOCK_SPACE)  # as a purging daemon holds it
        assert await outbox.purge_before(NOW) == 0
    assert await sql.fetchval("SELECT count(*) FROM events") == 1
    assert await outbox.purge_before(NOW) == 1
    assert await sql.fetchval("SELECT count(*) FROM events") == 0


async def test_a_purge_never_takes_what_a_replay_is_making_unfinished(
    daemons: Daemons, sql: asyncpg.Connection
) -> None:
    outbox = await daemons()
    shop = await _old_delivered_event(outbox)
    # Another daemon's replay, not committed yet: the purge's snapshot cannot see its delivery.
    async with sql.transaction():
        assert await admin.replay(sql, shop, OLD - 1, OLD + 1, False, NOW) == 1
        assert await outbox.purge_before(NOW) == 0
    assert await outbox.purge_before(NOW) == 0  # committed: the event has a delivery to make
    rows = await sql.fetch("SELECT state FROM deliveries WHERE event_id = 'msg_old' ORDER BY id")
    assert [r[0] for r in rows] == ["delivered", "pending"]
    (replayed,) = await claim(outbox, {shop.id: 1})
    assert replayed.event_id == "msg_old" and replayed.body.startswith(b'{"id":"msg_old"')


async def test_the_type_counts_of_connections_gone_are_folded_by_the_purge(
    daemons: Daemons, sql: asyncpg.Connection
) -> None:
    first = await daemons()
    await first.enqueue([event("msg_1", [], type_="sale.completed", at=NOW - 30)])
    await first.close()  # its writer's backend ends: its row stays, to be folded
    second = await daemons()
    await second.enqueue([event("msg_2", [], type_="sale.completed", at=NOW - 20)])
    await _until(lambda: _backends_gone(sql))
    # A count written by hand for a backend that never existed stands for any that ended.
    await sql.execute(
        "INSERT INTO event_types_seen (type, writer, count, mismatched, first_seen, last_seen)"
        " VALUES ('sale.completed', -7, 5, 2, $1, $2)",
        NOW - 90,
        NOW - 60,
    )
    before = await second.event_types_seen()
    await second.purge_before(NOW - 86400)
    assert await second.event_types_seen() == before
    rows = await sql.fetch(
        "SELECT writer = 0 AS folded, count, mismatched, first_seen, writer IN (SELECT pid FROM pg_stat_activity)"
        " AS live FROM event_types_seen ORDER BY writer <> 0"
    )
    # The ended backends' counts (1 of the first daemon, 5 by hand) are one row; the live
    # writer's own row is left to its trigger.
    assert [tuple(row) for row in rows] == [(True, 6, 2, NOW - 90, False), (False, 1, 0, NOW - 20, True)]


async def _backends_gone(sql: asyncpg.Connection) -> bool:
    gone = await sql.fetchval(
        "SELECT count(*) FROM event_types_seen s WHERE NOT EXISTS"
        " (SELECT 1 FROM pg_stat_activity a WHERE a.pid = s.writer)"
    )
    return bool(gone == 1)
