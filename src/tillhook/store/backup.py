"""A consistent copy of the live database through SQLite's online backup API: the daemon
keeps running and writing; the copy is the database as of one moment. The same copy, made
from the daemon's own connection, rescues a database whose file was deleted (watch.py)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from tillhook.errors import StoreError


def read_only_uri(path: Path) -> str:
    """Opened with this, SQLite never creates the file (nor writes to it)."""
    return f"file:{quote(str(path.absolute()))}?mode=ro"


def backup_file(source: Path, target: Path) -> int:
    """Copy `source` to `target` (which must not exist); returns the events it holds."""
    if not source.is_file():
        raise StoreError(f"there is no database at {source}; is storage.path right?")
    partial, dst = begin_copy(target)
    try:
        src = sqlite3.connect(read_only_uri(source), uri=True, timeout=30)
        try:
            # One step (pages=-1) reads the whole database inside one read transaction: a
            # snapshot, however busy the writer is meanwhile.
            src.backup(dst)
        finally:
            src.close()
    except sqlite3.Error as exc:
        abandon_copy(partial, dst)
        raise StoreError(f"the backup failed: {exc}") from None
    return end_copy(partial, dst, target)


def begin_copy(target: Path) -> tuple[Path, sqlite3.Connection]:
    """A new owner-only `<target>.partial` and a connection to fill it (from any thread)."""
    if target.exists():
        raise StoreError(f"{target} exists already; choose a new file name")
    if not target.parent.is_dir():
        raise StoreError(f"the directory {target.parent} does not exist")
    partial = target.with_name(target.name + ".partial")
    try:
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # owner-only, like the original
        return partial, sqlite3.connect(partial, check_same_thread=False)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"cannot write {target}: {exc}") from None
    except OSError as exc:
        raise StoreError(f"cannot write {target}: {exc.strerror}") from None


def end_copy(partial: Path, dst: sqlite3.Connection, target: Path) -> int:
    """Make the filled copy one self-contained file, on disk, at `target`; returns its events."""
    try:
        try:
            dst.execute("PRAGMA journal_mode = DELETE")
            events = int(dst.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            dst.close()
        with open(partial, "rb") as done:
            os.fsync(done.fileno())
        os.replace(partial, target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"the backup failed: {exc}") from None
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"cannot write {target}: {exc.strerror}") from None
    return events


def abandon_copy(partial: Path, dst: sqlite3.Connection) -> None:
    dst.close()
    partial.unlink(missing_ok=True)
