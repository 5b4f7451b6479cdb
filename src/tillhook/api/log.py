"""/v1/events and /v1/deliveries: the delivery log, newest first, a page at a time."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tillhook import rules
from tillhook.api.parsing import find_endpoint, invalid, parse_cursor, parse_when, query_model
from tillhook.api.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryQuery,
    EventDetail,
    EventOut,
    EventQuery,
)
from tillhook.api.state import SERVICES, Services
from tillhook.errors import InvalidInput
from tillhook.models import format_time
from tillhook.store.log_sql import LogFilter


def _time(value: float | None) -> str | None:
    return None if value is None else format_time(value)


def held_reason(row: dict[str, Any]) -> str | None:
    """Why a pending delivery is not being tried: its endpoint is off (disabled, or out of the
    config file) and holds it until it is enabled again."""
    if row["state"] != "pending" or row["endpoint_enabled"] is None or row["endpoint_enabled"]:
        return None
    return f"endpoint {row['endpoint']} is disabled: {row['endpoint_disabled_reason'] or 'no reason recorded'}"


def delivery_out(row: dict[str, Any]) -> DeliveryOut:
    return DeliveryOut(
        id=row["id"], event_id=row["event_id"], event_type=row["event_type"], endpoint_id=row["endpoint_id"],
        endpoint=row["endpoint"], state=row["state"], attempts=row["attempts"],
        created_at=format_time(row["created_at"]), next_attempt_at=_time(row["next_attempt_at"]),
        last_attempt_at=_time(row["last_attempt_at"]), last_status=row["last_status"], last_error=row["last_error"],
        held_reason=held_reason(row),
    )


def _type_pattern(value: str | None) -> str | None:
    if value is not None:
        try:
            rules.check_patterns([value])
        except ValueError as exc:
            raise invalid([{"field": "type", "message": str(exc)}], "the query") from None
    return value


def _page(rows: list[dict[str, Any]], limit: int, key: str) -> tuple[list[dict[str, Any]], str | None]:
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, str(rows[-1][key])
    return rows, None


def _window(services: Services, since: str | None, until: str | None) -> tuple[float | None, float | None]:
    now = services.clock.now()
    return (
        parse_when(since, now, "since") if since is not None else None,
        parse_when(until, now, "until") if until is not None else None,
    )


async def list_deliveries(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    q = query_model(request, DeliveryQuery)
    since, until = _window(services, q.since, q.until)
    endpoint_id = None
    if q.endpoint is not None:
        # A deleted endpoint is no longer in the registry, but its id still finds its log.
        known = services.registry.get(q.endpoint) or services.registry.by_name(q.endpoint)
        endpoint_id = known.id if known else (q.endpoint if q.endpoint.startswith("ep_") else None)
        if endpoint_id is None:
            find_endpoint(services.registry, q.endpoint)
    f = LogFilter(
        endpoint_id=endpoint_id, state=q.state.value if q.state else None, type_pattern=_type_pattern(q.type),
        event_id=q.event, since=since, until=until, before=parse_cursor(q.cursor), limit=q.limit,
    )
    rows, cursor = _page(await services.store.list_deliveries(f), q.limit, "id")
    data = [delivery_out(row).model_dump(mode="json") for row in rows]
    return web.json_response({"data": data, "next_cursor": cursor})


def _delivery_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(
            f"{raw!r} is not a delivery id; delivery ids are numbers, as GET /v1/deliveries lists them",
            status=404, slug="not-found",
        )
    return int(raw)


async def get_delivery(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    delivery_id = _delivery_id(request)
    row = await services.store.get_delivery(delivery_id)
    attempts = await services.store.attempts_of_delivery(delivery_id)
    detail = DeliveryDetail(
        **delivery_out(row).model_dump(),
        first_attempt_at=_time(row["first_attempt_at"]),
        attempt_log=[
            AttemptOut(
                number=n, started_at=format_time(a["started_at"]), duration_ms=round(a["duration_ms"], 1),
                status=a["status"], error=a["error"], response_excerpt=a["response_excerpt"], outcome=a["outcome"],
            )
            for n, a in enumerate(attempts, start=1)
        ],
    )
    return web.json_response(detail.model_dump(mode="json"))


async def retry_delivery(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    delivery_id = _delivery_id(request)
    endpoint_id, row = await services.store.retry_delivery(delivery_id, services.clock.now())
    services.dispatcher.wake([endpoint_id])
    return web.json_response(delivery_out(row).model_dump(mode="json"), status=202)


def event_out(row: dict[str, Any]) -> EventOut:
    return EventOut(
        id=row["id"], type=row["type"], idempotency_key=row["idempotency_key"], received_at=format_time(row["created_at"])
    )


async def list_events(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    q = query_model(request, EventQuery)
    since, until = _window(services, q.since, q.until)
    f = LogFilter(type_pattern=_type_pattern(q.type), since=since, until=until, before=parse_cursor(q.cursor), limit=q.limit)
    rows, cursor = _page(await services.store.list_events(f), q.limit, "seq")
    return web.json_response({"data": [event_out(r).model_dump(mode="json") for r in rows], "next_cursor": cursor})


async def get_event(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    row, body = await services.store.get_event(request.match_info["id"])
    deliveries = await services.store.list_deliveries(LogFilter(event_id=row["id"], limit=1000))
    detail = EventDetail(
        **event_out(row).model_dump(),
        payload=json.loads(body),
        deliveries=[delivery_out(d) for d in reversed(deliveries)],
    )
    return web.json_response(detail.model_dump(mode="json"))
