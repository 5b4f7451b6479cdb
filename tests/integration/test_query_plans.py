"""The statements on the hot path use their indexes, so their cost does not grow with the
history kept (a million pending deliveries, weeks of delivered events)."""

from __future__ import annotations

import sqlite3
import time

from tillhook.store import SqliteStore


def plan(db, sql: str, params=()) -> str:
    with sqlite3.connect(db) as conn:
        return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


async def test_hot_statements_search_by_index(tmp_path):
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    await store.close()
    db = tmp_path / "t.db"
    due = plan(db, "SELECT id FROM deliveries WHERE endpoint_id = ? AND state = 'pending' AND next_attempt_at <= ?"
                   " ORDER BY next_attempt_at, id LIMIT ?", ("e", 1.0, 4))
    assert "USING INDEX deliveries_due" in due and "SCAN" not in due
    head = plan(db, "SELECT id FROM deliveries WHERE endpoint_id = ? AND state IN ('pending', 'delivering')"
                    " ORDER BY id LIMIT 1", ("e",))
    assert "deliveries_unfinished" in head and "SCAN deliveries" not in head
    bodies = plan(db, "SELECT id, body FROM events WHERE id IN (?, ?)", ("a", "b"))
    assert "SEARCH events USING INDEX" in bodies
    retention = plan(db, "SELECT id FROM events WHERE created_at < ? ORDER BY created_at LIMIT ?", (time.time(), 500))
    assert "events_by_time" in retention
