"""A consistent copy of the live database through SQLite's online backup API: the daemon
keeps running and writing; the copy is the database as of one moment."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tillhook.errors import StoreError


def backup(source: Path, target: Path) -> int:
    """Copy `source` to `target` (which must not exist); returns the events it holds."""
    if not source.is_file():
        raise StoreError(f"there is no database at {source}; is storage.path right?")
    if target.exists():
        raise StoreError(f"{target} exists already; choose a new file name")
    if not target.parent.is_dir():
        raise StoreError(f"the directory {target.parent} does not exist")
    partial = target.with_name(target.name + ".partial")
    try:
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # owner-only, like the original
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        dst = sqlite3.connect(partial)
        try:
            # One step (pages=-1) reads the whole database inside one read transaction: a
            # snapshot, however busy the writer is meanwhile.
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
            events = int(dst.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            dst.close()
            src.close()
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
