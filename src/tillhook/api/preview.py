"""POST /v1/endpoints/{id}/preview: the request an endpoint would get for an event (one to try,
or one stored), built by the code an attempt uses (shaping.py), or that its filter leaves the
event out. A preview stores nothing and sends nothing; a filter or transform that fails is an
answer here (`error`), since finding such mistakes is what a preview is for."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tillhook import rules
from tillhook.api import viewing
from tillhook.api.parsing import find_endpoint, invalid, read_body, validate
from tillhook.api.schemas import PreviewIn, PreviewOut, PreviewRequest
from tillhook.api.state import SERVICES, Services
from tillhook.envelope import check_event, read_json, to_new_events
from tillhook.errors import InvalidInput
from tillhook.expressions.sandbox import EvaluationError, Sandbox
from tillhook.models import Endpoint
from tillhook.redact import MASK, origin, redact_url
from tillhook.shaping import live_secrets, request_headers, shape

WHEN_SENT = "(computed when sent)"


def checked(document: dict[str, Any]) -> PreviewIn:
    """The preview's body: an event checked as ingest checks one, or a stored event's id."""
    if document.get("event") is not None:
        check_event(document["event"], "event")  # ingest's own words for what is wrong with it
    spec = validate(PreviewIn, document, "the body")
    if spec.event is not None and spec.event_id is not None:
        raise invalid([{"field": "body", "message": "give event or event_id, not both"}], "the body")
    if spec.event is None and spec.event_id is None:
        raise invalid(
            [
                {
                    "field": "body",
                    "message": 'give event (an event to try, like {"type": "sale.completed", "data": {}}) or event_id'
                    " (the id of a stored event)",
                }
            ],
            "the body",
        )
    return spec


async def _event(services: Services, spec: PreviewIn) -> tuple[str, str, bytes]:
    """The event's id, type and body bytes: a new event's as ingest would build them now, a
    stored one's exactly as stored."""
    if spec.event is not None:
        (new,) = to_new_events([spec.event], services.clock.now(), lambda _type: ())
        return new.id, new.type, new.body
    assert spec.event_id is not None
    stored = await services.store.get_event(spec.event_id)
    return stored.event.id, stored.event.type, stored.body


def _notes(endpoint: Endpoint, event_type: str, subscribed: bool) -> list[str]:
    notes = []
    if not subscribed:
        notes.append(
            f"its events ({', '.join(endpoint.events)}) do not take {event_type}: such an event gets no delivery"
            " here; the rest is what it would get if they did"
        )
    if endpoint.removed_from_config:
        notes.append("it was taken out of the config file: it gets no new deliveries")
    elif not endpoint.enabled:
        notes.append("it is disabled: a delivery would be held until it is enabled")
    return notes


def shown_headers(endpoint: Endpoint, headers: dict[str, str], secrets: int) -> dict[str, str]:
    """The headers an attempt sends, with the endpoint's own values masked as a viewer sees
    them and each signature as a placeholder: it signs the attempt's own timestamp."""
    static = {name for name, _ in endpoint.headers}
    extra = endpoint.extra_signature.header if endpoint.extra_signature is not None else None
    shown = {}
    for name, value in headers.items():
        if name in static:
            value = MASK
        elif name == "webhook-signature" and value:
            value = " ".join(["v1,…"] * secrets) + f" {WHEN_SENT}"
        elif name == extra:
            value = f"sha256=… {WHEN_SENT}"
        shown[name] = value
    return shown


async def preview(services: Services, endpoint: Endpoint, document: dict[str, Any], *, viewer: bool) -> PreviewOut:
    """For a viewer, the request's url is the endpoint's origin only."""
    spec = checked(document)
    event_id, event_type, body = await _event(services, spec)
    subscribed = rules.subscribes(endpoint.events, event_type)
    reply = PreviewOut(
        endpoint_id=endpoint.id,
        endpoint=endpoint.name,
        event_id=event_id,
        event_type=event_type,
        subscribed=subscribed,
        filtered_out=False,
        error=None,
        transformed=False,
        transformed_by=None,
        request=None,
        notes=_notes(endpoint, event_type, subscribed),
    )
    sandbox = services.preview_sandbox.get()
    if endpoint.filter is not None:
        verdict = await _filter(sandbox, endpoint.filter, body)
        if isinstance(verdict, EvaluationError):
            reply.notes.append(
                "a real event would still get a delivery, which evaluates the filter again before each attempt"
                " and fails until it can"
            )
            return reply.model_copy(update={"error": str(verdict)})
        if not verdict:
            return reply.model_copy(update={"filtered_out": True})
    try:
        shaped = await shape(sandbox, endpoint, body, check_filter=False)
    except EvaluationError as exc:
        reply.notes.append("each attempt would fail with this error, and be retried")
        return reply.model_copy(update={"error": str(exc)})
    assert shaped is not None  # only a filter leaves an event out, and it was checked above
    now = services.clock.now()
    live = live_secrets(endpoint, now)
    headers = request_headers(endpoint, event_id, shaped.body, int(now), live)
    text = shaped.body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    by = "transform" if endpoint.transform is not None else f"preset:{endpoint.preset}" if shaped.transformed else None
    return reply.model_copy(
        update={
            "transformed": shaped.transformed,
            "transformed_by": by,
            "request": PreviewRequest(
                method="POST",
                url=origin(endpoint.url) if viewer else redact_url(endpoint.url),
                headers=shown_headers(endpoint, headers, len(live)),
                body=parsed,
                body_text=text,
            ),
        }
    )


async def _filter(sandbox: Sandbox, source: str, body: bytes) -> bool | EvaluationError:
    try:
        [verdict] = await sandbox.filter(source, [body])
    except EvaluationError as exc:
        return exc
    return verdict


async def _document(request: web.Request) -> dict[str, Any]:
    raw = await read_body(request)
    if request.content_type != "application/json":
        raise InvalidInput(
            f"send Content-Type: application/json (got {request.content_type or 'none'})",
            status=415,
            slug="unsupported-media-type",
        )
    # Read as ingest reads an event, so its numbers are what a delivery of it would carry.
    document = read_json(raw)
    if not isinstance(document, dict):
        raise InvalidInput("the body must be a JSON object", slug="invalid-input")
    return document


async def preview_endpoint(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    endpoint = find_endpoint(services.registry, request.match_info["id"])
    reply = await preview(services, endpoint, await _document(request), viewer=viewing.is_viewer(request))
    return web.json_response(reply.model_dump(mode="json"))
