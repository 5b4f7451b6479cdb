"""store/lock.py: one holder per database, however its path is spelled; the holder is named;
the lock sits beside the database and leaves SQLite's own locking alone."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from tillhook.errors import DatabaseInUse
from tillhook.store.lock import DatabaseLock, lock_path


def test_the_lock_file_is_beside_the_database_and_owner_only(tmp_path: Path) -> None:
    lock = DatabaseLock(tmp_path / "tillhook.db")
    lock.acquire()
    try:
        assert lock.path == tmp_path / "tillhook.db.lock"
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        assert not (tmp_path / "tillhook.db").exists()  # the database itself is not touched
    finally:
        lock.release()


def test_a_second_holder_is_refused_with_the_first_named(tmp_path: Path) -> None:
    first = DatabaseLock(tmp_path / "tillhook.db")
    first.acquire()
    first.note(listen="127.0.0.1:8787")
    try:
        with pytest.raises(DatabaseInUse) as refused:
            DatabaseLock(tmp_path / "tillhook.db").acquire()
        message = refused.value.message
        assert f"pid {os.getpid()}" in message and "listening on 127.0.0.1:8787" in message
        assert "started 20" in message and str(tmp_path / "tillhook.db") in message
    finally:
        first.release()


def test_released_it_can_be_taken_again(tmp_path: Path) -> None:
    first = DatabaseLock(tmp_path / "tillhook.db")
    first.acquire()
    first.release()
    second = DatabaseLock(tmp_path / "tillhook.db")
    second.acquire()
    assert second.held
    second.release()
    assert not second.held


def test_every_spelling_of_one_database_meets_at_one_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "state")
    monkeypatch.chdir(tmp_path / "state")
    spellings = [
        Path("tillhook.db"),
        tmp_path / "state" / "tillhook.db",
        tmp_path / "link" / "tillhook.db",
        tmp_path / "state" / ".." / "state" / "tillhook.db",
    ]
    assert {lock_path(p) for p in spellings} == {tmp_path / "state" / "tillhook.db.lock"}
    held = DatabaseLock(spellings[0])
    held.acquire()
    try:
        for spelling in spellings[1:]:
            with pytest.raises(DatabaseInUse):
                DatabaseLock(spelling).acquire()
    finally:
        held.release()


def test_an_unreadable_holder_note_still_refuses(tmp_path: Path) -> None:
    first = DatabaseLock(tmp_path / "tillhook.db")
    first.acquire()
    try:
        first.path.write_bytes(b"\x00not json")
        with pytest.raises(DatabaseInUse, match="pid unknown"):
            DatabaseLock(tmp_path / "tillhook.db").acquire()
    finally:
        first.release()


def test_sqlite_locks_work_as_ever_while_the_lock_is_held(tmp_path: Path) -> None:
    db = tmp_path / "tillhook.db"
    lock = DatabaseLock(db)
    lock.acquire()
    one = sqlite3.connect(db, isolation_level=None, timeout=0)
    two = sqlite3.connect(db, isolation_level=None, timeout=0)
    try:
        one.execute("PRAGMA journal_mode = WAL")
        one.execute("CREATE TABLE t (x)")
        one.execute("BEGIN IMMEDIATE")
        one.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            two.execute("BEGIN IMMEDIATE")  # SQLite's own write lock still excludes
        one.execute("COMMIT")
        two.execute("BEGIN IMMEDIATE")
        two.execute("INSERT INTO t VALUES (2)")
        two.execute("COMMIT")
        assert one.execute("SELECT count(*) FROM t").fetchone()[0] == 2
        # ...and closing SQLite's descriptors leaves ours held.
        one.close()
        two.close()
        with pytest.raises(DatabaseInUse):
            DatabaseLock(db).acquire()
    finally:
        one.close()
        two.close()
        lock.release()
