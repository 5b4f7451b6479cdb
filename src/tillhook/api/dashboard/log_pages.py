"""The delivery log's pages: deliveries (filtered, newest first, a page at a time), one
delivery with every attempt, retrying one or every failed one a filter matches, and the
events. Each calls the functions the admin API's log handlers call (api/log.py) and renders
what they return; form input is validated by the API's own models."""

from __future__ import annotations

import json
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tillhook.api import log, viewing
from tillhook.api.dashboard.render import render
from tillhook.api.parsing import validate
from tillhook.api.schemas import AttemptOut, DeliveryQuery, EventSearch, RetryMatchingIn
from tillhook.api.state import SERVICES
from tillhook.errors import Conflict, InvalidInput, NotFound
from tillhook.models import DeliveryState

DELIVERY_FILTERS = ("endpoint", "state", "type", "since", "until", "status")
RETRY_FILTERS = ("endpoint", "type", "since", "until", "status")  # what retry-all takes: always failed ones
EVENT_FILTERS = ("id", "idempotency_key", "type", "since", "until")
RETRYABLE = frozenset({"failed", "cancelled"})
OUTCOME_WORDS = {
    "delivered": "delivered",
    "retry": "not accepted; tried again later",
    "gone": "the receiver answered 410 Gone, so the endpoint was disabled",
    "failed": "not accepted; given up",
}


def _outcome_words(attempt: AttemptOut) -> str:
    return OUTCOME_WORDS.get(attempt.outcome, attempt.outcome)


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _given(values: Any, names: tuple[str, ...]) -> dict[str, str]:
    """The filled-in fields among `names` (an empty form field means no filter)."""
    found: dict[str, str] = {}
    for name in names:
        value = values.get(name)
        if isinstance(value, str) and value.strip():
            found[name] = value.strip()
    return found


def _errors(exc: InvalidInput) -> dict[str, str]:
    return {e["field"]: e["message"] for e in exc.errors or [{"field": "form", "message": str(exc)}]}


def _url(path: str, values: dict[str, str]) -> str:
    return f"{path}?{urlencode(values)}" if values else path


def _notice(request: web.Request) -> str | None:
    notice = request.query.get("notice")
    return notice[:300] if notice else None


async def deliveries(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    form = _given(request.query, DELIVERY_FILTERS)
    paging = _given(request.query, ("cursor",))
    errors: dict[str, str] = {}
    rows: list[Any] = []
    cursor = None
    try:
        q = validate(DeliveryQuery, {**form, **paging}, "the filter")
        rows, cursor = await log.deliveries_page(services, q, viewer=viewing.is_viewer(request))
    except InvalidInput as exc:
        errors = _errors(exc)
    except NotFound:
        errors = {"endpoint": f"there is no endpoint {form.get('endpoint')!r}"}
    live = request.query.get("part") == "live"
    return render(
        request,
        "deliveries_live.html" if live else "deliveries.html",
        status=422 if errors and not live else 200,
        form=form,
        errors=errors,
        rows=rows,
        retryable=RETRYABLE,
        back=_url("/ui/deliveries", {**form, **paging}),
        older=_url("/ui/deliveries", {**form, "cursor": cursor}) if cursor else None,
        live_url=_url("/ui/deliveries", {**form, **paging, "part": "live"}),
        retry_filters=_given(form, RETRY_FILTERS),
        can_retry_all=form.get("state") in (None, "failed"),
        endpoints=sorted(e.name for e in services.registry.all()),
        states=[s.value for s in DeliveryState],
        notice=_notice(request),
        at_most=log.RETRY_MATCHING_MAX,
    )


def _local(back: Any, default: str) -> str:
    """Where to go after a change: a dashboard page of this daemon, never elsewhere."""
    if isinstance(back, str) and back.startswith("/ui/") and "//" not in back and "\\" not in back:
        return back
    return default


def _with_notice(url: str, notice: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'notice': notice})}"


async def retry_one(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    form = await request.post()
    try:
        delivery_id = log.delivery_id_of(request.match_info["id"])
        retried = await log.retry_one(services, delivery_id)
    except (Conflict, NotFound, InvalidInput) as exc:
        return render(
            request,
            "problem.html",
            status=409 if isinstance(exc, Conflict) else 404,
            title="Not retried",
            message=str(exc),
            back=_local(form.get("back"), "/ui/deliveries"),
        )
    back = _local(form.get("back"), f"/ui/deliveries/{retried.id}")
    raise web.HTTPSeeOther(_with_notice(back, f"Delivery {retried.id} is due again now."))


async def retry_matching(request: web.Request) -> web.StreamResponse:
    """First post: the count, and a question; the confirmed post runs it."""
    services = request.app[SERVICES]
    form = await request.post()
    filters = _given(form, RETRY_FILTERS)
    confirmed = form.get("confirm") == "yes"
    back = _url("/ui/deliveries", filters)
    try:
        q = validate(RetryMatchingIn, {**filters, "dry_run": not confirmed}, "the filter")
        done = await log.retry_matching(services, q)
    except (InvalidInput, NotFound) as exc:
        message = "; ".join(f"{k}: {v}" for k, v in _errors(exc).items()) if isinstance(exc, InvalidInput) else str(exc)
        return render(request, "problem.html", status=422, title="Not retried", message=message, back=back)
    if not confirmed:
        return render(
            request,
            "retry_confirm.html",
            matched=done.matched,
            at_most=log.RETRY_MATCHING_MAX,
            filters=filters,
            back=back,
        )
    left = done.matched - done.retried
    notice = f"Retried {done.retried} failed deliveries."
    if left:
        notice += (
            f" {left} not retried: more than {log.RETRY_MATCHING_MAX:,} at once,"
            " or their endpoint is disabled or deleted."
        )
    raise web.HTTPSeeOther(_with_notice(back, notice))


async def delivery(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        detail = await log.delivery_detail(
            services, log.delivery_id_of(request.match_info["id"]), viewer=viewing.is_viewer(request)
        )
    except (NotFound, InvalidInput) as exc:
        return render(
            request, "problem.html", status=404, title="No such delivery", message=str(exc), back="/ui/deliveries"
        )
    endpoint = services.registry.get(detail.endpoint_id)
    headers = [
        log.sent_headers(endpoint, detail.event_id, datetime.fromisoformat(a.started_at).timestamp())
        for a in detail.attempt_log
    ]
    live = request.query.get("part") == "live"
    return render(
        request,
        "delivery_live.html" if live else "delivery.html",
        d=detail,
        attempts=list(zip(detail.attempt_log, headers, strict=True))[::-1],
        retryable=RETRYABLE,
        notice=_notice(request),
        live_url=f"/ui/deliveries/{detail.id}?part=live",
        outcome_words=_outcome_words,
        status_phrase=_status_phrase,
    )


async def events(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    form = _given(request.query, EVENT_FILTERS)
    paging = _given(request.query, ("cursor",))
    errors: dict[str, str] = {}
    rows: list[Any] = []
    cursor = None
    try:
        q = validate(EventSearch, {**form, **paging}, "the search")
        rows, cursor = await log.events_page(services, q, event_id=q.id, idempotency_key=q.idempotency_key)
    except InvalidInput as exc:
        errors = _errors(exc)
    return render(
        request,
        "events.html",
        status=422 if errors else 200,
        form=form,
        errors=errors,
        rows=rows,
        older=_url("/ui/events", {**form, "cursor": cursor}) if cursor else None,
    )


async def event(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        detail = await log.event_detail(services, request.match_info["id"], viewer=viewing.is_viewer(request))
    except NotFound as exc:
        return render(request, "problem.html", status=404, title="No such event", message=str(exc), back="/ui/events")
    payload = json.dumps(detail.payload, indent=2, ensure_ascii=False)
    live = request.query.get("part") == "live"
    return render(
        request,
        "event_live.html" if live else "event.html",
        e=detail,
        payload=payload,
        live_url=f"/ui/events/{detail.id}?part=live",
    )


def add_log_pages(app: web.Application) -> None:
    app.router.add_get("/ui/deliveries", deliveries)
    app.router.add_post("/ui/deliveries/retry", retry_matching)
    app.router.add_get("/ui/deliveries/{id}", delivery)
    app.router.add_post("/ui/deliveries/{id}/retry", retry_one)
    app.router.add_get("/ui/events", events)
    app.router.add_get("/ui/events/{id}", event)
