"""The outbox port: everything the daemon asks of its storage, as domain verbs over typed
records. The rest of the code types against `Outbox` and the records here; only the
composition root (app.py) picks an adapter (SQLite, or PostgreSQL shared by several daemons)
and wires its adapter-only parts (a shared outbox's news and who serves which endpoint).

The contract every adapter keeps, whatever it stores in:

- **Durable before it answers.** `enqueue` returns only once its events and deliveries would
  survive a power cut: the POS is acknowledged on that. Outcomes and claims may be written
  less durably (one lost to a power cut means a repeated attempt, never a lost event).
- **Claimed once.** A delivery `claim_due` (or an `enqueue` told to start it, or the claim of
  `write_outcomes`) returns is `delivering` and is returned to nobody else until its outcome
  is written or `requeue_in_flight` puts it back. Nothing is deleted while unfinished. Shared
  by several daemons, this holds across them: a claim is a daemon's for its lease.
- **Order.** For an endpoint in `ordered`, only its oldest unfinished delivery is ever
  claimed, and only once it is due; otherwise the due ones go oldest due first.
- **Held, not dropped.** A disabled endpoint's pending deliveries stay pending; enabling it
  sends them. Deleting an endpoint cancels its unfinished deliveries and keeps their history.
- **Idempotency.** An event whose idempotency key was seen with the same content is accepted
  again as a duplicate (its first id, no new deliveries); with other content the whole call
  is refused (`InvalidInput`) and nothing of it is written.
- **Errors.** The storage failing (full disk, lost file, locked) raises `StoreUnavailable`
  with a message for the operator; what is not there raises `NotFound`; a name taken raises
  `Conflict`. Driver errors never leave the adapter.
- **No callbacks.** The store never calls into the dispatcher: it returns what each write
  did (what was started, queued, claimed), and the caller acts on that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tillhook.models import (
    AcceptedEvent,
    AttemptRecord,
    ClaimedDelivery,
    DeliveryState,
    Endpoint,
    NewEvent,
)

# -- what goes in ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which deliveries or events a page of the log, a count or a retry is about. `before` is
    the cursor (rows older than this id or sequence number); `limit` is the page size."""

    endpoint_id: str | None = None
    state: DeliveryState | None = None
    type_pattern: str | None = None
    event_id: str | None = None
    idempotency_key: str | None = None
    last_status: int | None = None  # deliveries: the HTTP status of the latest attempt
    since: float | None = None
    until: float | None = None
    before: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """Up to `quotas[endpoint id]` due deliveries per endpoint; for those in `ordered`, only
    the oldest unfinished delivery, when it is due. The store claims what is asked: holding a
    disabled endpoint's deliveries is the caller's part (it asks only for enabled ones)."""

    quotas: Mapping[str, int]
    now: float
    ordered: frozenset[str] = frozenset()


# -- what comes out ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What one `enqueue` stored. `accepted` answers the POS, event by event in the order
    given; `started` are the deliveries stored `delivering` as asked (the caller runs them);
    `not_started` names, once per delivery asked to start but not stored (its event was a
    duplicate), its endpoint; `queued` are the endpoints that got pending deliveries."""

    accepted: list[AcceptedEvent]
    started: list[ClaimedDelivery] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    queued: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A delivery as the log shows it. `endpoint` is its endpoint's name (a deleted one's says
    so: "shop (deleted ep_…)"); `endpoint_enabled` is None once the endpoint is deleted."""

    id: int
    event_id: str
    event_type: str
    endpoint_id: str
    endpoint: str
    state: DeliveryState
    attempts: int
    created_at: float
    next_attempt_at: float | None
    last_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    first_attempt_at: float | None
    endpoint_enabled: bool | None
    endpoint_disabled_reason: str | None
    event_schema_errors: str | None = None  # its event's (EventRow.schema_errors)


@dataclass(frozen=True, slots=True)
class AttemptRow:
    started_at: float
    duration_ms: float
    status: int | None
    error: str | None
    response_excerpt: str | None
    outcome: str
    body_sent: bytes | None  # a transform's body; None: the event's own body went


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int  # the order events were stored in: the events log's cursor
    id: str
    type: str
    idempotency_key: str | None
    created_at: float
    # How its data broke its non-strict catalogue type's schema: the JSON array ingest stored
    # (NewEvent.schema_errors); None: it matched, or the type had no schema.
    schema_errors: str | None = None
    test: bool = False  # an admin's test (the ping, a type's example)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: EventRow
    body: bytes  # the exact bytes every delivery of it signs and sends
    filtered_out: tuple[str, ...]  # ids of the endpoints whose filter left it out


@dataclass(frozen=True, slots=True)
class Backlog:
    """An endpoint's pending deliveries: how many, and when the oldest was created."""

    pending: int
    oldest_created_at: float


@dataclass(frozen=True, slots=True)
class EndpointStats:
    last_success_at: float | None
    last_failure_at: float | None
    last_failure_reason: str | None


@dataclass(frozen=True, slots=True)
class DaemonRow:
    """A daemon sharing the outbox, as its row there says. `live`: seen within its lease, so it
    serves endpoints; one not live stopped renewing it (killed, hung or cut off)."""

    id: str
    host: str
    pid: int
    listen: str | None  # where its API listens, once it has bound it
    started_at: float
    seen_at: float  # its last heartbeat
    live: bool


@dataclass(frozen=True, slots=True)
class OrderedHead:
    """The oldest unfinished delivery of an ordered endpoint: what the rest wait behind."""

    id: int
    event_id: str
    state: DeliveryState
    attempts: int
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class HourOfAttempts:
    start: float  # epoch seconds at the top of the hour
    delivered: int  # attempts that delivered
    failed: int  # attempts that did not (the delivery may be retried)
    p50_ms: float | None  # of the attempts that delivered; None without any
    p95_ms: float | None


@dataclass(frozen=True, slots=True)
class SeenType:
    """An event type the outbox has stored, as the database counted it while writing events:
    the counts outlive the events' retention. An admin's tests are not counted."""

    type: str
    count: int  # events of this type stored
    mismatched: int  # of them, stored although their data broke their (non-strict) type's schema
    first_seen: float  # unix s: when the first of them was received
    last_seen: float  # and the latest


@dataclass(frozen=True, slots=True)
class RetriedMatching:
    matched: int  # failed deliveries the filter matched
    retried: int  # of them, made due now (at most the limit asked for)
    endpoint_ids: tuple[str, ...]  # whose deliveries were retried: the dispatcher wakes them


@dataclass(frozen=True, slots=True)
class ConfigApplied:
    """What applying the config file's endpoints changed, by endpoint name."""

    removed: tuple[str, ...] = ()  # config-managed, no longer in the file: held
    restored: tuple[tuple[str, bool, int], ...] = ()  # (name, enabled again, held deliveries released)


@dataclass(frozen=True, slots=True)
class Tokens:
    ingest: str
    admin: str
    viewer: str


@dataclass(frozen=True, slots=True)
class Due:
    """News from an outbox shared with other daemons: deliveries may be due for these
    endpoints (None: for any)."""

    endpoint_ids: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class EndpointsChanged:
    """News from a shared outbox: endpoints were changed elsewhere (or news may have been
    missed): what the daemon knows of them is to be read again."""


News = Due | EndpointsChanged


# -- the port ------------------------------------------------------------------------------


class Outbox(Protocol):
    """The outbox. Every verb is called on the event loop; `now` is unix seconds."""

    # lifecycle

    async def open(self) -> None:
        """Make it ready (create or migrate the schema); raises StoreError saying why not."""

    async def close(self) -> None:
        """Write what was queued, then let go of everything; safe to call twice."""

    @property
    def writer(self) -> asyncio.Task[None] | None:
        """A task that ends only at close, or when the store can no longer write at all (it
        then raises why): the daemon stops loudly on it."""

    @property
    def location(self) -> str:
        """Where the outbox is, for the operator (a path; never a password)."""

    async def size_bytes(self) -> int:
        """What the outbox takes on disk now."""

    async def backup(self, target: Path) -> int:
        """A consistent copy to the new file `target`, taken while a daemon may be using the
        outbox (this needs no `open`); returns the events it holds."""

    async def read_tokens(self) -> dict[str, str]:
        """The tokens kept in the outbox by name (`ingest_token`, `admin_token`,
        `viewer_token`), read without creating or changing anything (this needs no `open`);
        NoDatabase when there is no outbox there."""

    async def check_writable(self) -> None:
        """Raises StoreUnavailable unless a write would be committed now."""

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(transactions committed, write operations they held) since open."""

    # ingest and delivery

    def enqueue(
        self, events: Sequence[NewEvent], start: Sequence[Sequence[bool]] | None = None, *, batch: bool = False
    ) -> asyncio.Future[Enqueued]:
        """Store events and a delivery per endpoint each names. Returns at once (queued now,
        so a caller's own work overlaps the write) a future that is done once they are durable,
        or failed; like `write_outcomes`, the write happens even if nobody awaits it, and the
        done-callbacks run as soon as it is over: what was started is never lost with a caller
        gone. `start[i][j]`: store the delivery of event i to its j-th endpoint `delivering`,
        and return it in `started`. With `batch`, an idempotency refusal names events by index."""

    async def claim_due(self, claim: ClaimRequest) -> list[ClaimedDelivery]:
        """Mark the due deliveries `claim` asks for `delivering` and return them, oldest first."""

    def write_outcomes(
        self, records: Sequence[AttemptRecord], now: float, then_claim: ClaimRequest | None = None
    ) -> asyncio.Future[list[ClaimedDelivery]]:
        """Queue the outcomes of attempts (and a claim in the same transaction, so a busy
        endpoint's next deliveries go without a transaction of their own) and return at once.
        The future holds what was claimed once written, or StoreUnavailable; the write
        happens even if nobody awaits it, and the future's done-callbacks run as soon as it
        is over (no task has to wake up first)."""

    async def requeue_in_flight(self, now: float) -> int:
        """Deliveries left `delivering` (by a crash or a stop) go back to pending, due now. In
        an outbox shared by several daemons: this daemon's own, and another's only once its
        lease ran out before `now` (a live daemon's claims are never taken)."""

    async def purge_before(self, cutoff: float, limit: int = 500) -> int:
        """Delete one batch of history older than `cutoff` (finished deliveries, and events
        with nothing unfinished); returns the events purged."""

    # tokens and endpoints

    async def tokens(self, ingest: str | None, admin: str | None, viewer: str | None) -> Tokens:
        """The tokens given, else those kept in the outbox (made at first use)."""

    async def apply_config_endpoints(self, endpoints: Sequence[Endpoint], now: float) -> ConfigApplied:
        """Create or update the config file's endpoints by name; hold those taken out of it."""

    async def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint not deleted, oldest first."""

    async def create_endpoint(self, endpoint: Endpoint, now: float) -> Endpoint:
        """Returns it with its new id; Conflict if the name is taken."""

    async def update_endpoint(self, endpoint_id: str, changes: Mapping[str, Any], now: float) -> Endpoint:
        """Changes fields of `Endpoint` by name; Conflict if a new name is taken."""

    async def delete_endpoint(self, endpoint_id: str, now: float) -> int:
        """Returns how many unfinished deliveries it cancelled."""

    async def set_endpoint_enabled(self, endpoint_id: str, enabled: bool, reason: str | None, now: float) -> Endpoint:
        """Enabling sends what it held; disabling holds what it has (never drops it)."""

    async def rotate_secret(self, endpoint_id: str, new_secret: str, old_expires_at: float, now: float) -> Endpoint:
        """A new signing secret; the current one keeps signing until `old_expires_at`."""

    async def replay(self, endpoint: Endpoint, since: float, until: float, only_failed: bool, now: float) -> int:
        """A new delivery to `endpoint` of each event in [since, until) it subscribes to
        (only those whose delivery there failed, with `only_failed`); returns how many."""

    async def replay_count(self, endpoint: Endpoint, since: float, until: float, only_failed: bool) -> int:
        """How many deliveries `replay` with these arguments would make now."""

    async def unfinished_count(self, endpoint_id: str) -> int:
        """Its pending and in-flight deliveries: what deleting it would cancel."""

    async def retry_delivery(self, delivery_id: int, now: float) -> DeliveryRow:
        """Due now, whatever its state; the delivery as the retry left it."""

    async def count_failed_matching(self, f: LogFilter) -> int:
        """How many failed deliveries `f` matches."""

    async def retry_matching(self, f: LogFilter, now: float, at_most: int) -> RetriedMatching:
        """Make at most `at_most` failed deliveries that `f` matches due now, in one write."""

    # the log

    async def list_deliveries(self, f: LogFilter) -> list[DeliveryRow]:
        """Newest first, `f.limit + 1` at most (one beyond the page says there is another)."""

    async def get_delivery(self, delivery_id: int) -> DeliveryRow:
        """NotFound if there is none."""

    async def attempts_of_delivery(self, delivery_id: int) -> list[AttemptRow]:
        """Oldest first."""

    async def list_events(self, f: LogFilter) -> list[EventRow]:
        """Newest first, `f.limit + 1` at most."""

    async def get_event(self, event_id: str) -> StoredEvent:
        """NotFound if there is none."""

    # figures

    async def count_by_state(self) -> dict[DeliveryState, int]:
        """Deliveries per state; states without any are left out."""

    async def pending_by_endpoint(self) -> dict[str, Backlog]:
        """Per endpoint id, its pending deliveries (endpoints without any are left out)."""

    async def in_flight_by_endpoint(self) -> dict[str, int]:
        """Per endpoint id, its deliveries `delivering`, whichever daemon holds them (endpoints
        without any are left out)."""

    async def daemons(self, now: float) -> list[DaemonRow]:
        """The daemons sharing the outbox, oldest started first, each `live` or not at `now`;
        none where one daemon keeps the outbox to itself."""

    async def oldest_pending(self, endpoint_ids: Sequence[str]) -> tuple[str, float] | None:
        """(endpoint id, created at) of the oldest pending delivery among these endpoints."""

    async def ordered_heads(self, endpoint_ids: Sequence[str]) -> dict[str, OrderedHead]:
        """The oldest unfinished delivery of each of these endpoints that has one."""

    async def endpoint_stats(self) -> dict[str, EndpointStats]:
        """Per endpoint id: its last success and failure, as last written."""

    async def attempts_by_hour(self, now: float, hours: int = 24) -> list[HourOfAttempts]:
        """The last `hours` hours of attempts, oldest first, the current hour last."""

    async def event_types_seen(self) -> list[SeenType]:
        """Every type of event stored (an admin's tests aside), by name (code point order),
        with its counts; nothing of the events themselves is read."""
