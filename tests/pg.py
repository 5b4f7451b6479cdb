"""Fresh PostgreSQL databases for the tests, on the throwaway cluster $TILLHOOK_TEST_POSTGRES
names (a superuser URL). `.ci/postgres start` makes such a cluster; the `pg_url` and
`pg_target` fixtures (tests/conftest.py) give each test a database of its own."""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

import pytest

from tillhook.store.pg.connect import PostgresTarget, connect

ENV = "TILLHOOK_TEST_POSTGRES"
HOW_TO_START = (
    f"{ENV} is not set: the PostgreSQL tests need a throwaway cluster. Start one with"
    ' `pg_env=$(.ci/postgres start) && eval "$pg_env"` (it sets the variable; `.ci/postgres stop`'
    f" removes it), or set {ENV} to a superuser URL like postgresql://tillhook:PASSWORD@127.0.0.1:5432/postgres"
)
PREFIX = "tillhook_"


def cluster_url() -> str:
    """The cluster's superuser URL; the test fails (never skips) without one."""
    url = os.environ.get(ENV, "")
    if not url:
        pytest.fail(HOW_TO_START, pytrace=False)
    return url


def database_url(cluster: str, name: str) -> str:
    """The URL of database `name` on the cluster, with the cluster's user and password."""
    return urlunsplit(urlsplit(cluster)._replace(path=f"/{name}"))


async def _on_cluster(sql: str) -> None:
    conn = await connect(PostgresTarget.from_url(cluster_url()))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database() -> str:
    """A new, empty database on the cluster: its URL."""
    name = PREFIX + secrets.token_hex(6)
    await _on_cluster(f'CREATE DATABASE "{name}"')
    return database_url(cluster_url(), name)


async def drop_database(url: str) -> None:
    """Drops a database create_database made, closing whatever connections a test left open."""
    name = urlsplit(url).path.removeprefix("/")
    if not name.startswith(PREFIX) or not name[len(PREFIX) :].isalnum():
        raise ValueError(f"{name!r} is not a database create_database made")
    await _on_cluster(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
