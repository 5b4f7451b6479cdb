"""Built-in transforms: one CEL expression per chat service, turning any event (alerts too)
into a message a person reads."""

from __future__ import annotations

PRESETS: dict[str, str] = {}
