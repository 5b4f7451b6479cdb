"""Many rows per statement: every row lands once, in a handful of statement shapes."""

from __future__ import annotations

import sqlite3

import pytest

from tillhook.store.sql_util import rows_at_once


@pytest.mark.parametrize("count", [0, 1, 2, 3, 63, 64, 65, 127, 200, 1000])
def test_every_row_lands_once_in_few_statements(count: int) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    rows = [(i, f"row {i}") for i in range(count)]
    rows_at_once(conn, "INSERT INTO t (a, b) VALUES {rows}", rows)
    conn.set_trace_callback(None)
    assert conn.execute("SELECT a, b FROM t ORDER BY a").fetchall() == rows
    # 64 rows a statement, then the remainder in powers of two: a few shapes, each prepared once.
    assert len(statements) == count // 64 + bin(count % 64).count("1")
    assert len({s.count("(") for s in statements}) <= 7


def test_an_update_from_values_writes_each_row_by_key() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, n INTEGER DEFAULT 0)")
    conn.executemany("INSERT INTO t (a, b) VALUES (?, ?)", [(i, "old") for i in range(5)])
    rows_at_once(
        conn,
        "UPDATE t SET b = v.column1, n = n + 1 FROM (VALUES {rows}) AS v WHERE t.a = v.column2",
        [("new 1", 1), ("new 3", 3)],
    )
    assert conn.execute("SELECT a, b, n FROM t ORDER BY a").fetchall() == [
        (0, "old", 0),
        (1, "new 1", 1),
        (2, "old", 0),
        (3, "new 3", 1),
        (4, "old", 0),
    ]
