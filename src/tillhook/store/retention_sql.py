"""Purging old history in small batches, so that a purge never holds the writer for long."""

from __future__ import annotations

import sqlite3

from tillhook.store.sql_util import placeholders


def purge_batch(conn: sqlite3.Connection, cutoff: float, limit: int) -> int:
    """Delete up to `limit` events received before `cutoff` whose deliveries are all finished,
    with their deliveries and attempts; returns how many events went."""
    rows = conn.execute(
        "SELECT id FROM events WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries d"
        " WHERE d.event_id = events.id AND d.state IN ('pending', 'delivering')) ORDER BY created_at LIMIT ?",
        (cutoff, limit),
    ).fetchall()
    ids = [row[0] for row in rows]
    if not ids:
        return 0
    marks = placeholders(ids)
    conn.execute(
        f"DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id IN ({marks}))", ids
    )
    conn.execute(f"DELETE FROM deliveries WHERE event_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM events WHERE id IN ({marks})", ids)
    return len(ids)
