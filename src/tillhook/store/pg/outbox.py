"""The outbox on PostgreSQL (store/port.py `Outbox`), shared by every daemon pointed at the same
database: group commit of ingest, outcomes and claims on one writer connection, reads and the
admin writes on a pool, and this daemon's presence (its leases, its wake-ups) beside them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tillhook.errors import StoreError, StoreUnavailable
from tillhook.models import AttemptRecord, ClaimedDelivery, Endpoint, NewEvent
from tillhook.store.pg.connect import Conn, PostgresTarget, connect, create_pool, describe_pg_error
from tillhook.store.pg.reads import DRIVER_ERRORS, PgReads
from tillhook.store.pg.schema import migrate
from tillhook.store.port import ClaimRequest, ConfigApplied, DeliveryRow, Enqueued, LogFilter, RetriedMatching, Tokens

T = TypeVar("T")

# Reads and admin writes; the writer and the listener have a connection each of their own.
POOL_SIZE = 8


class PostgresStore(PgReads):
    def __init__(self, target: PostgresTarget, *, lease_s: float = 30.0) -> None:
        super().__init__()
        self.target = target
        self.lease_s = lease_s

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        conn = await connect(self.target)
        try:
            await migrate(conn)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"cannot prepare the outbox in {self.target.display}: {describe_pg_error(exc)}") from None
        finally:
            await conn.close()
        self._pool = await create_pool(self.target, min_size=1, max_size=POOL_SIZE)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def location(self) -> str:
        return self.target.display

    async def _transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """`fn(conn)` in a transaction of its own on a pool connection; the driver's errors
        come out as StoreUnavailable, tillhook's own (NotFound, Conflict) as they are."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                return await fn(conn)
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(describe_pg_error(exc)) from exc

    # -- tokens and endpoints (store/pg/admin.py) ----------------------------------------

    async def tokens(self, ingest: str | None, admin_: str | None, viewer: str | None) -> Tokens:
        raise NotImplementedError

    async def apply_config_endpoints(self, endpoints: Sequence[Endpoint], now: float) -> ConfigApplied:
        raise NotImplementedError

    async def check_writable(self) -> None:
        raise NotImplementedError

    async def purge_before(self, cutoff: float, limit: int = 500) -> int:
        raise NotImplementedError

    # -- the admin API's writes (store/pg/admin.py) --------------------------------------

    async def create_endpoint(self, endpoint: Endpoint, now: float) -> Endpoint:
        raise NotImplementedError

    async def update_endpoint(self, endpoint_id: str, changes: Mapping[str, Any], now: float) -> Endpoint:
        raise NotImplementedError

    async def delete_endpoint(self, endpoint_id: str, now: float) -> int:
        raise NotImplementedError

    async def set_endpoint_enabled(self, endpoint_id: str, enabled: bool, reason: str | None, now: float) -> Endpoint:
        raise NotImplementedError

    async def rotate_secret(self, endpoint_id: str, new_secret: str, old_expires_at: float, now: float) -> Endpoint:
        raise NotImplementedError

    async def replay(self, endpoint: Endpoint, since: float, until: float, only_failed: bool, now: float) -> int:
        raise NotImplementedError

    async def retry_delivery(self, delivery_id: int, now: float) -> DeliveryRow:
        raise NotImplementedError

    async def retry_matching(self, f: LogFilter, now: float, at_most: int) -> RetriedMatching:
        raise NotImplementedError

    # -- ingest and delivery (store/pg/batch.py) -----------------------------------------

    def enqueue(
        self, events: Sequence[NewEvent], start: Sequence[Sequence[bool]] | None = None, *, batch: bool = False
    ) -> asyncio.Future[Enqueued]:
        raise NotImplementedError

    async def claim_due(self, claim: ClaimRequest) -> list[ClaimedDelivery]:
        raise NotImplementedError

    def write_outcomes(
        self, records: Sequence[AttemptRecord], now: float, then_claim: ClaimRequest | None = None
    ) -> asyncio.Future[list[ClaimedDelivery]]:
        raise NotImplementedError

    async def requeue_in_flight(self, now: float) -> int:
        raise NotImplementedError

    async def backup(self, target: Path) -> int:
        raise NotImplementedError
