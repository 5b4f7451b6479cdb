"""Wire models (what crosses HTTP) and the frozen records passed between layers."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
)

EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
MAX_BATCH = 1000
MAX_JSON_DEPTH = 32


def _require_str(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string, like 2026-11-22T10:30:00Z")
    return value


def _rfc3339_utc(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows a lower-case t and z
    except ValueError:
        raise ValueError("must be an RFC 3339 date-time, like 2026-11-22T10:30:00Z") from None
    if parsed.tzinfo is None or "T" not in value.upper():
        raise ValueError("must be an RFC 3339 date-time with a time zone, like 2026-11-22T10:30:00Z")
    return format_time(parsed.timestamp())


def field_path(loc: tuple[int | str, ...] | list[int | str], prefix: str = "") -> str:
    """A pydantic error location as people write it: `endpoints[0].url`, `[3].data`."""
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def format_time(unix_s: float) -> str:
    """RFC 3339 in UTC with a Z, milliseconds only when there are some."""
    moment = datetime.fromtimestamp(unix_s, UTC)
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


Rfc3339 = Annotated[str, BeforeValidator(_require_str), AfterValidator(_rfc3339_utc)]
EventType = Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN, max_length=128)]


def _printable_key(key: str) -> str:
    # A key is compared and searched for as text; a control character (NUL above all, which
    # PostgreSQL cannot store) is a mistake of the POS's, said as such.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise ValueError("must not hold control characters (such as NUL or a line break)")
    return key


IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_printable_key)]


class EventIn(BaseModel):
    """One event as the POS posts it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: EventType
    data: dict[str, Any]
    id: IdempotencyKey | None = None
    timestamp: Rfc3339 | None = None


@dataclass
class AcceptedEvent:
    """The reply for each accepted (or recognised duplicate) event."""

    # A plain dataclass, not a pydantic model: thousands are made a second on the ingest
    # path, and orjson writes them as they are (without slots: orjson's fast path reads
    # __dict__, and is six times slower on slots). Pydantic still documents it in the OpenAPI.
    id: str
    type: str
    deliveries: int
    duplicate: bool


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class SigningSecret:
    secret: str = field(repr=False)
    expires_at: float | None = None  # unix s; None: the current secret


@dataclass(frozen=True, slots=True)
class ExtraSignature:
    """A second signature header for receivers written for `sha256=<hex HMAC of the body>`."""

    header: str
    scheme: str = "sha256-hex"


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    name: str
    url: str
    events: tuple[str, ...]
    secrets: tuple[SigningSecret, ...]
    max_in_flight: int | None = None
    rate_limit: float | None = None
    ordered: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    enabled: bool = True
    disabled_reason: str | None = None
    config_managed: bool = False
    removed_from_config: bool = False  # taken out of the file: no new deliveries, its own are held
    filter: str | None = None  # CEL: the event -> whether it gets a delivery here
    transform: str | None = None  # CEL: the event -> the body sent instead of the event
    preset: str | None = None  # a built-in transform for a chat service
    extra_signature: ExtraSignature | None = None
    description: str | None = None  # for people: what it is for
    category: str | None = None  # what the dashboard groups it under, compared exactly


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event ready to store: its body bytes are final and are what gets signed."""

    id: str
    type: str
    idempotency_key: str | None
    body: bytes
    created_at: float
    endpoint_ids: tuple[str, ...]
    # Endpoints whose filter left the event out (no delivery), and those whose filter could
    # not be evaluated (a delivery that checks it again before each attempt).
    filtered_out: tuple[str, ...] = ()
    check_filter: tuple[str, ...] = ()
    # Whether the POS gave the timestamp in the body (or it is the time of receipt): part of
    # what makes a repeat of an idempotency key the same event.
    timestamp_given: bool = False
    # How its data broke its non-strict catalogue type's schema ({field, message} each), as
    # JSON; None: it matched, or its type has no schema.
    schema_errors: str | None = None
    # A test the admin sent (the ping, a catalogue example): not counted as a type the POS sends.
    test: bool = False


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    event_id: str
    endpoint_id: str
    attempts: int  # attempts made before this one
    first_attempt_at: float | None
    body: bytes
    # The endpoint's filter could not be evaluated when the event came in: it is evaluated
    # again before each attempt, which fails (and is retried) until it can be.
    check_filter: bool = False


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one HTTP attempt produced; error is set when no status was received."""

    started_at: float
    duration_ms: float
    status: int | None = None
    error: str | None = None
    response_excerpt: str | None = None
    retry_after_s: float | None = None
    body_sent: bytes | None = None  # a transform's body; None: the event's own body went
    filtered_out: bool = False  # the filter, checked again, leaves the event out: nothing sent
    # The endpoint's filter or transform failed: nothing was sent, so nothing was learnt about
    # the receiver (its health and back-off stay as they were); retried like any failure.
    expression_failed: bool = False


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """An attempt and the delivery state it leads to, as the store writes them."""

    delivery_id: int
    endpoint_id: str
    result: AttemptResult
    state: DeliveryState
    next_attempt_at: float | None
    first_attempt_at: float
    outcome: str
    disable_endpoint: str | None = None  # reason, when the receiver said 410 Gone
    release_backlog_at: float | None = field(default=None)
