"""The event envelope: from the bytes the POS posts to the bytes every receiver gets.
Pure: no I/O, no clock of its own."""

from __future__ import annotations

import json
import math
import os
import random
import re
import sys
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from tillhook import rules
from tillhook.catalogue import Catalogue
from tillhook.errors import InvalidInput
from tillhook.models import (
    MAX_BATCH,
    MAX_JSON_DEPTH,
    EventIn,
    NewEvent,
    field_path,
    format_time,
)
from tillhook.wording import Terms, field_errors

# Base32 in Crockford's lower-case alphabet, which keeps the byte order; two characters
# (ten bits) per lookup, since base64.b32encode is slow pure Python.
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = [_CROCKFORD[i >> 5] + _CROCKFORD[i & 31] for i in range(1024)]
_SHIFTS = range(120, -1, -10)


# Ids must be unique, not secret (receivers and the admin API see them; signatures are what
# protects a delivery), so a generator seeded once from the system's randomness serves: a
# system call per id was a tenth of the ingest path's CPU.
_RANDOM = random.Random(os.urandom(32))


def new_message_id(now_s: float) -> str:
    """`msg_` and 26 base32 characters: 48 bits of milliseconds, then 80 random bits, so ids
    sort by time of creation."""
    bits = ((int(now_s * 1000) & 0xFFFF_FFFF_FFFF) << 80 | _RANDOM.getrandbits(80)) << 2
    return "msg_" + "".join([_PAIRS[(bits >> shift) & 1023] for shift in _SHIFTS])


# How the standard library says a valid integer has more digits than it converts
# (sys.get_int_max_str_digits): the body is valid JSON, only beyond what is accepted.
_INT_DIGITS_LIMIT = "integer string conversion"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # Beyond a double: it would reach the receiver as null, so say so now.
        raise InvalidInput(f"the number {text[:40]} is too large to deliver exactly", slug="invalid-event")
    if value == 0.0 and _NONZERO_MANTISSA.search(text.lower().partition("e")[0]):
        # Below the smallest double: it would reach the receiver as 0.0.
        raise InvalidInput(
            f"the number {text[:40]} is too small to deliver exactly (it would arrive as 0); send it as a string",
            slug="invalid-event",
        )
    return value


_NONZERO_MANTISSA = re.compile("[1-9]")


def _has_lone_surrogate(document: Any) -> bool:
    try:
        json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def _too_deep(document: Any) -> bool:
    # Level by level: one pass over each level's containers, no per-node bookkeeping.
    level = [document] if type(document) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return True
        below = []
        for node in level:
            below += [c for c in (node.values() if type(node) is dict else node) if type(c) in _CONTAINERS]
        level = below
    return False


_CONTAINERS = frozenset((dict, list))  # what the JSON parsers build, exactly these types

# A run of 19 digits may be an integer beyond 64 bits, which orjson would turn into a float;
# an exponent of -100 or below may underflow, which orjson turns into 0.0 without a word.
# Every digit becomes "0", "E" becomes "e", "e" "-" and "." stay, everything else becomes a
# space, then substring searches: several times faster than a regular expression over a
# large batch. A hit only means the exact (slower) parser reads the body.
_SHAPES = bytes(48 if 48 <= i <= 57 else 101 if i == 69 else i if i in b"e-." else 32 for i in range(256))
_LONG_RUN = b"0" * 19
_SMALL_EXPONENT = b"0e-000"
# What precedes a number in JSON; a hit preceded by anything else is inside a string (like
# the "123e-4567" of a UUID) and cannot underflow.
_BEFORE_NUMBER = frozenset(b"[,: \t\r\n")
_MANTISSA = frozenset(b"0.")


def _needs_exact_parser(raw: bytes) -> bool:
    """Whether the body may hold a number orjson would not keep exactly."""
    shapes = raw.translate(_SHAPES)
    if _LONG_RUN in shapes:
        return True
    hit = shapes.find(_SMALL_EXPONENT)
    while hit >= 0:
        start = hit
        while start > 0 and shapes[start - 1] in _MANTISSA:  # back to where the number starts
            start -= 1
        if start > 0 and shapes[start - 1] == 45:  # a minus sign
            start -= 1
        if start == 0 or raw[start - 1] in _BEFORE_NUMBER:
            return True
        hit = shapes.find(_SMALL_EXPONENT, hit + 1)
    return False


def _loads(raw: bytes, what: str = "the body") -> Any:
    """orjson for speed; the standard library when orjson refuses the body (to say exactly
    why) or when it may hold numbers orjson would not keep exactly (to keep them, or refuse
    them). `what` names the text in the errors."""
    if not _needs_exact_parser(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} is not valid UTF-8 (byte {exc.start})", status=400, slug="malformed-body") from None
    try:
        document = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidInput(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels is refused", slug="invalid-event"
        ) from None
    except ValueError as exc:
        if _INT_DIGITS_LIMIT in str(exc):
            raise InvalidInput(
                f"integers of more than {sys.get_int_max_str_digits()} digits are not accepted; send such a"
                " number as a string",
                slug="invalid-event",
            ) from None
        raise InvalidInput(f"{what} is not valid JSON: {exc}", status=400, slug="malformed-body") from None
    if "\\u" in text and _has_lone_surrogate(document):
        raise InvalidInput(
            f"{what} holds a lone UTF-16 surrogate escape (like \\ud800), which is not valid Unicode",
            slug="invalid-event",
        )
    return document


def read_json(raw: bytes, what: str = "the body") -> Any:
    """JSON as ingest reads it: numbers kept exactly or refused, no lone surrogates."""
    return _loads(raw, what)


# How an event's own errors are said: an unknown field is met with the fields there are.
EVENT_TERMS = Terms(unknown="unknown field; an event has type, data, id and timestamp")


def check_event(item: Any, field: str) -> EventIn:
    """One event checked as ingest checks it, its errors named under `field` (`event.type`)."""
    if _too_deep(item):
        raise InvalidInput(f"JSON nested deeper than {MAX_JSON_DEPTH} levels is refused", slug="invalid-event")
    if not isinstance(item, dict):
        errors = [{"field": field, "message": "must be a JSON object with type and data"}]
    else:
        try:
            return EventIn.model_validate(item)
        except ValidationError as exc:
            errors = field_errors(exc, field, terms=EVENT_TERMS)
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    raise InvalidInput(f"the event is not valid: {summary}", slug="invalid-event", errors=errors)


def parse_body(
    raw: bytes, idempotency_header: str | None, catalogue: Catalogue | None = None
) -> tuple[list[EventIn], bool]:
    """The events in a request body, and whether it was a batch (an array). An event whose
    data breaks the schema of a strict type in `catalogue` is refused with the rest."""
    document = _loads(raw)
    if _too_deep(document):
        raise InvalidInput(f"JSON nested deeper than {MAX_JSON_DEPTH} levels is refused", slug="invalid-event")
    if isinstance(document, dict):
        items, batch = [document], False
    elif isinstance(document, list):
        if not 1 <= len(document) <= MAX_BATCH:
            raise InvalidInput(f"a batch holds 1 to {MAX_BATCH} events, not {len(document)}", slug="invalid-event")
        if idempotency_header is not None:
            raise InvalidInput(
                'Idempotency-Key applies to a single event; in a batch give each event its own "id"',
                slug="invalid-event",
            )
        items, batch = document, True
    else:
        raise InvalidInput("the body must be one event (a JSON object) or an array of events", slug="invalid-event")
    enforced = catalogue if catalogue is not None and catalogue.enforced else None
    return _validate(items, batch, idempotency_header, enforced), batch


OWN_TYPES = "types beginning with tillhook. are tillhook's own (its alerts and pings); name the event otherwise"


def _validate(
    items: list[Any], batch: bool, idempotency_header: str | None, catalogue: Catalogue | None
) -> list[EventIn]:
    events: list[EventIn] = []
    errors: list[dict[str, str]] = []
    malformed = False  # errors other than a strict type's schema refusing the data
    refused: list[EventIn] = []  # events refused by their type's schema
    every: list[EventIn] = []  # and the valid ones, in the body's order
    for index, item in enumerate(items):
        prefix = f"[{index}]" if batch else ""
        if not isinstance(item, dict):
            errors.append({"field": prefix or "body", "message": "must be a JSON object"})
            malformed = True
            continue
        try:
            event = EventIn.model_validate(item)
        except ValidationError as exc:
            errors.extend(field_errors(exc, prefix, terms=EVENT_TERMS))
            malformed = True
            continue
        if event.type.split(".", 1)[0].casefold() == rules.OWN_PREFIX:
            # Alerts reach the shop's chat: a POS must not be able to make one up.
            errors.append({"field": field_path(("type",), prefix), "message": OWN_TYPES})
            malformed = True
            continue
        if idempotency_header is not None:
            if event.id is not None and event.id != idempotency_header:
                errors.append({"field": "id", "message": "differs from the Idempotency-Key header; send one of them"})
                malformed = True
                continue
            event = event.model_copy(update={"id": idempotency_header})
        if catalogue is not None and event.type in catalogue.enforced:
            _, problems = catalogue.check(event.type, event.data, field_path(("data",), prefix))
            if problems:
                errors.extend(p.as_dict() for p in problems)
                refused.append(event)
                every.append(event)
                continue
        events.append(event)
        every.append(event)
    if idempotency_header is not None and not 1 <= len(idempotency_header) <= 255:
        errors.append({"field": "Idempotency-Key", "message": "must be 1 to 255 characters"})
        malformed = True
    elif idempotency_header is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in idempotency_header):
        errors.append({"field": "Idempotency-Key", "message": "must not hold control characters"})
        malformed = True
    if errors and not malformed:
        raise _schema_mismatch(errors, refused, every, batch)
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise InvalidInput(f"the event is not valid: {summary}{more}", slug="invalid-event", errors=errors)
    return events


SCHEMA_MISMATCH = "schema-mismatch"


class SchemaMismatch(InvalidInput):
    """Only a strict type's schema refused: said as that, apart from a malformed event, since
    the fix may as well be the schema in the config as the POS's data. It keeps the events, so
    that a POS repeating keyed events accepted before their type became strict is answered
    as for any repeat (api/ingest.py)."""

    def __init__(
        self, message: str, errors: list[dict[str, str]], refused: list[EventIn], every: list[EventIn], batch: bool
    ) -> None:
        super().__init__(message, slug=SCHEMA_MISMATCH, errors=errors)
        self.refused = refused
        self.every = every
        self.batch = batch


def _schema_mismatch(
    errors: list[dict[str, str]], refused: list[EventIn], every: list[EventIn], batch: bool
) -> SchemaMismatch:
    events = len(refused)
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    which = (
        f"{events} of the batch's events {'does' if events == 1 else 'do'} not match their type's schema, which"
        " the catalogue enforces (strict), so none of the batch was stored"
        if batch
        else "the event's data does not match its type's schema, which the catalogue enforces (strict), so it was"
        " not stored"
    )
    return SchemaMismatch(
        f"{which}: {summary}{more}. Fix the data, or the type's schema in [[event_types]]",
        errors,
        refused,
        every,
        batch,
    )


def _schema_errors(event: EventIn, catalogue: Catalogue | None) -> str | None:
    """How a non-strict catalogued type's data breaks its schema, as the JSON stored with it."""
    if catalogue is None or event.type not in catalogue.recorded:
        return None
    _, problems = catalogue.check(event.type, event.data)
    return orjson.dumps([p.as_dict() for p in problems]).decode() if problems else None


def _dumps(document: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(document)
    except TypeError:  # an integer beyond 64 bits: the standard library writes it exactly
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def to_new_events(
    events: list[EventIn],
    now_s: float,
    subscribers: Callable[[str], tuple[str, ...]],
    catalogue: Catalogue | None = None,
) -> list[NewEvent]:
    """Fix the body bytes now: they are stored, signed and sent exactly as built here. With a
    catalogue, each event of a non-strict type keeps how its data breaks the type's schema
    (a strict type's event breaking it was refused by parse_body)."""
    recorded = catalogue if catalogue is not None and catalogue.recorded else None
    received = format_time(now_s)
    built = []
    for event in events:
        message_id = new_message_id(now_s)
        body = _dumps(
            {"id": message_id, "type": event.type, "timestamp": event.timestamp or received, "data": event.data}
        )
        built.append(
            NewEvent(
                id=message_id,
                type=event.type,
                idempotency_key=event.id,
                body=body,
                created_at=now_s,
                endpoint_ids=subscribers(event.type),
                timestamp_given=event.timestamp is not None,
                schema_errors=_schema_errors(event, recorded),
            )
        )
    return built


def to_test_event(event_type: str, data: dict[str, Any], now_s: float, endpoint_id: str) -> NewEvent:
    """An admin's test for one endpoint (the ping, or a catalogue type's example), no
    subscription or filter consulted. Its envelope says `"test": true`, so a receiver can
    tell it from what the POS sends."""
    message_id = new_message_id(now_s)
    body = _dumps({"id": message_id, "type": event_type, "timestamp": format_time(now_s), "data": data, "test": True})
    return NewEvent(
        id=message_id,
        type=event_type,
        idempotency_key=None,
        body=body,
        created_at=now_s,
        endpoint_ids=(endpoint_id,),
        test=True,
    )
