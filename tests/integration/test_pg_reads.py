"""store/pg/reads.py and store/pg/log_sql.py on the real test cluster, where the contract suite
cannot reach: the tokens read beside no daemon at all, a read on a lost connection, the
failed-matching text as the admin writes extend it, and the plans that keep the figures
quick with a large backlog."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from tillhook.errors import NoDatabase, StoreError, StoreUnavailable
from tillhook.models import DeliveryState
from tillhook.store.pg import log_sql
from tillhook.store.pg.connect import PostgresTarget, connect, create_pool
from tillhook.store.pg.reads import PgReads
from tillhook.store.pg.schema import migrate
from tillhook.store.port import LogFilter

NOW = 1_800_000_000.0


def reads_of(target: PostgresTarget) -> PgReads:
    reads = PgReads()
    reads.target = target
    return reads


@pytest.fixture
async def migrated(pg_target: PostgresTarget) -> AsyncIterator[asyncpg.Connection]:
    """The test's database with the outbox's schema, and a connection to it to write rows with."""
    conn = await connect(pg_target)
    await migrate(conn)
    yield conn
    await conn.close()


@pytest.fixture
async def reads(pg_target: PostgresTarget, migrated: asyncpg.Connection) -> AsyncIterator[PgReads]:
    """The read verbs on a pool of one connection of their own."""
    made = reads_of(pg_target)
    made._pool = await create_pool(pg_target, min_size=1, max_size=1)
    yield made
    await made.pool.close()


async def test_tokens_of_a_database_that_is_not_there_are_no_database(pg_target: PostgresTarget) -> None:
    missing = PostgresTarget(
        urlsplit(pg_target.dsn)._replace(path="/tillhook_nothing_here").geturl(), pg_target.password
    )
    with pytest.raises(NoDatabase) as refused:
        await reads_of(missing).read_tokens()
    assert "tillhook_nothing_here" in refused.value.message
    assert pg_target.password is None or pg_target.password not in refused.value.message


async def test_tokens_of_an_empty_database_are_no_database_and_nothing_is_made(pg_target: PostgresTarget) -> None:
    with pytest.raises(NoDatabase):
        await reads_of(pg_target).read_tokens()
    conn = await connect(pg_target)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace") == 0
    finally:
        await conn.close()


async def test_tokens_of_another_programs_database_say_it_is_no_outbox(pg_target: PostgresTarget) -> None:
    conn = await connect(pg_target)
    try:
        await conn.execute("CREATE TABLE meta (key integer PRIMARY KEY, data bytea)")
    finally:
        await conn.close()
    with pytest.raises(StoreError) as refused:
        await reads_of(pg_target).read_tokens()
    assert not isinstance(refused.value, NoDatabase)
    assert "not a tillhook outbox" in refused.value.message


async def test_tokens_kept_are_read(reads: PgReads, migrated: asyncpg.Connection) -> None:
    await migrated.execute("INSERT INTO meta VALUES ('ingest_token', 'ing_1'), ('unrelated', 'x')")
    assert await reads.read_tokens() == {"ingest_token": "ing_1"}


async def test_tokens_with_postgresql_down_are_unavailable(pg_target: PostgresTarget, closed_port: int) -> None:
    parts = urlsplit(pg_target.dsn)
    down = PostgresTarget(parts._replace(netloc=f"{parts.username}@127.0.0.1:{closed_port}").geturl(), "x")
    with pytest.raises(StoreUnavailable) as refused:
        await reads_of(down).read_tokens()
    assert str(closed_port) in refused.value.message


async def test_a_read_on_a_lost_connection_is_unavailable_and_the_next_one_reconnects(
    reads: PgReads, migrated: asyncpg.Connection
) -> None:
    pid = await reads.pool.fetchval("SELECT pg_backend_pid()")
    assert await migrated.fetchval("SELECT pg_terminate_backend($1)", pid)
    with pytest.raises(StoreUnavailable) as lost:
        await reads.list_events(LogFilter())
    assert lost.value.message
    assert await reads.list_events(LogFilter()) == []
    assert await reads.pool.fetchval("SELECT pg_backend_pid()") != pid


async def test_a_closed_store_reads_nothing_but_says_so() -> None:
    with pytest.raises(StoreUnavailable):
        await PgReads().count_by_state()


async def test_the_failed_matching_text_is_numbered_on_by_a_statement_of_its_own(
    reads: PgReads, migrated: asyncpg.Connection
) -> None:
    """As store/pg/admin.py's retry extends it: its own parameters after the filter's."""
    await migrated.execute(
        "INSERT INTO endpoints (id, name, url, events, secrets, created_at, updated_at)"
        " VALUES ('ep_1', 'shop', 'https://shop.example.com', '[\"*\"]', '[]', 0, 0)"
    )
    await migrated.execute(
        "INSERT INTO events (id, type, created_at, body) VALUES ('msg_1', 'order.paid', $1, '')", NOW
    )
    await migrated.execute(
        "INSERT INTO deliveries (event_id, endpoint_id, state, attempts, last_status, created_at, updated_at)"
        " VALUES ('msg_1', 'ep_1', 'failed', 1, 500, $1, $1), ('msg_1', 'ep_1', 'delivered', 1, 200, $1, $1)",
        NOW,
    )
    every_field = LogFilter(
        endpoint_id="ep_1",
        state=DeliveryState.DELIVERED,  # a failed-matching filter is about failed ones, whatever it says
        type_pattern="order.*",
        event_id="msg_1",
        last_status=500,
        since=NOW - 1,
        until=NOW + 1,
        before=1,  # the cursor plays no part
    )
    source, where, params = log_sql.failed_matching_where(every_field)
    args = log_sql.Args(params)
    sql = f"SELECT d.id{source}{where} AND ep.enabled ORDER BY d.id LIMIT {args(10)}"
    assert [row[0] for row in await migrated.fetch(sql, *args.values)] == [1]
    assert await reads.count_failed_matching(every_field) == 1


async def test_the_replay_count_takes_the_patterns_as_stored(reads: PgReads, migrated: asyncpg.Connection) -> None:
    await migrated.execute(
        "INSERT INTO events (id, type, created_at, body) VALUES ('a', 'order.paid', $1, ''),"
        " ('b', 'stock.low', $1, ''), ('c', 'tillhook.endpoint.failing', $1, '')",
        NOW,
    )
    source = log_sql.replay_count_query(only_failed=False)
    for patterns, expected in ((["*"], 2), (["order.*"], 1), (["tillhook.**"], 1), ("stock.low", 1)):
        assert await migrated.fetchval(source, "ep_1", NOW - 1, NOW + 1, json.dumps(patterns)) == expected


async def _plan(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    rows = await conn.fetch(f"EXPLAIN (COSTS OFF) {sql}", *args)
    return "\n".join(row[0] for row in rows)


async def test_the_figures_are_read_on_the_partial_indexes(migrated: asyncpg.Connection) -> None:
    """Whatever the statistics, each figure can be read on an index holding only the rows it
    counts: with the table's scans ruled out, the planner still finds a plan by those."""
    await migrated.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
    counts = await _plan(migrated, log_sql.COUNT_BY_STATE)
    for index in ("deliveries_due", "deliveries_in_flight", "deliveries_unsuccessful"):
        assert f"Index Only Scan using {index}" in counts
    oldest = await _plan(migrated, log_sql.OLDEST_PENDING, ["ep_1", "ep_2"])
    assert "Index Scan using deliveries_unfinished" in oldest and "Seq Scan on deliveries" not in oldest
    heads = await _plan(migrated, log_sql.ORDERED_HEADS, ["ep_1"])
    assert "Index Scan using deliveries_unfinished" in heads and "Seq Scan on deliveries" not in heads
    pending = await _plan(migrated, log_sql.PENDING_BY_ENDPOINT)
    assert "using deliveries_due" in pending and "Seq Scan on deliveries" not in pending
    hours = await _plan(migrated, log_sql.ATTEMPT_HOURS, 1)
    assert "attempt_hours_pkey" in hours
