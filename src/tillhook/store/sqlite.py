"""The outbox on SQLite: domain verbs over one writer connection (group commit, on a thread of
its own) and one reader connection (WAL lets reads run beside the writer)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tillhook.errors import Conflict, StoreError, StoreUnavailable
from tillhook.models import (
    AttemptRecord,
    ClaimedDelivery,
    Endpoint,
    NewEvent,
)
from tillhook.store import admin_sql, endpoints_sql, log_sql, retention_sql
from tillhook.store.backup import backup_file
from tillhook.store.committer import GroupCommitter
from tillhook.store.lock import DatabaseLock
from tillhook.store.log_sql import sql_subscribes
from tillhook.store.ops import BatchApplier, Call, Ingest, Record, WriteOp
from tillhook.store.port import ClaimRequest, ConfigApplied, DeliveryRow, Enqueued, LogFilter, RetriedMatching, Tokens
from tillhook.store.readonly import stored_tokens
from tillhook.store.reads import SqliteReads, describe_sqlite_error
from tillhook.store.schema import migrate

_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    # Everything acknowledged must survive a power cut: fsync the WAL on every commit.
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 5000",
    # After a burst, give the disk back: the write-ahead log is cut to this at checkpoints.
    "PRAGMA journal_size_limit = 67108864",
    "PRAGMA foreign_keys = OFF",
)


def _connect_writer(path: Path) -> sqlite3.Connection:
    """On the writer thread, which the connection never leaves."""
    # isolation_level None: the batch applier opens and closes each transaction itself.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        migrate(conn)
        conn.create_function("tillhook_subscribes", 2, sql_subscribes, deterministic=True)
    except BaseException:
        conn.close()
        raise
    return conn


def _unavailable(exc: Exception) -> Exception:
    """What the waiters of a failed transaction are given: the storage's trouble in words."""
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(describe_sqlite_error(exc))
    return exc


class SqliteStore(SqliteReads):
    """The outbox (store/port.py `Outbox`) in one SQLite file: the lifecycle and every write
    verb here, over the writer connection; the reads come from `SqliteReads`. Beyond the
    port, for the composition root and store/watch.py: `on_commit`, `announce`, and what a
    lost file needs (`file_id`, `refuse_writes`, `drain_writes`, `copy_to`, `lost`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(Path(path))
        self._committer: GroupCommitter[WriteOp] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.on_commit: Callable[[int], None] | None = None  # told how many writes each commit held
        self.lock = DatabaseLock(self.path)
        self.file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self.lost: str | None = None  # why every write is refused (the file is gone), once it is

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if not self.path.parent.is_dir():
            raise StoreError(f"the directory for the database, {self.path.parent}, does not exist")
        # Before anything reads or writes the database: this is its only writer.
        self.lock.acquire()
        try:
            # The outbox holds secrets and customer data: owner-only from the first byte.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            st = os.stat(self.path)  # as the watcher will look at it (stat, not fstat)
            self.file_id = (st.st_dev, st.st_ino)
            self._committer = GroupCommitter(BatchApplier(), self._committed, _unavailable)
            await self._committer.start(lambda: _connect_writer(self.path))
            await self.open_reader()
        except sqlite3.DatabaseError as exc:
            await self.close()
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreError(
                    f"{self.path} is not a tillhook database or is corrupt: restore it from a backup,"
                    " or move it aside to start with an empty outbox"
                ) from None
            raise StoreError(f"cannot open {self.path}: {describe_sqlite_error(exc)}") from None
        except OSError as exc:
            await self.close()
            raise StoreError(f"cannot open {self.path}: {exc.strerror}") from None
        except BaseException:
            await self.close()
            raise
        self._writer = asyncio.create_task(self._committer.wait_finished(), name="tillhook-store-writer")

    @property
    def writer(self) -> asyncio.Task[None] | None:
        return self._writer

    @property
    def location(self) -> str:
        return str(self.path)

    async def size_bytes(self) -> int:
        """The file and its write-ahead log (the -shm index is a few pages, and recreated)."""
        total = 0
        for candidate in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(FileNotFoundError):
                total += candidate.stat().st_size
        return total

    async def backup(self, target: Path) -> int:
        """Through a connection of its own, read-only: a daemon may hold the lock meanwhile."""
        return await asyncio.to_thread(backup_file, self.path, target)

    async def read_tokens(self) -> dict[str, str]:
        return await asyncio.to_thread(stored_tokens, self.path)

    def _committed(self, ops: int) -> None:
        if self.on_commit is not None:
            self.on_commit(ops)

    async def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
            with contextlib.suppress(Exception):  # a writer that died has been reported already
                await self._committer.wait_finished()
            self._committer = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
            self._writer = None
        await self.close_reader()
        self.lock.release()

    def _submit(self, op: WriteOp) -> asyncio.Future[Any]:
        if self.lost is not None:
            raise StoreUnavailable(self.lost)
        if self._committer is None:
            raise StoreUnavailable("the store is not open")
        try:
            return self._committer.submit(op)
        except RuntimeError:
            raise StoreUnavailable("the store is closing") from None

    def _queued(self, op: WriteOp) -> asyncio.Future[Any]:
        """`op` queued, as a future done as soon as its transaction is over; a refusal to
        queue it comes as a future failed already."""
        try:
            return self._submit(op)
        except StoreUnavailable as exc:
            refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            refused.set_exception(exc)
            return refused

    async def _write(self, op: WriteOp) -> Any:
        future = self._submit(op)
        try:
            return await future
        except sqlite3.IntegrityError:
            raise  # a constraint said no to this op alone: the caller turns it into a conflict
        except sqlite3.Error as exc:
            raise StoreUnavailable(describe_sqlite_error(exc)) from exc

    async def _call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `fn(conn)` on the writer thread inside the next write transaction; its own errors
        are raised here."""
        result = await self._write(Call(fn))
        if isinstance(result, Exception):
            raise result
        return result

    # -- when the file is lost (store/watch.py) --------------------------------------------

    def refuse_writes(self, reason: str) -> None:
        """From now on every write fails with StoreUnavailable(reason); reads go on."""
        self.lost = reason

    async def drain_writes(self) -> None:
        """Until every write queued so far is committed (or has failed): a no-op queued behind
        them, as the writer takes its queue in order."""
        if self._committer is None:
            return
        try:
            barrier = self._committer.submit(Call(lambda conn: None))
        except RuntimeError:
            return  # closing: what was queued is being committed anyway
        with contextlib.suppress(Exception):  # then what was ahead of it failed as well
            await barrier

    def announce(self, **facts: object) -> None:
        """Tell a second daemon refused the database who holds it (e.g. listen=...)."""
        self.lock.note(**facts)

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(transactions committed, write operations they held) since open."""
        if self._committer is None:
            return 0, 0
        return self._committer.transactions, self._committer.ops_committed

    # -- the outbox ----------------------------------------------------------------------

    def enqueue(
        self, events: Sequence[NewEvent], start: Sequence[Sequence[bool]] | None = None, *, batch: bool = False
    ) -> asyncio.Future[Enqueued]:
        """Queue events and their deliveries; the future is done once they are on disk.
        `start[i][j]`: store the delivery of event i to its j-th endpoint `delivering` and
        return it in `started`. An idempotency key reused with other content refuses them all
        (InvalidInput, naming each such event by its index when they came as a `batch`)."""
        return self._queued(Ingest(events, start, batch))

    async def claim_due(self, claim: ClaimRequest) -> list[ClaimedDelivery]:
        """Mark up to quotas[endpoint] due pending deliveries `delivering`, oldest due first;
        for an `ordered` endpoint only its oldest unfinished delivery, when that one is due."""
        if not any(n > 0 for n in claim.quotas.values()):
            return []
        claimed: list[ClaimedDelivery] = await self._write(claim)
        return claimed

    def write_outcomes(
        self, records: Sequence[AttemptRecord], now: float, then_claim: ClaimRequest | None = None
    ) -> asyncio.Future[list[ClaimedDelivery]]:
        """Queue outcomes (and, with `then_claim`, a claim as claim_due makes, in the same
        transaction) without waiting: the future is done on the event loop as soon as that
        transaction is over, with what was claimed or StoreUnavailable. Once queued, the
        outcomes are written even if the daemon is stopping."""
        return self._queued(Record(records, now, then_claim))

    async def requeue_in_flight(self, now: float) -> int:
        """Deliveries left `delivering` by a crash go back to `pending`, due now."""

        def requeue(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, updated_at = ?"
                " WHERE state = 'delivering'",
                (now, now),
            )
            return cursor.rowcount

        count: int = await self._call(requeue)
        return count

    async def purge_before(self, cutoff: float, limit: int = 500) -> int:
        """One small batch of the history older than `cutoff` (finished deliveries only)."""
        # Before and after: a count overlapping the purge in any way counts every row again.
        self.rows_deleted()
        purged: int = await self._call(lambda conn: retention_sql.purge_batch(conn, cutoff, limit))
        self.rows_deleted()
        return purged

    async def check_writable(self) -> None:
        def touch(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('health', 'ok')")

        await self._call(touch)

    # -- tokens and endpoints ------------------------------------------------------------

    async def tokens(self, ingest: str | None, admin: str | None, viewer: str | None) -> Tokens:
        """The configured tokens, else those kept in the database (made on first use; a
        database from before the viewer token gets one at its next start)."""

        def ensure(conn: sqlite3.Connection) -> dict[str, str]:
            for key, prefix in (("ingest_token", "ing_"), ("admin_token", "adm_"), ("viewer_token", "vwr_")):
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    (key, prefix + secrets.token_urlsafe(32)),
                )
            rows = conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('ingest_token', 'admin_token', 'viewer_token')"
            )
            return dict(rows)

        stored: dict[str, str] = await self._call(ensure)
        return Tokens(
            ingest=ingest or stored["ingest_token"],
            admin=admin or stored["admin_token"],
            viewer=viewer or stored["viewer_token"],
        )

    async def apply_config_endpoints(self, endpoints: Sequence[Endpoint], now: float) -> ConfigApplied:
        """Create or update the config file's endpoints by name. Config-managed endpoints no
        longer in the file get no new deliveries and hold theirs (not deleted); put back, they
        are enabled again. The reply names both."""
        applied: ConfigApplied = await self._call(lambda conn: endpoints_sql.apply_config(conn, endpoints, now))
        return applied

    # -- the admin API's writes ----------------------------------------------------------

    async def create_endpoint(self, endpoint: Endpoint, now: float) -> Endpoint:
        try:
            created: Endpoint = await self._call(lambda conn: admin_sql.insert_endpoint(conn, endpoint, now))
        except sqlite3.IntegrityError:
            raise Conflict(f"an endpoint named {endpoint.name!r} exists already", slug="name-taken") from None
        return created

    async def update_endpoint(self, endpoint_id: str, changes: Mapping[str, Any], now: float) -> Endpoint:
        try:
            updated: Endpoint = await self._call(
                lambda conn: admin_sql.update_endpoint(conn, endpoint_id, changes, now)
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"an endpoint named {changes.get('name')!r} exists already", slug="name-taken") from None
        return updated

    async def delete_endpoint(self, endpoint_id: str, now: float) -> int:
        cancelled: int = await self._call(lambda conn: admin_sql.delete_endpoint(conn, endpoint_id, now))
        return cancelled

    async def set_endpoint_enabled(self, endpoint_id: str, enabled: bool, reason: str | None, now: float) -> Endpoint:
        changed: Endpoint = await self._call(
            lambda conn: admin_sql.set_enabled(conn, endpoint_id, enabled, reason, now)
        )
        return changed

    async def rotate_secret(self, endpoint_id: str, new_secret: str, old_expires_at: float, now: float) -> Endpoint:
        rotated: Endpoint = await self._call(
            lambda conn: admin_sql.rotate_secret(conn, endpoint_id, new_secret, old_expires_at, now)
        )
        return rotated

    async def replay(self, endpoint: Endpoint, since: float, until: float, only_failed: bool, now: float) -> int:
        count: int = await self._call(lambda conn: admin_sql.replay(conn, endpoint, since, until, only_failed, now))
        return count

    async def retry_delivery(self, delivery_id: int, now: float) -> DeliveryRow:
        """Due now, whatever its state; the delivery as the retry left it (read in the same
        transaction: the dispatcher may send it at once)."""

        def retry(conn: sqlite3.Connection) -> DeliveryRow:
            admin_sql.retry_delivery(conn, delivery_id, now)
            return log_sql.to_delivery(conn.execute(*log_sql.delivery_query(delivery_id)).fetchone())

        retried: DeliveryRow = await self._call(retry)
        return retried

    async def retry_matching(self, f: LogFilter, now: float, at_most: int) -> RetriedMatching:
        """Counts and retries the failed deliveries `f` matches in one write transaction (see
        `admin_sql.retry_matching`)."""
        done: RetriedMatching = await self._call(lambda conn: admin_sql.retry_matching(conn, f, now, at_most))
        return done
