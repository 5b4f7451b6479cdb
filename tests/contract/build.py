"""What the contract's tests hand the outbox, built the way the daemon builds it, and the few
verb sequences most tests go through (make endpoints, claim, write an outcome)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any

from tillhook.models import (
    AttemptRecord,
    AttemptResult,
    ClaimedDelivery,
    DeliveryState,
    Endpoint,
    NewEvent,
    SigningSecret,
    format_time,
)
from tillhook.store.port import ClaimRequest, Outbox

# Every test runs at fixed times around this one (unix s), never the wall clock.
NOW = 1_800_000_000.0


def secret(n: int = 1) -> str:
    return "whsec_" + base64.b64encode(bytes([n]) * 32).decode()


def endpoint(name: str, events: Sequence[str] = ("*",), **fields: Any) -> Endpoint:
    """An endpoint as the API hands it to `create_endpoint` (its id is given by the outbox)."""
    return Endpoint(
        id="",
        name=name,
        url=f"https://{name}.example.com/hook",
        events=tuple(events),
        secrets=(SigningSecret(secret()),),
        **fields,
    )


async def endpoints(outbox: Outbox, *names: str, **fields: Any) -> list[Endpoint]:
    """Created one after another, a second apart (so that "oldest first" is their order)."""
    return [await outbox.create_endpoint(endpoint(name, **fields), NOW - 3600 + i) for i, name in enumerate(names)]


def event(
    event_id: str,
    to: Iterable[str],
    *,
    type_: str = "order.paid",
    at: float = NOW - 60,
    key: str | None = None,
    data: dict[str, Any] | None = None,
    filtered_out: Sequence[str] = (),
) -> NewEvent:
    """An event as ingest builds it: its envelope's bytes are final. A repeat of the POS's
    request is a new event id with the same key, type, data and timestamp."""
    document = {"id": event_id, "type": type_, "timestamp": format_time(at), "data": data or {"order": key or event_id}}
    return NewEvent(
        id=event_id,
        type=type_,
        idempotency_key=key,
        body=json.dumps(document, separators=(",", ":")).encode(),
        created_at=at,
        endpoint_ids=tuple(to),
        filtered_out=tuple(filtered_out),
        timestamp_given=key is not None,
    )


async def claim(
    outbox: Outbox, quotas: dict[str, int], now: float = NOW, ordered: Iterable[str] = ()
) -> list[ClaimedDelivery]:
    return await outbox.claim_due(ClaimRequest(quotas, now, frozenset(ordered)))


def attempt(
    delivery: ClaimedDelivery,
    state: DeliveryState,
    *,
    at: float = NOW,
    status: int | None = 200,
    error: str | None = None,
    retry_at: float | None = None,
    outcome: str | None = None,
    body_sent: bytes | None = None,
    disable: str | None = None,
    release_at: float | None = None,
) -> AttemptRecord:
    """The record the dispatcher writes for one attempt of `delivery` started `at`."""
    verdict = {
        DeliveryState.DELIVERED: "delivered",
        DeliveryState.PENDING: "retry",
        DeliveryState.FAILED: "failed",
    }.get(state, state.value)
    return AttemptRecord(
        delivery_id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        result=AttemptResult(
            started_at=at,
            duration_ms=40.0,
            status=status,
            error=error,
            response_excerpt=None if status is None else f"answered {status}",
            body_sent=body_sent,
        ),
        state=state,
        next_attempt_at=retry_at,
        first_attempt_at=delivery.first_attempt_at or at,
        outcome=outcome or verdict,
        disable_endpoint=disable,
        release_backlog_at=release_at,
    )


async def settle(outbox: Outbox, *records: AttemptRecord, now: float = NOW) -> None:
    """Write outcomes and wait until they are written."""
    claimed = await outbox.write_outcomes(records, now)
    assert claimed == []


async def finish(outbox: Outbox, delivery: ClaimedDelivery, state: DeliveryState, **how: Any) -> None:
    """One attempt of an already claimed delivery, ending it in `state`."""
    how.setdefault("status", 200 if state is DeliveryState.DELIVERED else 500)
    await settle(outbox, attempt(delivery, state, **how), now=how.get("at", NOW))
