"""Wire models of the admin API: the handlers parse and reply with these, and /openapi.json
is generated from them, so the document cannot drift from the code."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, field_validator

from tillhook import rules
from tillhook.endpoint_rules import (
    CATEGORY_DOC,
    DESCRIPTION_DOC,
    EXTRA_SIGNATURE_DOC,
    FILTER_DOC,
    PRESET_DOC,
    TRANSFORM_DOC,
    Category,
    Description,
    EndpointName,
    EndpointSettings,
    EndpointUrl,
    EventPatterns,
    ExtraSignature,
    ExtraSignatureSpec,
    Filter,
    Headers,
    MaxInFlight,
    Preset,
    RateLimit,
    Secret,
    Transform,
)
from tillhook.models import MAX_BATCH, AcceptedEvent, DeliveryState, EventIn, EventType

T = TypeVar("T")

Timestamp = Annotated[str, Field(description="RFC 3339 date-time in UTC", examples=["2026-11-22T10:30:00Z"])]
EndpointState = Literal["healthy", "backing_off", "paused", "disabled"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointIn(EndpointSettings):
    """A new endpoint. The URL is checked against `delivery.allow_http` and
    `delivery.allow_networks` too."""

    enabled: StrictBool = True


_NOT_NULL = ("name", "url", "events", "headers", "ordered")


class EndpointPatch(_In):
    """Fields to change; absent ones stay. The secret changes only by rotation."""

    name: EndpointName | None = None
    url: EndpointUrl | None = None
    events: EventPatterns | None = None
    max_in_flight: MaxInFlight | None = None
    rate_limit: RateLimit | None = None
    ordered: StrictBool | None = None
    headers: Headers | None = None
    filter: Filter | None = Field(default=None, description=FILTER_DOC + "; null removes it")
    transform: Transform | None = Field(default=None, description=TRANSFORM_DOC + "; null removes it")
    preset: Preset | None = Field(default=None, description=PRESET_DOC + "; null removes it")
    extra_signature: ExtraSignature | None = Field(default=None, description=EXTRA_SIGNATURE_DOC + "; null removes it")
    description: Description | None = Field(default=None, description=DESCRIPTION_DOC + "; null removes it")
    category: Category | None = Field(default=None, description=CATEGORY_DOC + "; null removes it")

    @field_validator(*_NOT_NULL)
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Runs only for what the patch gives: an absent field stays as it is.
        if value is None:
            raise ValueError("may not be null")
        return value


class EndpointOut(BaseModel):
    id: str
    name: str
    url: str = Field(
        description="for the viewer token its origin only (`https://hooks.slack.com/…`): a chat webhook's token"
        " is its path"
    )
    events: list[str]
    enabled: bool
    state: EndpointState
    disabled_reason: str | None
    max_in_flight: int | None = Field(description="null: delivery.endpoint_max_in_flight")
    rate_limit: float | None
    ordered: bool
    headers: dict[str, str]
    filter: str | None = Field(default=None, description=FILTER_DOC)
    transform: str | None = Field(default=None, description=TRANSFORM_DOC)
    preset: str | None = Field(default=None, description=PRESET_DOC)
    extra_signature: ExtraSignatureSpec | None = Field(default=None, description=EXTRA_SIGNATURE_DOC)
    description: str | None = Field(default=None, description=DESCRIPTION_DOC)
    category: str | None = Field(default=None, description=CATEGORY_DOC)
    config_managed: bool = Field(description="from the config file: edit it there, not here")
    previous_secret_expires_at: Timestamp | None = Field(
        description="while a rotated-out secret still signs beside the current one"
    )


class EndpointQuery(_In):
    category: str | None = Field(
        default=None,
        description="only the endpoints in this category, compared exactly (case too); empty: those without one",
        examples=["Loyalty"],
    )

    @field_validator("category")
    @classmethod
    def _a_category(cls, value: str | None) -> str | None:
        # One that no endpoint could have is a mistake to name, not an empty list.
        return rules.check_category(value) if value else value


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="shown only in this reply; keep it for the receiver")


class PreviousSecret(BaseModel):
    secret: str
    expires_at: Timestamp = Field(description="until then it still signs beside the current one")


class EndpointSecretOut(BaseModel):
    """What a receiver verifies with: how its developer gets a generated secret, also of a
    config-managed endpoint."""

    endpoint_id: str
    name: str
    secret: str = Field(description="the current secret")
    previous: list[PreviousSecret] = Field(description="rotated-out secrets still in their grace period, newest first")


class RotateIn(_In):
    grace: str = Field(default="24h", description='how long the old secret keeps signing, like "24h"; "0s" ends it now')
    secret: Secret | None = Field(default=None, description="the new secret; generated when absent")


class ReplayIn(_In):
    since: str = Field(description='RFC 3339 date-time, or a duration ago like "2h"')
    until: str | None = Field(default=None, description="RFC 3339 date-time or duration ago; default now")
    only_failed: bool = Field(
        default=True, description="true: only events whose delivery here failed; false: every matching event"
    )


class ReplayOut(BaseModel):
    endpoint_id: str
    deliveries: int = Field(description="new deliveries created")


class TestIn(_In):
    """Which test to send; without a body (or without event_type), the ping."""

    event_type: EventType | None = Field(
        default=None,
        description="a catalogue type ([[event_types]] in the config) with an example: its example is sent as"
        " the event's data; absent: a tillhook.ping",
        examples=["transaction.completed"],
    )


class PingOut(BaseModel):
    event_id: str
    delivery_id: int
    event_type: str = Field(description="tillhook.ping, or the catalogue type whose example was sent")


class PreviewIn(_In):
    """An event to try, or a stored one: exactly one of the two."""

    event: EventIn | None = Field(default=None, description="an event as the POS would post it")
    event_id: str | None = Field(default=None, max_length=200, description="a stored event: its body exactly as stored")


class PreviewRequest(BaseModel):
    method: Literal["POST"]
    url: str = Field(description="credentials in it masked; for the viewer token its origin only (scheme, host, port)")
    headers: dict[str, str] = Field(
        description="every header an attempt sets, in order: the endpoint's own with their values masked,"
        " the signatures as placeholders (they are computed when sent)"
    )
    body: Any = Field(description="the body, parsed")
    body_text: str = Field(description="the body's exact bytes, as text")


class PreviewOut(BaseModel):
    endpoint_id: str
    endpoint: str = Field(description="the endpoint's name")
    event_id: str = Field(description="the stored event's id, or the one a new event would get")
    event_type: str
    subscribed: bool = Field(description="whether the endpoint's events patterns take this type")
    filtered_out: bool = Field(description="the filter leaves the event out: no delivery, no request")
    error: str | None = Field(description="the filter or the transform failed on this event: why")
    transformed: bool = Field(description="the body is a transform's result, not the event")
    transformed_by: str | None = Field(description='"transform", "preset:<name>", or null', examples=["preset:slack"])
    request: PreviewRequest | None = Field(description="what an attempt would send; null when filtered out or failed")
    notes: list[str] = Field(description="what else a real event would meet here, in words")


class AttemptOut(BaseModel):
    number: int
    started_at: Timestamp
    duration_ms: float
    status: int | None = Field(description="HTTP status, when the receiver answered")
    error: str | None = Field(description="why no status was received, or why it counts as failed")
    response_excerpt: str | None
    outcome: str
    body_sent: str | None = Field(
        default=None, description="the body this attempt sent, when a transform or preset made it; null: the event's"
    )


class SchemaErrorOut(BaseModel):
    """One way an event's data broke its type's schema in the catalogue."""

    field: str = Field(description="where, as a path into the event", examples=["data.items[0].price"])
    message: str = Field(description="what the schema asked", examples=['"1.50" is not of type "number"'])


SchemaErrors = Annotated[
    list[SchemaErrorOut] | None,
    Field(
        description="how the event's data broke the JSON Schema of its type in the catalogue ([[event_types]]),"
        " which is not strict, so it was accepted all the same (a strict type's event is refused with a 422"
        " schema-mismatch); null: it matched, or its type has no schema"
    ),
]


class DeliveryOut(BaseModel):
    id: int
    event_id: str
    event_type: str
    endpoint_id: str
    endpoint: str = Field(description="the endpoint's name")
    state: DeliveryState
    attempts: int
    created_at: Timestamp
    next_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_status: int | None
    last_error: str | None
    held_reason: str | None = Field(
        description="why a pending delivery waits although due: its endpoint is disabled or out of the config"
        " file, and holds it until enabled"
    )
    event_schema_errors: SchemaErrors


class DeliveryDetail(DeliveryOut):
    first_attempt_at: Timestamp | None
    attempt_log: list[AttemptOut]


class EventOut(BaseModel):
    id: str
    type: str
    idempotency_key: str | None
    received_at: Timestamp
    schema_errors: SchemaErrors
    test: bool = Field(description="an admin's test (the ping, or a type's example), not sent by the POS")


class FilteredOut(BaseModel):
    endpoint_id: str
    endpoint: str | None = Field(description="its name; null once deleted")


class EventDetail(EventOut):
    payload: dict[str, Any] = Field(
        description='the event as stored: id, type, timestamp and data (and "test": true for an admin\'s test)'
    )
    deliveries: list[DeliveryOut]
    filtered_out: list[FilteredOut] = Field(
        default=[], description="endpoints subscribed to the type whose filter left this event out (no delivery)"
    )


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page; null at the end")


class EventQuery(_In):
    type: str | None = Field(default=None, description="event type or pattern, like sale.*")
    since: str | None = Field(default=None, description="RFC 3339 date-time, or a duration ago like 2h")
    until: str | None = None
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = None


class DeliveryQuery(EventQuery):
    endpoint: str | None = Field(default=None, description="endpoint id or name")
    state: DeliveryState | None = None
    event: str | None = Field(default=None, description="event id")
    status: int | None = Field(default=None, ge=100, le=599, description="HTTP status of the latest attempt")


class EventSearch(EventQuery):
    """The dashboard's event search: the API's filters, and an exact id or idempotency key."""

    id: str | None = Field(default=None, max_length=200, description="event id, exactly")
    idempotency_key: str | None = Field(default=None, max_length=255, description="idempotency key, exactly")


class RetryMatchingIn(_In):
    """The delivery log's filters; the failed deliveries they match are made due now."""

    endpoint: str | None = Field(default=None, description="endpoint id or name")
    state: Literal["failed"] = Field(default="failed", description="only failed deliveries are retried this way")
    type: str | None = Field(default=None, description="event type or pattern, like sale.*")
    since: str | None = Field(default=None, description="RFC 3339 date-time, or a duration ago like 2h")
    until: str | None = None
    status: int | None = Field(default=None, ge=100, le=599, description="HTTP status of the latest attempt")
    dry_run: bool = Field(default=False, description="true: only count them")


class RetryMatchingOut(BaseModel):
    matched: int = Field(description="failed deliveries matching the filters")
    retried: int = Field(
        description="made due now: at most 10,000 a call (oldest first; call again for the rest),"
        " none of a disabled or deleted endpoint; 0 on a dry run"
    )


# With an outbox shared by several daemons, only the daemon serving an endpoint attempts it,
# so only it knows how its attempts went: another daemon's zeros would read as "no failures".
_SERVING_DAEMONS = (
    "; null on a daemon that does not serve the endpoint (an outbox shared by several daemons):"
    " only the daemon named in served_by attempts it, and its status has this figure"
)


class EndpointStatus(BaseModel):
    id: str
    name: str
    state: EndpointState = Field(
        description="what holds it back first; with an outbox shared by several daemons, paused and"
        " backing_off are as the daemon answering has seen them: the daemon named in served_by is the"
        " one attempting the endpoint, and its status has them"
    )
    disabled_reason: str | None
    served_by: str | None = Field(
        description="with an outbox shared by several daemons: the id of the daemon (in daemons) that claims,"
        " attempts, backs off and alerts for the endpoint; null with one daemon"
    )
    in_flight: int = Field(
        description="deliveries under way: with an outbox shared by several daemons, those any of them"
        " holds; with one daemon, the slots it has taken (attempts under way, slots kept for a claim)"
    )
    pending: int
    oldest_pending_age_s: float | None
    consecutive_failures: int | None = Field(description="attempts failed in a row" + _SERVING_DAEMONS)
    last_success_at: Timestamp | None
    last_failure_at: Timestamp | None
    last_failure_reason: str | None
    attempts_last_hour: int | None = Field(
        description="attempts that ended in the last hour (since start, if later)" + _SERVING_DAEMONS
    )
    success_rate_last_hour: float | None = Field(description="0..1; null without attempts" + _SERVING_DAEMONS)
    ordered: bool
    blocked_by: str | None = Field(
        description="ordered endpoints: the event whose failing delivery holds back the ones behind it"
    )
    blocked_reason: str | None = Field(description="why that delivery last failed")
    rate_limit: float | None
    paused_until: Timestamp | None = Field(
        description="the receiver asked for a pause (429/503 Retry-After)" + _SERVING_DAEMONS
    )
    next_probe_at: Timestamp | None = Field(
        description="while backing off: when the next probe delivery may go" + _SERVING_DAEMONS
    )
    held: int = Field(
        description="pending deliveries held because the endpoint is disabled or out of the config file;"
        " they go out once it is enabled"
    )


class DatabaseStatus(BaseModel):
    path: str
    size_bytes: int = Field(description="the database file and its write-ahead log")


class DaemonOut(BaseModel):
    """A daemon sharing the outbox, as its row in the outbox says."""

    id: str
    host: str
    pid: int
    listen: str | None = Field(description="where its API listens; null until it has bound its address")
    started_at: Timestamp
    last_seen_at: Timestamp = Field(description="its last heartbeat (it beats every third of its storage.lease)")
    live: bool = Field(
        description="seen within its lease: it serves endpoints; one not live stopped beating (stopped"
        " without leaving, killed, hung or cut off) and what it held in flight goes to the others"
    )
    this: bool = Field(description="the daemon that answered")


class StatusOut(BaseModel):
    version: str
    started_at: Timestamp
    uptime_s: float
    database: DatabaseStatus
    deliveries: dict[str, int] = Field(description="count by state")
    backlog: int = Field(description="deliveries pending or in flight")
    oldest_pending_age_s: float | None
    in_flight: int = Field(
        description="deliveries under way: with an outbox shared by several daemons, those any of them"
        " holds; with one daemon, the slots it has taken (attempts under way, slots kept for a claim)"
    )
    daemons: list[DaemonOut] = Field(
        description="the daemons sharing the outbox (storage.url), oldest started first, those gone"
        " without leaving among them; empty with a SQLite outbox, which one daemon keeps to itself"
    )
    endpoints: list[EndpointStatus]


class HealthOut(BaseModel):
    status: Literal["ok"]


class IngestBody(RootModel[EventIn | Annotated[list[EventIn], Field(min_length=1, max_length=MAX_BATCH)]]):
    """One event, or an array of up to 1000 (all or nothing). An event whose type is in the
    catalogue ([[event_types]]) with a JSON Schema has its `data` checked against it: where
    the type is strict, data that breaks it is refused with a 422 whose type is
    `urn:tillhook:problem:schema-mismatch`, `errors` naming each failing field by its path
    (`data.items[0].price`; in a batch `[2].data.amount`), and nothing of the request is
    stored; where it is not strict, the event is accepted and keeps what broke (its
    `schema_errors` in the log). Other invalid events are a 422 `invalid-event`."""


class IngestReply(RootModel[AcceptedEvent | list[AcceptedEvent]]):
    """One reply per event, in the order sent; an array when an array was sent."""
