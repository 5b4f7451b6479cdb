"""Placeholder until the checker lands: parse only."""

from __future__ import annotations

from typing import Literal

import cel


class ExpressionError(ValueError):
    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.line, self.column = reason, line, column


def check(source: str, kind: Literal["filter", "transform"]) -> str:
    try:
        cel.compile(source)
    except ValueError as exc:
        raise ExpressionError(str(exc)) from None
    return source
