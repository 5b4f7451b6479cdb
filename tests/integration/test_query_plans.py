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
    due = plan(
        db,
        "SELECT id FROM deliveries WHERE endpoint_id = ? AND state = 'pending' AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at, id LIMIT ?",
        ("e", 1.0, 4),
    )
    assert "USING INDEX deliveries_due" in due and "SCAN" not in due
    head = plan(
        db,
        "SELECT id FROM deliveries WHERE endpoint_id = ? AND state IN ('pending', 'delivering') ORDER BY id LIMIT 1",
        ("e",),
    )
    assert "deliveries_unfinished" in head and "SCAN deliveries" not in head
    bodies = plan(db, "SELECT id, body FROM events WHERE id IN (?, ?)", ("a", "b"))
    assert "SEARCH events USING INDEX" in bodies
    retention = plan(db, "SELECT id FROM events WHERE created_at < ? ORDER BY created_at LIMIT ?", (time.time(), 500))
    assert "events_by_time" in retention


async def test_the_overview_counts_on_partial_indexes_and_reads_hours_by_key(tmp_path):
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    await store.close()
    db = tmp_path / "t.db"
    from tillhook.store import log_sql

    counts = plan(db, log_sql.COUNT_BY_STATE)
    # count(*) walks an index, never the table; each state is counted on an index holding it alone.
    assert "SCAN deliveries USING COVERING INDEX" in counts
    assert "deliveries_due" in counts and "deliveries_in_flight" in counts and "deliveries_unsuccessful" in counts
    assert "SCAN deliveries\u0020|" not in counts + " |" and not counts.endswith("SCAN deliveries")
    in_flight = plan(db, log_sql.IN_FLIGHT_BY_ENDPOINT)  # the few delivering, never the history
    assert "SEARCH deliveries USING INDEX deliveries_in_flight (state=?)" in in_flight
    hours = plan(db, log_sql.ATTEMPT_HOURS, (1,))
    assert "SEARCH attempt_hours USING PRIMARY KEY (hour>?)" in hours
    since = plan(db, log_sql.COUNT_BY_STATE_SINCE, (1,))
    assert "SEARCH deliveries USING INTEGER PRIMARY KEY (rowid>?)" in since


async def test_the_delivery_log_filtered_by_status_searches_an_index(tmp_path):
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    await store.close()
    from tillhook.store import log_sql
    from tillhook.store.port import LogFilter

    sql, params = log_sql.deliveries_query(LogFilter(endpoint_id="e", last_status=500))
    with sqlite3.connect(tmp_path / "t.db") as conn:
        conn.create_function("tillhook_subscribes", 2, lambda patterns, event_type: True)
        found = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "deliveries_by_status" in found and "SCAN d" not in found


async def test_the_oldest_pending_delivery_is_found_on_the_unfinished_index(tmp_path):
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    await store.close()
    from tillhook.store import log_sql

    found = plan(tmp_path / "t.db", " UNION ALL ".join([log_sql.OLDEST_PENDING_OF] * 3), ("a", "b", "c"))
    # Read in id order on the index, never a scan nor a sort of an endpoint's pending rows.
    assert found.count("USING INDEX deliveries_unfinished (endpoint_id=?)") == 3
    assert "SCAN deliveries" not in found and "TEMP B-TREE" not in found
