"""What a viewer (the viewer token, or a session signed in with it) reads of where an endpoint
delivers: its origin only, never the path, where chat webhooks keep their token
(hooks.slack.com/services/T…/B…/token, discord.com/api/webhooks/{id}/{token}). The admin
reads the replies as they are; a viewer gets a copy of every text that may quote the endpoint
(errors, response excerpts, failure and disabled reasons) scrubbed again of its credentials
(URL and header values, redact.Scrubber) and with its URL cut to its origin (origins_only)."""

from __future__ import annotations

from aiohttp import web

from tillhook.api.dashboard.guard import SESSION
from tillhook.api.schemas import DeliveryDetail, DeliveryOut, EndpointStatus, EventDetail, StatusOut
from tillhook.api.state import ROLE, Services
from tillhook.redact import origins_only, scrubber


def is_viewer(request: web.Request) -> bool:
    """Whether the request reads as a viewer: with the viewer token, or in a viewer session."""
    session = request.get(SESSION)
    return request.get(ROLE) == "viewer" or (session is not None and session.role != "admin")


def _text(services: Services, endpoint_id: str, text: str | None) -> str | None:
    if text is None:
        return None
    # A deleted endpoint's URL is no longer known: the URLs its texts quote are still cut, and
    # what looks like a token in a path (origins_only).
    endpoint = services.registry.get(endpoint_id)
    if endpoint is None:
        return origins_only(text)
    # Scrubbed once more: a row stored before a header was added, or before header values
    # were masked at all, may hold one as the receiver echoed it.
    return origins_only(scrubber(endpoint.url, endpoint.headers)(text), endpoint.url)


def _delivery_texts(services: Services, d: DeliveryOut) -> dict[str, str | None]:
    return {
        "last_error": _text(services, d.endpoint_id, d.last_error),
        "held_reason": _text(services, d.endpoint_id, d.held_reason),
    }


def delivery(services: Services, d: DeliveryOut) -> DeliveryOut:
    return d.model_copy(update=_delivery_texts(services, d))


def delivery_detail(services: Services, d: DeliveryDetail) -> DeliveryDetail:
    attempts = [
        a.model_copy(
            update={
                "error": _text(services, d.endpoint_id, a.error),
                "response_excerpt": _text(services, d.endpoint_id, a.response_excerpt),
            }
        )
        for a in d.attempt_log
    ]
    return d.model_copy(update={**_delivery_texts(services, d), "attempt_log": attempts})


def event_detail(services: Services, e: EventDetail) -> EventDetail:
    return e.model_copy(update={"deliveries": [delivery(services, d) for d in e.deliveries]})


def endpoint_status(services: Services, e: EndpointStatus) -> EndpointStatus:
    return e.model_copy(
        update={
            "disabled_reason": _text(services, e.id, e.disabled_reason),
            "last_failure_reason": _text(services, e.id, e.last_failure_reason),
            "blocked_reason": _text(services, e.id, e.blocked_reason),
        }
    )


def status(services: Services, s: StatusOut) -> StatusOut:
    return s.model_copy(update={"endpoints": [endpoint_status(services, e) for e in s.endpoints]})
