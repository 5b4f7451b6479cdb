"""Idempotency keys: what the POS's earlier use of a key was, and whether a repeat is the same
event (answered with the original) or the key reused for another one (refused)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from tillhook.errors import InvalidInput
from tillhook.models import NewEvent
from tillhook.store.sql_util import in_chunks, placeholders


@dataclass(slots=True)
class Seen:
    """An event known by its idempotency key: stored, or earlier in the same batch (`index`)."""

    id: str
    type: str
    deliveries: int
    timestamp_given: bool | None  # None: stored before this was kept
    body: bytes
    index: int | None = None


def known_keys(conn: sqlite3.Connection, keys: list[str]) -> dict[str, Seen]:
    """The stored events these keys name."""
    seen: dict[str, Seen] = {}
    for chunk in in_chunks(sorted(set(keys))):
        sql = (
            "SELECT e.idempotency_key, e.id, e.type, (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id),"
            f" e.timestamp_given, e.body FROM events e WHERE e.idempotency_key IN ({placeholders(chunk)})"
        )
        for key, event_id, event_type, count, given, body in conn.execute(sql, chunk):
            seen[key] = Seen(event_id, event_type, count, None if given is None else bool(given), body)
    return seen


def same_content(prior: Seen, event: NewEvent) -> bool:
    """A repeat of the key with the same type, data and given timestamp (exactly: a retry
    resends the same body, so one that leaves out a timestamp the original gave, or the other
    way round, is other content). Both bodies are read back only here, when a key repeats,
    so that keyed events cost nothing more to accept. For events stored before it was kept
    whether their timestamp was given, only the type and data count."""
    before, now = _content(prior.body), _content(event.body)
    if before[:2] != now[:2]:
        return False
    if prior.timestamp_given is None:
        return True
    return prior.timestamp_given == event.timestamp_given and (not event.timestamp_given or before[2] == now[2])


def _content(body: bytes) -> tuple[object, str, object]:
    # The standard library, which keeps integers beyond 64 bits; sorted keys, so that only
    # the content counts, and 1, 1.0 and true stay apart. Timestamps in a body are already
    # normalised to UTC (envelope.py).
    document = json.loads(body)
    return document.get("type"), json.dumps(document.get("data"), sort_keys=True), document.get("timestamp")


def reuse(key: str, prior: Seen, field_name: str) -> dict[str, str]:
    shown = repr(key if len(key) <= 80 else key[:80] + "…")
    if prior.index is not None:
        message = (
            f"the key {shown} is also given to [{prior.index}] of this batch, with another type, data or"
            " timestamp: give each event its own key"
        )
    else:
        message = (
            f"the key {shown} already names event {prior.id}, sent with another type, data or timestamp:"
            " give a new event a new key (a retry must resend the same content)"
        )
    return {"field": field_name, "message": message}


def refusal(reused: list[dict[str, str]]) -> InvalidInput:
    """The whole op is refused (a batch is all or nothing), each reused key named."""
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in reused[:5])
    more = f" (and {len(reused) - 5} more)" if len(reused) > 5 else ""
    return InvalidInput(
        f"an idempotency key was reused with other content, so nothing was stored: {summary}{more}",
        slug="idempotency-key-reused",
        errors=reused,
    )
