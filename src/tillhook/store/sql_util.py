"""Small helpers for building parameterised SQL."""

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

# Well under SQLite's default limit of 32766 host parameters.
CHUNK = 500


def placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def in_chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[list[T]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])
