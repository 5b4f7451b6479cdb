"""Connecting to PostgreSQL, and its errors in words for the operator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from tillhook.errors import StoreUnavailable

# A connection of its own or one lent by the pool: the verbs run on either.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    dsn: str  # the URL with any password taken out
    password: str | None = None

    @property
    def display(self) -> str:
        return self.dsn

    def __repr__(self) -> str:
        return f"PostgresTarget({self.dsn!r})"


def describe_pg_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "PostgreSQL refused the connection: is it running?"
    if isinstance(exc, OSError | asyncpg.InterfaceError | asyncpg.ConnectionDoesNotExistError):
        return f"the connection to PostgreSQL was lost: {exc}"
    return f"PostgreSQL failed: {exc}"


async def connect(target: PostgresTarget, *, connect_timeout: float = 10.0, **kwargs: Any) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(target.dsn, password=target.password, timeout=connect_timeout, **kwargs)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise StoreUnavailable(describe_pg_error(exc)) from None


async def create_pool(
    target: PostgresTarget, *, min_size: int, max_size: int, connect_timeout: float = 10.0, **kwargs: Any
) -> asyncpg.Pool:
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            target.dsn,
            password=target.password,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            **kwargs,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise StoreUnavailable(describe_pg_error(exc)) from None
    return pool
