"""Reads for the commands that run beside the daemon (`tillhook tokens`, `status`): read-only,
without the daemon's lock, and never creating a database where there is none."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tillhook.errors import NoDatabase, StoreError
from tillhook.store.backup import read_only_uri

TOKEN_KEYS = ("ingest_token", "admin_token", "viewer_token")


def stored_tokens(path: Path) -> dict[str, str]:
    """The tokens the daemon generated and kept in its database (those it has)."""
    if not path.is_file():
        raise NoDatabase(f"there is no database at {path.absolute()}")
    try:
        conn = sqlite3.connect(read_only_uri(path), uri=True, timeout=5)
        try:
            rows = conn.execute(
                f"SELECT key, value FROM meta WHERE key IN ({', '.join('?' * len(TOKEN_KEYS))})", TOKEN_KEYS
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc) or "not a database" in str(exc):
            raise StoreError(f"{path.absolute()} is not a tillhook database") from None
        raise StoreError(f"cannot read {path.absolute()}: {exc}") from None
    return dict(rows)
