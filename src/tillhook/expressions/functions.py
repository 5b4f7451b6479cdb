"""Functions that tillhook adds to CEL, for presets and for anyone's transforms. They run in
the sandbox process only, on values CEL already holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cel
from cel import stdlib

FIELDS = ("id", "type", "timestamp", "data")

FUNCTIONS: dict[str, Callable[..., Any]] = {}


def make_context() -> cel.Context:
    """CEL's extended standard library and tillhook's functions, made once per process:
    registering them costs more than an evaluation."""
    context = cel.Context()
    stdlib.add_stdlib_to_context(context)
    for name, function in FUNCTIONS.items():
        context.add_function(name, function)
    return context


def bind(context: cel.Context, event: dict[str, Any]) -> cel.Context:
    """The event's fields as the expression's variables."""
    context.update({name: event.get(name) for name in FIELDS})
    return context
