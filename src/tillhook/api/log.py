"""/v1/events and /v1/deliveries: the delivery log, newest first, a page at a time. Each handler
parses and replies; the work is in a plain function of `services` the dashboard calls too."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from aiohttp import web

from tillhook import rules
from tillhook.api import viewing
from tillhook.api.parsing import (
    body_model,
    find_endpoint,
    invalid,
    parse_cursor,
    parse_when,
    query_model,
)
from tillhook.api.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryQuery,
    EventDetail,
    EventOut,
    EventQuery,
    FilteredOut,
    RetryMatchingIn,
    RetryMatchingOut,
    SchemaErrorOut,
)
from tillhook.api.state import SERVICES, Services
from tillhook.errors import InvalidInput
from tillhook.models import DeliveryState, Endpoint, format_time
from tillhook.shaping import USER_AGENT
from tillhook.store.port import DeliveryRow, EventRow, LogFilter

# A retry of everything a filter matches is bounded, so one click cannot hold the writer for
# long; what is left over is retried by the next click.
RETRY_MATCHING_MAX = 10_000


def _time(value: float | None) -> str | None:
    return None if value is None else format_time(value)


def held_reason(row: DeliveryRow) -> str | None:
    """Why a pending delivery is not being tried: its endpoint is off (disabled, or out of the
    config file) and holds it until it is enabled again."""
    if row.state != DeliveryState.PENDING or row.endpoint_enabled is None or row.endpoint_enabled:
        return None
    return f"endpoint {row.endpoint} is disabled: {row.endpoint_disabled_reason or 'no reason recorded'}"


def delivery_out(row: DeliveryRow) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        endpoint_id=row.endpoint_id,
        endpoint=row.endpoint,
        state=row.state,
        attempts=row.attempts,
        created_at=format_time(row.created_at),
        next_attempt_at=_time(row.next_attempt_at),
        last_attempt_at=_time(row.last_attempt_at),
        last_status=row.last_status,
        last_error=row.last_error,
        held_reason=held_reason(row),
        event_schema_errors=schema_errors_out(row.event_schema_errors),
    )


def schema_errors_out(stored: str | None) -> list[SchemaErrorOut] | None:
    """The problems ingest stored with a non-strict type's event (the JSON of {field, message})."""
    if stored is None:
        return None
    return [SchemaErrorOut(field=p["field"], message=p["message"]) for p in json.loads(stored)]


def _type_pattern(value: str | None) -> str | None:
    if value is not None:
        try:
            rules.check_patterns([value])
        except ValueError as exc:
            raise invalid([{"field": "type", "message": str(exc)}], "the query") from None
    return value


_Row = TypeVar("_Row")


def _page(rows: list[_Row], limit: int, key: Callable[[_Row], int]) -> tuple[list[_Row], str | None]:
    """The page, and the cursor of the next one when the store gave a row beyond it."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, str(key(rows[-1]))
    return rows, None


def _window(services: Services, since: str | None, until: str | None) -> tuple[float | None, float | None]:
    now = services.clock.now()
    return (
        parse_when(since, now, "since") if since is not None else None,
        parse_when(until, now, "until") if until is not None else None,
    )


def _endpoint_id(services: Services, ref: str | None) -> str | None:
    if ref is None:
        return None
    # A deleted endpoint is no longer in the registry, but its id still finds its log.
    known = services.registry.get(ref) or services.registry.by_name(ref)
    endpoint_id = known.id if known else (ref if ref.startswith("ep_") else None)
    if endpoint_id is None:
        find_endpoint(services.registry, ref)
    return endpoint_id


def delivery_filter(services: Services, q: DeliveryQuery | RetryMatchingIn) -> LogFilter:
    """The store's filter for the delivery log's query (a page) or a retry of what it matches."""
    since, until = _window(services, q.since, q.until)
    f = LogFilter(
        endpoint_id=_endpoint_id(services, q.endpoint),
        state=DeliveryState.FAILED,
        type_pattern=_type_pattern(q.type),
        last_status=q.status,
        since=since,
        until=until,
    )
    if isinstance(q, RetryMatchingIn):
        return f
    return replace(f, state=q.state, event_id=q.event, before=parse_cursor(q.cursor), limit=q.limit)


async def deliveries_page(
    services: Services, q: DeliveryQuery, *, viewer: bool
) -> tuple[list[DeliveryOut], str | None]:
    rows, cursor = _page(
        await services.store.list_deliveries(delivery_filter(services, q)), q.limit, lambda row: row.id
    )
    shown = [delivery_out(row) for row in rows]
    return [viewing.delivery(services, d) for d in shown] if viewer else shown, cursor


async def list_deliveries(request: web.Request) -> web.Response:
    deliveries, cursor = await deliveries_page(
        request.app[SERVICES], query_model(request, DeliveryQuery), viewer=viewing.is_viewer(request)
    )
    return web.json_response({"data": [d.model_dump(mode="json") for d in deliveries], "next_cursor": cursor})


def delivery_id_of(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidInput(
            f"{raw!r} is not a delivery id; delivery ids are numbers, as GET /v1/deliveries lists them",
            status=404,
            slug="not-found",
        )
    return int(raw)


def _delivery_id(request: web.Request) -> int:
    return delivery_id_of(request.match_info["id"])


async def delivery_detail(services: Services, delivery_id: int, *, viewer: bool) -> DeliveryDetail:
    row = await services.store.get_delivery(delivery_id)
    attempts = await services.store.attempts_of_delivery(delivery_id)
    detail = DeliveryDetail(
        **delivery_out(row).model_dump(),
        first_attempt_at=_time(row.first_attempt_at),
        attempt_log=[
            AttemptOut(
                number=n,
                started_at=format_time(a.started_at),
                duration_ms=round(a.duration_ms, 1),
                status=a.status,
                error=a.error,
                response_excerpt=a.response_excerpt,
                outcome=a.outcome,
                body_sent=a.body_sent.decode("utf-8", "replace") if a.body_sent is not None else None,
            )
            for n, a in enumerate(attempts, start=1)
        ],
    )
    return viewing.delivery_detail(services, detail) if viewer else detail


async def get_delivery(request: web.Request) -> web.Response:
    detail = await delivery_detail(request.app[SERVICES], _delivery_id(request), viewer=viewing.is_viewer(request))
    return web.json_response(detail.model_dump(mode="json"))


async def retry_one(services: Services, delivery_id: int) -> DeliveryOut:
    row = await services.store.retry_delivery(delivery_id, services.clock.now())
    services.dispatcher.wake([row.endpoint_id])
    return delivery_out(row)


async def retry_delivery(request: web.Request) -> web.Response:
    retried = await retry_one(request.app[SERVICES], _delivery_id(request))
    return web.json_response(retried.model_dump(mode="json"), status=202)


async def retry_matching(services: Services, q: RetryMatchingIn) -> RetryMatchingOut:
    """Count, or retry, the failed deliveries the filters match (at most RETRY_MATCHING_MAX)."""
    f = delivery_filter(services, q)
    if q.dry_run:
        return RetryMatchingOut(matched=await services.store.count_failed_matching(f), retried=0)
    done = await services.store.retry_matching(f, services.clock.now(), RETRY_MATCHING_MAX)
    if done.endpoint_ids:
        services.dispatcher.wake(list(done.endpoint_ids))
    return RetryMatchingOut(matched=done.matched, retried=done.retried)


async def post_retry_matching(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    q = await body_model(request, RetryMatchingIn)
    done = await retry_matching(services, q)
    return web.json_response(done.model_dump(mode="json"))


def sent_headers(endpoint: Endpoint | None, event_id: str, started_at: float) -> list[tuple[str, str]]:
    """The request headers of an attempt as `delivery.Deliverer` sent them, without secrets:
    the signature itself and the values of the endpoint's own headers are left out."""
    extra = [(name, "(set)") for name, _ in (endpoint.headers if endpoint is not None else ())]
    signature = endpoint.extra_signature if endpoint is not None else None
    return [
        *extra,
        ("content-type", "application/json"),
        ("user-agent", USER_AGENT),
        ("webhook-id", event_id),
        ("webhook-timestamp", str(int(started_at))),
        ("webhook-signature", "v1,… (signature not shown)"),
        *([(signature.header, "sha256=… (signature not shown)")] if signature is not None else []),
    ]


def event_out(row: EventRow) -> EventOut:
    return EventOut(
        id=row.id,
        type=row.type,
        idempotency_key=row.idempotency_key,
        received_at=format_time(row.created_at),
        schema_errors=schema_errors_out(row.schema_errors),
        test=row.test,
    )


async def events_page(
    services: Services, q: EventQuery, *, event_id: str | None = None, idempotency_key: str | None = None
) -> tuple[list[EventOut], str | None]:
    since, until = _window(services, q.since, q.until)
    f = LogFilter(
        type_pattern=_type_pattern(q.type),
        event_id=event_id,
        idempotency_key=idempotency_key,
        since=since,
        until=until,
        before=parse_cursor(q.cursor),
        limit=q.limit,
    )
    rows, cursor = _page(await services.store.list_events(f), q.limit, lambda row: row.seq)
    return [event_out(r) for r in rows], cursor


async def list_events(request: web.Request) -> web.Response:
    events, cursor = await events_page(request.app[SERVICES], query_model(request, EventQuery))
    return web.json_response({"data": [e.model_dump(mode="json") for e in events], "next_cursor": cursor})


async def event_detail(services: Services, event_id: str, *, viewer: bool) -> EventDetail:
    stored = await services.store.get_event(event_id)
    deliveries = await services.store.list_deliveries(LogFilter(event_id=stored.event.id, limit=1000))
    detail = EventDetail(
        **event_out(stored.event).model_dump(),
        payload=json.loads(stored.body),
        deliveries=[delivery_out(d) for d in reversed(deliveries)],
        filtered_out=[FilteredOut(endpoint_id=e, endpoint=_name_of(services, e)) for e in stored.filtered_out],
    )
    return viewing.event_detail(services, detail) if viewer else detail


def _name_of(services: Services, endpoint_id: str) -> str | None:
    endpoint = services.registry.get(endpoint_id)
    return endpoint.name if endpoint is not None else None


async def get_event(request: web.Request) -> web.Response:
    detail = await event_detail(request.app[SERVICES], request.match_info["id"], viewer=viewing.is_viewer(request))
    return web.json_response(detail.model_dump(mode="json"))
