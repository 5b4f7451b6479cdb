"""POST /v1/events: validate, store durably (sharing commits), then reply 202."""

from __future__ import annotations

from collections import Counter

import orjson
from aiohttp import web

from tillhook import admission
from tillhook.api.parsing import read_body
from tillhook.api.problems import HttpProblem
from tillhook.api.state import SERVICES
from tillhook.envelope import parse_body, to_new_events


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
    events, batch = parse_body(raw, request.headers.get("Idempotency-Key"), services.catalogue)
    now = services.clock.now()
    new_events = await services.fan_out(to_new_events(events, now, services.registry.subscribers, services.catalogue))
    accepted = await admission.enqueue(services.dispatcher, new_events, batch=batch)
    counted = Counter(event.type for event in accepted if not event.duplicate)
    for event_type, n in counted.items():
        services.metrics.events_ingested.labels(event_type).inc(n)
    body = orjson.dumps(accepted if batch else accepted[0])
    return web.Response(body=body, status=202, content_type="application/json")
