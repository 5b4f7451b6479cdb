"""POST /v1/events: validate, store durably (sharing commits), then reply 202."""

from __future__ import annotations

from collections import Counter

import orjson
from aiohttp import web

from tillhook import admission
from tillhook.api.parsing import read_body
from tillhook.api.problems import HttpProblem
from tillhook.api.state import SERVICES, Services
from tillhook.envelope import SchemaMismatch, parse_body, to_new_events
from tillhook.models import EventIn
from tillhook.store.port import LogFilter


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def post_events(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    if not _is_json(request.content_type):
        raise HttpProblem(
            415,
            "unsupported-media-type",
            f"send Content-Type: application/json (got {request.content_type or 'none'})",
        )
    raw = await read_body(request)
    try:
        events, batch = parse_body(raw, request.headers.get("Idempotency-Key"), services.catalogue)
    except SchemaMismatch as refused:
        events, batch = await _repeats(services, refused), refused.batch
    now = services.clock.now()
    new_events = await services.fan_out(to_new_events(events, now, services.registry.subscribers, services.catalogue))
    accepted = await admission.enqueue(services.dispatcher, new_events, batch=batch)
    counted = Counter(event.type for event in accepted if not event.duplicate)
    for event_type, n in counted.items():
        services.metrics.events_ingested.labels(event_type).inc(n)
    body = orjson.dumps(accepted if batch else accepted[0])
    return web.Response(body=body, status=202, content_type="application/json")


async def _repeats(services: Services, refused: SchemaMismatch) -> list[EventIn]:
    """The request's events when every one its type's schema refuses repeats an idempotency
    key already stored: accepted before the type was made strict, they are answered as any
    repeat is (the original, `duplicate`, or `idempotency-key-reused` for other content), not
    refused now. Otherwise the refusal stands."""
    for event in refused.refused:
        if event.id is None or not await services.store.list_events(LogFilter(idempotency_key=event.id, limit=1)):
            raise refused
    return refused.every
