"""This daemon among the others sharing the outbox: its row in `daemons` and the leases on what
it claimed, renewed while it runs; a dead daemon's claims taken back once it is seen dead;
which daemon serves which endpoint; and the others' news (LISTEN), handed to the daemon. All
of it on one connection of its own, so that neither a busy pool nor a dead socket goes
unnoticed: a beat that fails reconnects, and listens again.

A daemon that cannot renew its leases stops serving (it starts no attempt once its last
renewal is two thirds of a lease old): another may be taking its work over.

Each endpoint is served by one live daemon at a time, the winner of a rendezvous hash over the
live daemons' ids: only it claims, attempts, backs off, probes and alerts for that endpoint,
so the endpoint's limits, its back-off and its alerts hold as they do with one daemon, with
no coordination per delivery. A daemon joining or leaving moves only the endpoints it wins
or held."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from tillhook.errors import StoreUnavailable
from tillhook.store.pg.batch import DUE_CHANNEL, ENDPOINTS_CHANNEL, notify_payloads
from tillhook.store.pg.connect import Conn, describe_pg_error
from tillhook.store.pg.reads import DRIVER_ERRORS
from tillhook.store.port import Due, EndpointsChanged, News

log = structlog.get_logger("tillhook.store")

# A daemon not seen for this many of its leases is forgotten (its row deleted).
_FORGET_AFTER_LEASES = 1000


def new_daemon_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def rendezvous_weight(daemon_id: str, key: str) -> bytes:
    return hashlib.blake2b(f"{daemon_id}\0{key}".encode(), digest_size=8).digest()


# This daemon seen; its claims renewed (skipping those its writer is updating this instant,
# renewed at the next beat: the two never wait for each other); whether the endpoints changed.
_BEAT = """
WITH me AS (
    UPDATE daemons SET seen_at = $2, lease_s = $3, listen = coalesce($4, listen) WHERE id = $1 RETURNING id
), renewed AS (
    UPDATE deliveries SET lease_until = $2 + $3 WHERE id IN (
        SELECT id FROM deliveries WHERE state = 'delivering' AND claimed_by = $1 ORDER BY id FOR UPDATE SKIP LOCKED
    ) RETURNING id
)
SELECT (SELECT count(*) FROM me), (SELECT count(*) FROM renewed), (SELECT max(updated_at) FROM endpoints)
"""

# The claims of daemons not seen within their lease (killed, hung or cut off), whose own
# lease on the delivery ran out too.
_TAKE_BACK = """
UPDATE deliveries d SET state = 'pending', next_attempt_at = $1, updated_at = $1, claimed_by = NULL, lease_until = NULL
WHERE d.state = 'delivering' AND d.lease_until < $1 AND NOT EXISTS (
    SELECT 1 FROM daemons dm WHERE dm.id = d.claimed_by AND dm.seen_at + dm.lease_s >= $1
)
RETURNING d.endpoint_id, d.claimed_by
"""


class Presence:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        lease_s: float,
        now: Callable[[], float],
        daemon_id: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self.lease_s = lease_s
        self._now = now
        self._monotonic = monotonic
        self.daemon_id = daemon_id or new_daemon_id()
        self.on_news: Callable[[News], None] | None = None
        self.listen_address: str | None = None
        self._live: tuple[str, ...] = (self.daemon_id,)
        self._owners: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._failing: str | None = None  # why the last beat failed, once logged
        self._beat_now = asyncio.Event()  # a daemon came or went: look at once, not at the next beat
        self._renewed_at = -math.inf  # monotonic time of the last beat that renewed the leases
        self._healthy_since = math.inf  # monotonic time since which every beat has succeeded
        self._endpoints_changed_at: float | None = None

    # -- who serves what -----------------------------------------------------------------

    @property
    def live(self) -> tuple[str, ...]:
        """The ids of the daemons seen within their lease, this one among them, sorted."""
        return self._live

    def serves(self, key: str) -> bool:
        """Whether this daemon is the one to serve `key` (an endpoint id, or a task such as
        the backlog check that one daemon does for all): never while its leases may be
        running out unrenewed."""
        if self._monotonic() - self._renewed_at > self.lease_s * 2 / 3:
            return False
        known = self._owners.get(key)
        if known is None:
            known = self._owners[key] = self.server_of(key) == self.daemon_id
        return known

    def server_of(self, key: str) -> str:
        """The id of the live daemon that serves `key`: every daemon names the same one once
        they have seen the same daemons live."""
        return max(self._live, key=lambda daemon: rendezvous_weight(daemon, key))

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        conn = await self._open()
        await self._present(conn, self._now())
        await self._beat(conn)
        await conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)  # the others: one more daemon
        self._task = asyncio.create_task(self._run(), name="tillhook-presence")

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def stop(self) -> None:
        """Leave: the others take this daemon's endpoints at once rather than after its lease
        (what it still held is put back by the store's requeue, before this)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(*DRIVER_ERRORS):  # PostgreSQL away: the others see the lease run out
            await conn.execute("DELETE FROM daemons WHERE id = $1", self.daemon_id)
            # The others: endpoints to take over now.
            await conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 5)

    # -- the beat ------------------------------------------------------------------------

    async def beat_once(self) -> None:
        """One beat now, as the side task makes every third of a lease (a test steps it)."""
        conn = self._conn if self._conn is not None and not self._conn.is_closed() else await self._open()
        await self._beat(conn)

    async def _run(self) -> None:
        interval = max(0.2, self.lease_s / 3)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), interval)
            self._beat_now.clear()
            try:
                await self.beat_once()
            except (*DRIVER_ERRORS, StoreUnavailable) as exc:
                self._healthy_since = math.inf
                reason = exc.message if isinstance(exc, StoreUnavailable) else describe_pg_error(exc)
                if self._failing != reason:
                    log.error("store_presence_failed", error=reason, lease_s=self.lease_s)
                    self._failing = reason
                await self._drop()
                continue
            if self._failing is not None:
                log.info("store_presence_restored")
                self._failing = None

    async def _open(self) -> asyncpg.Connection:
        """The presence's connection, listening: whatever was said while nobody listened is
        looked at once."""
        conn = await self._connect()
        try:
            await conn.add_listener(DUE_CHANNEL, self._heard)
            await conn.add_listener(ENDPOINTS_CHANNEL, self._heard)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._tell(EndpointsChanged())
        self._tell(Due(None))
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _present(self, conn: Conn, now: float) -> None:
        await conn.execute(
            "INSERT INTO daemons (id, host, pid, listen, started_at, seen_at, lease_s)"
            " VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (id) DO NOTHING",
            self.daemon_id,
            socket.gethostname(),
            os.getpid(),
            self.listen_address,
            now,
            self.lease_s,
        )

    async def _beat(self, conn: Conn) -> None:
        now, started = self._now(), self._monotonic()
        # Another daemon's work is taken back only by one that has itself been beating for a
        # whole lease: after PostgreSQL was away for longer than a lease, every daemon's
        # leases look run out, and each must first get the chance to renew its own.
        may_take_back = started - self._healthy_since >= self.lease_s
        async with conn.transaction():
            beat = await conn.fetchrow(_BEAT, self.daemon_id, now, self.lease_s, self.listen_address)
            assert beat is not None
            if not beat[0]:
                # Forgotten while away: present again, and said, so the others look at once.
                await self._present(conn, now)
                await conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)
            taken = await conn.fetch(_TAKE_BACK, now) if may_take_back else []
            if taken:
                endpoints = sorted({r[0] for r in taken})
                await conn.execute(
                    "SELECT pg_notify($1, x) FROM unnest($2::text[]) AS x", DUE_CHANNEL, notify_payloads(endpoints)
                )
            live = await conn.fetch("SELECT id FROM daemons WHERE seen_at + lease_s >= $1", now)
            await conn.execute(
                "DELETE FROM daemons WHERE seen_at + lease_s * $2 < $1 AND id <> $3",
                now,
                _FORGET_AFTER_LEASES,
                self.daemon_id,
            )
        self._renewed_at = started
        if self._healthy_since == math.inf:
            self._healthy_since = started
        if taken:
            by = sorted({r[1] for r in taken if r[1]})
            log.warning(
                "deliveries_taken_back",
                deliveries=len(taken),
                from_daemons=by,
                why="their daemon was not seen within its lease: killed, hung or cut off from the database",
            )
        changed_at = beat[2]
        if changed_at != self._endpoints_changed_at:
            if self._endpoints_changed_at is not None:
                self._tell(EndpointsChanged())  # a change whose news did not come through
            self._endpoints_changed_at = changed_at
        self._set_live(tuple(sorted({r[0] for r in live} | {self.daemon_id})))

    def _set_live(self, live: tuple[str, ...]) -> None:
        if live == self._live:
            return
        joined, left = set(live) - set(self._live), set(self._live) - set(live)
        self._live = live
        self._owners.clear()
        log.info("daemons_changed", live=len(live), joined=sorted(joined), left=sorted(left))
        self._tell(Due(None))  # endpoints this daemon now serves may have work waiting

    # -- news from the others --------------------------------------------------------------

    def _heard(self, _conn: object, _pid: int, channel: str, message: object) -> None:
        payload = str(message)
        if channel == ENDPOINTS_CHANNEL:
            self._tell(EndpointsChanged())
        elif payload:
            self._tell(Due(frozenset(payload.split(","))))
        else:
            # A daemon started or stopped: who serves what may have changed.
            self._beat_now.set()
            self._tell(Due(None))

    def _tell(self, news: News) -> None:
        if self.on_news is not None:
            self.on_news(news)
