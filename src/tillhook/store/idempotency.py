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
    digest: bytes | None
    body: bytes
    index: int | None = None


def known_keys(conn: sqlite3.Connection, keys: list[str]) -> dict[str, Seen]:
    """The stored events these keys name."""
    seen: dict[str, Seen] = {}
    for chunk in in_chunks(sorted(set(keys))):
        sql = (
            "SELECT e.idempotency_key, e.id, e.type, (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id),"
            f" e.content_digest, e.body FROM events e WHERE e.idempotency_key IN ({placeholders(chunk)})"
        )
        for key, event_id, event_type, count, digest, body in conn.execute(sql, chunk):
            seen[key] = Seen(event_id, event_type, count, digest, body)
    return seen


def same_content(prior: Seen, event: NewEvent) -> bool:
    """A repeat of the key with the same type, data and given timestamp (exactly: a retry
    resends the same body). Events stored before digests were kept have none: for those the
    type and data are compared, read back from the stored body, since whether their
    timestamp was given or is the time of receipt is no longer known."""
    if prior.digest is not None and event.content_digest is not None:
        return prior.digest == event.content_digest
    return _type_and_data(prior.body) == _type_and_data(event.body)


def _type_and_data(body: bytes) -> str:
    # The standard library, which keeps integers beyond 64 bits; sorted keys, so that only
    # the content counts, and 1, 1.0 and true stay apart.
    document = json.loads(body)
    return json.dumps([document.get("type"), document.get("data")], sort_keys=True)


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
        slug="idempotency-key-reused", errors=reused,
    )
