"""The event envelope: from the bytes the POS posts to the bytes every receiver gets.
Pure: no I/O, no clock of its own."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from tillhook.errors import InvalidInput
from tillhook.models import MAX_BATCH, MAX_JSON_DEPTH, EventIn, NewEvent, field_path, format_time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_message_id(now_s: float) -> str:
    """`msg_` and 26 Crockford base32 characters that sort by time of creation."""
    value = ((int(now_s * 1000) & ((1 << 48) - 1)) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "msg_" + "".join(reversed(chars))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node)
    return deepest


def parse_body(raw: bytes, idempotency_header: str | None) -> tuple[list[EventIn], bool]:
    """The events in a request body, and whether it was a batch (an array)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the body is not valid UTF-8 (byte {exc.start})", status=400, slug="malformed-body") from None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidInput(f"JSON nested deeper than {MAX_JSON_DEPTH} levels is refused", slug="invalid-event") from None
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", status=400, slug="malformed-body") from None
    if _depth(document) > MAX_JSON_DEPTH:
        raise InvalidInput(f"JSON nested deeper than {MAX_JSON_DEPTH} levels is refused", slug="invalid-event")
    if isinstance(document, dict):
        items, batch = [document], False
    elif isinstance(document, list):
        if not 1 <= len(document) <= MAX_BATCH:
            raise InvalidInput(f"a batch holds 1 to {MAX_BATCH} events, not {len(document)}", slug="invalid-event")
        if idempotency_header is not None:
            raise InvalidInput(
                "Idempotency-Key applies to a single event; in a batch give each event its own \"id\"",
                slug="invalid-event",
            )
        items, batch = document, True
    else:
        raise InvalidInput("the body must be one event (a JSON object) or an array of events", slug="invalid-event")
    return _validate(items, batch, idempotency_header), batch


def _validate(items: list[Any], batch: bool, idempotency_header: str | None) -> list[EventIn]:
    events: list[EventIn] = []
    errors: list[dict[str, str]] = []
    for index, item in enumerate(items):
        prefix = f"[{index}]" if batch else ""
        if not isinstance(item, dict):
            errors.append({"field": prefix or "body", "message": "must be a JSON object"})
            continue
        try:
            event = EventIn.model_validate(item)
        except ValidationError as exc:
            errors.extend({"field": field_path(e["loc"], prefix), "message": _message(e)} for e in exc.errors())
            continue
        if idempotency_header is not None:
            if event.id is not None and event.id != idempotency_header:
                errors.append({"field": "id", "message": "differs from the Idempotency-Key header; send one of them"})
                continue
            event = event.model_copy(update={"id": idempotency_header})
        events.append(event)
    if idempotency_header is not None and not 1 <= len(idempotency_header) <= 255:
        errors.append({"field": "Idempotency-Key", "message": "must be 1 to 255 characters"})
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise InvalidInput(f"the event is not valid: {summary}{more}", slug="invalid-event", errors=errors)
    return events


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field; an event has type, data, id and timestamp"
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "string_pattern_mismatch":
        return "must be dot-separated names of letters, digits, _ or -, like transaction.completed"
    return str(error["msg"]).removeprefix("Value error, ")


def to_new_event(
    event: EventIn, now_s: float, subscribers: Callable[[str], tuple[str, ...]]
) -> NewEvent:
    """Fix the body bytes now: they are stored, signed and sent exactly as built here."""
    message_id = new_message_id(now_s)
    body = json.dumps(
        {"id": message_id, "type": event.type, "timestamp": event.timestamp or format_time(now_s), "data": event.data},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return NewEvent(
        id=message_id,
        type=event.type,
        idempotency_key=event.id,
        body=body,
        created_at=now_s,
        endpoint_ids=subscribers(event.type),
    )
