"""One daemon per database: an exclusive lock on `<database>.lock`, beside the database (the
only directory a hardened unit may write), taken before the database is touched and held
for the life of the process; the kernel drops it when the process ends, even by kill -9.

The lock file also says who holds it (pid, since when, where it listens), so that a second
daemon can name the first in its refusal. The file is never removed: unlinking a lock file
lets a third process lock a fresh inode while the second still holds the old one.

flock() and SQLite's own locks do not interfere: SQLite takes POSIX record locks (fcntl) on
the database and its -shm file, flock() takes a whole-file lock of another kind, on another
file; on Linux the two kinds are independent. Keeping our lock off the database file also
matters because closing any descriptor of a file drops every POSIX lock the process holds on
it, SQLite's included."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from tillhook.errors import DatabaseInUse, StoreError


def lock_path(database: Path) -> Path:
    # Resolved, so that every spelling of the same database (relative, through a symlink)
    # meets at the same lock file.
    resolved = database.resolve()
    return resolved.with_name(resolved.name + ".lock")


class DatabaseLock:
    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = lock_path(database)
        self._fd: int | None = None
        self._holder: dict[str, object] = {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise DatabaseInUse naming the process that has it."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DatabaseInUse(
                f"the database {self.database.resolve()} is in use by another tillhook ({describe_holder(holder)});"
                " run one daemon per database: stop that one first, or give this one another storage.path"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from None
        self._fd = fd
        self._holder = {"pid": os.getpid(), "started_at": _utc(time.time())}
        self._write_holder()

    def note(self, **facts: object) -> None:
        """Add to what the lock file says of its holder (e.g. listen="127.0.0.1:8787")."""
        self._holder.update(facts)
        if self._fd is not None:
            self._write_holder()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def _write_holder(self) -> None:
        assert self._fd is not None
        data = json.dumps(self._holder).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError:
            pass  # only the wording of a refusal depends on it; the lock itself holds


def _read_holder(fd: int) -> dict[str, object]:
    try:
        value = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def describe_holder(holder: dict[str, object]) -> str:
    parts = [f"pid {holder['pid']}" if "pid" in holder else "pid unknown"]
    if holder.get("listen"):
        parts.append(f"listening on {holder['listen']}")
    if holder.get("started_at"):
        parts.append(f"started {holder['started_at']}")
    return ", ".join(parts)


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
