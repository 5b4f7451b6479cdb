"""store/pg/connect.py against the real test cluster: connections and pools, and every way
of not getting one said in words that never hold the password; and the per-test database
fixture itself."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests import pg
from tillhook.errors import StoreUnavailable
from tillhook.store.pg.connect import DRIVER_ERRORS, PostgresTarget, connect, create_pool, describe_pg_error


def with_password(target: PostgresTarget, password: str) -> PostgresTarget:
    return PostgresTarget(target.dsn, password)


def elsewhere(target: PostgresTarget, *, port: int | None = None, database: str | None = None) -> PostgresTarget:
    parts = urlsplit(target.dsn)
    if port is not None:
        parts = parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}")
    if database is not None:
        parts = parts._replace(path=f"/{database}")
    return PostgresTarget(parts.geturl(), target.password)


async def refused_with(target: PostgresTarget, **kwargs: float) -> str:
    with pytest.raises(StoreUnavailable) as caught:
        await connect(target, **kwargs)
    assert target.password is None or target.password not in caught.value.message
    return caught.value.message


async def test_the_fixture_gives_a_fresh_empty_database(pg_url: str, pg_target: PostgresTarget) -> None:
    name = urlsplit(pg_url).path.removeprefix("/")
    assert name.startswith("tillhook_")
    assert pg_target.password is not None and pg_target.password not in pg_target.dsn
    conn = await connect(pg_target)
    try:
        assert await conn.fetchval("SELECT current_database()") == name
        assert await conn.fetchval("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace") == 0
    finally:
        await conn.close()


async def test_a_database_is_dropped_even_with_a_connection_left_open() -> None:
    first, second = await pg.create_database(), await pg.create_database()
    assert first != second
    left_open = await connect(PostgresTarget.from_url(first))
    await pg.drop_database(first)
    await pg.drop_database(second)
    names = {urlsplit(u).path.removeprefix("/") for u in (first, second)}
    cluster = await connect(PostgresTarget.from_url(pg.cluster_url()))
    try:
        assert await cluster.fetchval("SELECT count(*) FROM pg_database WHERE datname = any($1)", list(names)) == 0
    finally:
        await cluster.close()
    assert left_open.is_closed() or not await _still_answers(left_open)


async def _still_answers(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except DRIVER_ERRORS:
        return False
    return True


def test_without_the_variable_the_test_fails_saying_how_to_start_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pg.ENV, raising=False)
    with pytest.raises(pytest.fail.Exception) as caught:
        pg.cluster_url()
    assert "TILLHOOK_TEST_POSTGRES is not set" in str(caught.value) and ".ci/postgres start" in str(caught.value)


async def test_a_wrong_password_is_said_without_it(pg_target: PostgresTarget) -> None:
    said = await refused_with(with_password(pg_target, "not-the-Pa55word"))
    assert said.startswith('PostgreSQL refused the login: password authentication failed for user "tillhook"')
    assert "not-the-Pa55word" not in said


async def test_a_refused_port_names_the_address(pg_target: PostgresTarget, closed_port: int) -> None:
    said = await refused_with(elsewhere(pg_target, port=closed_port))
    assert (
        said
        == f"PostgreSQL at 127.0.0.1:{closed_port} refused the connection: is PostgreSQL running, and listening there?"
    )


async def test_a_missing_database_is_named(pg_target: PostgresTarget) -> None:
    missing = f"tillhook_missing_{secrets.token_hex(4)}"
    said = await refused_with(elsewhere(pg_target, database=missing))
    assert f'has no such database: database "{missing}" does not exist' in said


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A loopback server that accepts and never answers, as a hung PostgreSQL would."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_server_that_never_answers_times_out(pg_target: PostgresTarget, silent_port: int) -> None:
    said = await refused_with(elsewhere(pg_target, port=silent_port), connect_timeout=0.3)
    assert said == f"PostgreSQL at 127.0.0.1:{silent_port} did not answer in time"


async def test_too_many_connections_is_said(pg_target: PostgresTarget) -> None:
    role, password = f"tillhook_full_{secrets.token_hex(4)}", secrets.token_hex(8)
    admin = await connect(pg_target)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0 PASSWORD '{password}'")
        parts = urlsplit(pg_target.dsn)
        target = PostgresTarget(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}").geturl(), password)
        said = await refused_with(target)
        assert said.startswith(f'PostgreSQL has too many connections: too many connections for role "{role}"')
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_a_session_the_server_ends_is_said_as_lost(pg_target: PostgresTarget) -> None:
    victim, admin = await connect(pg_target), await connect(pg_target)
    ended = asyncio.Event()
    victim.add_termination_listener(lambda _conn: ended.set())
    try:
        await admin.fetchval("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        await asyncio.wait_for(ended.wait(), 10)
        with pytest.raises(DRIVER_ERRORS) as caught:
            await victim.fetchval("SELECT 1")
        said = describe_pg_error(caught.value, target=pg_target)
        assert said.startswith("the connection to PostgreSQL was lost:"), said
    finally:
        victim.terminate()
        await admin.close()


async def test_a_pool_opens_its_minimum_at_once(pg_target: PostgresTarget) -> None:
    pool = await create_pool(pg_target, min_size=2, max_size=3)
    try:
        assert await pool.fetchval("SELECT 41 + 1") == 42
        opened = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert opened >= 1  # the other of the two, idle in the pool
    finally:
        await pool.close()


async def test_a_pool_that_cannot_connect_is_unavailable(pg_target: PostgresTarget) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        await create_pool(with_password(pg_target, "not-the-Pa55word"), min_size=1, max_size=2)
    assert caught.value.message.startswith("PostgreSQL refused the login: password authentication failed")
    assert "not-the-Pa55word" not in caught.value.message
