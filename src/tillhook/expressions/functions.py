"""Functions that tillhook adds to CEL, for presets and for anyone's transforms. They run in
the sandbox process only, on values CEL already holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FUNCTIONS: dict[str, Callable[..., Any]] = {}
