"""The overview's figures read from a real SQLite file: attempts per hour with their p50/p95
(kept by the database as attempts are written), and deliveries by state, which must stay
exact through every change of state and the retention purge."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support import on_writer
from tillhook.store import SqliteStore
from tillhook.store.schema import MIGRATIONS, migrate

HOUR = 3600.0
NOW = 498_889 * HOUR + 1800.0  # half past an hour (2026-11-30 01:30 UTC)


def add_deliveries(conn: sqlite3.Connection, states: list[str], start_id: int = 1) -> None:
    for i, state in enumerate(states, start_id):
        conn.execute(
            "INSERT OR IGNORE INTO events (id, type, created_at, body) VALUES (?, 't', ?, x'00')",
            (f"evt_{i}", NOW - 10 * HOUR),
        )
        conn.execute(
            "INSERT INTO deliveries (id, event_id, endpoint_id, state, created_at, updated_at)"
            " VALUES (?, ?, 'ep', ?, ?, ?)",
            (i, f"evt_{i}", state, NOW, NOW),
        )


def add_attempt(conn: sqlite3.Connection, delivery_id: int, started_at: float, ms: float, outcome: str) -> None:
    conn.execute(
        "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, outcome) VALUES (?, ?, ?, ?, ?)",
        (delivery_id, started_at, ms, 200 if outcome == "delivered" else 500, outcome),
    )


async def test_attempts_by_hour_counts_outcomes_and_durations_per_hour(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    try:

        def write(conn: sqlite3.Connection) -> None:
            add_deliveries(conn, ["delivered"] * 3)
            this_hour = NOW - 1800.0  # the top of the current hour
            for ms in (2.5, 4, 4, 4, 4, 4, 4, 4, 4, 40):  # 10 delivered this hour
                add_attempt(conn, 1, this_hour + 60, ms, "delivered")
            add_attempt(conn, 2, this_hour + 59 * 60, 2000.0, "retry")  # a timeout: failed, no latency
            add_attempt(conn, 3, this_hour - 3 * HOUR + 5, 120.0, "delivered")
            add_attempt(conn, 3, this_hour - 30 * HOUR, 1.0, "delivered")  # older than a day: not shown

        await on_writer(store, write)
        hours = await store.attempts_by_hour(NOW)
        assert len(hours) == 24 and hours[-1].start == NOW - 1800.0 and hours[0].start == NOW - 1800.0 - 23 * HOUR
        last = hours[-1]
        assert (last.delivered, last.failed) == (10, 1)
        assert last.p50_ms is not None and 3 <= last.p50_ms <= 5  # the step holding 4 ms is [3, 5)
        assert last.p95_ms is not None and 30 <= last.p95_ms <= 50  # the slowest one, 40 ms
        three_ago = hours[-4]
        assert (three_ago.delivered, three_ago.failed) == (1, 0) and 100 <= (three_ago.p50_ms or 0) <= 150
        assert sum(h.delivered + h.failed for h in hours) == 12
        assert all(h.p50_ms is None for h in hours[:-4])
    finally:
        await store.close()


async def test_the_hours_are_counted_from_attempts_written_before_the_upgrade(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for version, script in enumerate(MIGRATIONS[:5]):
        conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {version + 1}; COMMIT;")
    add_deliveries(conn, ["delivered", "failed"])
    import time

    now = time.time()  # the upgrade keeps the last 31 days by the wall clock
    add_attempt(conn, 1, now - 60, 8.0, "delivered")
    add_attempt(conn, 2, now - 60, 8.0, "failed")
    assert migrate(conn) == 5
    conn.close()
    store = SqliteStore(db)
    await store.open()
    try:
        last = (await store.attempts_by_hour(now))[-1]
        assert (last.delivered, last.failed) == (1, 1) and last.p50_ms is not None and 7 <= last.p50_ms <= 10
        assert await store.count_by_state() == {"delivered": 1, "failed": 1}
    finally:
        await store.close()


async def test_counts_by_state_stay_exact_through_changes_and_the_purge(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    try:
        await on_writer(
            store,
            lambda conn: add_deliveries(
                conn, ["pending"] * 4 + ["delivering"] * 2 + ["delivered"] * 5 + ["failed"] * 3 + ["cancelled"]
            ),
        )
        assert await store.count_by_state() == {
            "pending": 4,
            "delivering": 2,
            "delivered": 5,
            "failed": 3,
            "cancelled": 1,
        }

        def change(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE deliveries SET state = 'delivered' WHERE id IN (1, 5)")  # pending, delivering
            conn.execute("UPDATE deliveries SET state = 'pending' WHERE id = 12")  # a failed one retried

        await on_writer(store, change)
        assert await store.count_by_state() == {
            "pending": 4,
            "delivering": 1,
            "delivered": 7,
            "failed": 2,
            "cancelled": 1,
        }
        # Rows above the highest id counted before are added to what was counted then.
        await on_writer(store, lambda conn: add_deliveries(conn, ["pending", "delivered", "failed"], start_id=16))
        assert await store.count_by_state() == {
            "pending": 5,
            "delivering": 1,
            "delivered": 8,
            "failed": 3,
            "cancelled": 1,
        }
        assert await store.purge_before(NOW) > 0  # every finished event is older than the cutoff
        # The purge deleted rows below that id: everything is counted again.
        assert await store.count_by_state() == {"pending": 5, "delivering": 1}
    finally:
        await store.close()
