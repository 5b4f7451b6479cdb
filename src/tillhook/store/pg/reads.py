"""The PostgreSQL outbox's read-only verbs of the port, over a pool of connections (the rows
other daemons wrote are read like this daemon's own)."""

from __future__ import annotations

from typing import Any

import asyncpg

from tillhook.errors import StoreUnavailable
from tillhook.store.pg.connect import describe_pg_error

# What a lost or refused connection raises: the storage is unavailable, not a bug.
DRIVER_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class PgReads:
    """The read half of `PostgresStore`: its pool, opened and closed by the store."""

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        return self._pool

    async def _read(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return list(await self.pool.fetch(sql, *args))
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(describe_pg_error(exc)) from exc
