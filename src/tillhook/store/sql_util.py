"""Small helpers for building parameterised SQL."""

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# Well under SQLite's default limit of 32766 host parameters.
CHUNK = 500


def placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def in_chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[list[T]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


# Rows per statement: powers of two up to this, so a handful of statement shapes are
# prepared once and kept in the connection's statement cache.
_MAX_ROWS_PER_STATEMENT = 64


def rows_at_once(conn: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Run `sql`, whose "{rows}" becomes a list of row value tuples ("(?, ?), (?, ?)"), for
    many rows per statement. executemany steps a statement once per row, and every step gives
    up the GIL and has to get it back from a busy event loop; a statement of 64 rows does that
    once."""
    if not rows:
        return
    one = "(" + ", ".join("?" * len(rows[0])) + ")"
    start = 0
    while start < len(rows):
        left = len(rows) - start
        size = _MAX_ROWS_PER_STATEMENT if left >= _MAX_ROWS_PER_STATEMENT else 1 << (left.bit_length() - 1)
        chunk = rows[start : start + size]
        conn.execute(sql.replace("{rows}", ", ".join([one] * size)), [value for row in chunk for value in row])
        start += size
