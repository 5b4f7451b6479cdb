"""Placeholder: in-process evaluation with the interface of the sandbox."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import cel
import orjson

from tillhook.expressions.functions import bind, make_context


@dataclass(frozen=True)
class Bounds:
    time_s: float = 0.25
    memory_bytes: int = 512 * 2**20
    output_bytes: int = 2**20


class EvaluationError(Exception):
    pass


class Sandbox:
    def __init__(self, bounds: Bounds = Bounds(), *, name: str = "expressions") -> None:
        self._context = make_context()

    async def filter(self, source: str, events: Sequence[bytes]) -> list[bool | EvaluationError]:
        program = cel.compile(source)
        out: list[bool | EvaluationError] = []
        for body in events:
            try:
                value = program.execute(bind(self._context, json.loads(body)))
            except Exception as exc:  # noqa: BLE001
                out.append(EvaluationError(f"the filter failed: {exc}"))
                continue
            out.append(value if isinstance(value, bool) else EvaluationError("a filter must give true or false"))
        return out

    async def transform(self, source: str, event: bytes) -> bytes:
        try:
            return orjson.dumps(cel.compile(source).execute(bind(self._context, json.loads(event))))
        except Exception as exc:  # noqa: BLE001
            raise EvaluationError(f"the transform failed: {exc}") from None

    async def close(self) -> None:
        pass
