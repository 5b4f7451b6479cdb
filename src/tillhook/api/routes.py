"""Every route once: the app registers these and /openapi.json describes these."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from tillhook.api import endpoints, event_types, log, metrics, preview, status
from tillhook.api.event_type_schemas import EventTypeDetail, EventTypeList
from tillhook.api.health import get_healthz
from tillhook.api.ingest import post_events
from tillhook.api.schemas import (
    DeliveryDetail,
    DeliveryOut,
    DeliveryQuery,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EndpointQuery,
    EndpointSecretOut,
    EndpointWithSecret,
    EventDetail,
    EventOut,
    EventQuery,
    HealthOut,
    IngestBody,
    IngestReply,
    Page,
    PingOut,
    PreviewIn,
    PreviewOut,
    ReplayIn,
    ReplayOut,
    RetryMatchingIn,
    RetryMatchingOut,
    RotateIn,
    StatusOut,
    TestIn,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    status: int
    reply: type[BaseModel] | None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    public: bool = False
    body_optional: bool = False
    text_reply: str | None = None  # a media type, for replies that are not JSON


_ONE = (404,)
_EDIT = (404, 409, 415, 422, 400)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/healthz",
        get_healthz,
        "200 while the loop runs and the database takes writes",
        "operations",
        200,
        HealthOut,
        errors=(503,),
        public=True,
    ),
    Route(
        "POST",
        "/v1/events",
        post_events,
        "Accept events (ingest token or admin token)",
        "ingest",
        202,
        IngestReply,
        body=IngestBody,
        errors=(400, 413, 415, 422, 503),
    ),
    Route(
        "GET",
        "/metrics",
        metrics.get_metrics,
        "Prometheus metrics (text format 0.0.4)",
        "operations",
        200,
        None,
        text_reply="text/plain",
    ),
    Route(
        "GET",
        "/v1/status",
        status.get_status,
        "Version, uptime, backlog and per-endpoint health",
        "operations",
        200,
        StatusOut,
    ),
    Route(
        "GET",
        "/v1/endpoints",
        endpoints.list_endpoints,
        "List endpoints; ?category= only those of one category, compared exactly",
        "endpoints",
        200,
        Page[EndpointOut],
        query=EndpointQuery,
        errors=(422,),
    ),
    Route(
        "POST",
        "/v1/endpoints",
        endpoints.create_endpoint,
        "Create an endpoint; the reply shows its secret once",
        "endpoints",
        201,
        EndpointWithSecret,
        body=EndpointIn,
        errors=(400, 409, 415, 422),
    ),
    Route(
        "GET",
        "/v1/endpoints/{id}",
        endpoints.get_endpoint,
        "One endpoint, by id or name",
        "endpoints",
        200,
        EndpointOut,
        errors=_ONE,
    ),
    Route(
        "PATCH",
        "/v1/endpoints/{id}",
        endpoints.patch_endpoint,
        "Change an endpoint's fields",
        "endpoints",
        200,
        EndpointOut,
        body=EndpointPatch,
        errors=_EDIT,
    ),
    Route(
        "DELETE",
        "/v1/endpoints/{id}",
        endpoints.delete_endpoint,
        "Delete an endpoint; its unfinished deliveries are cancelled and kept in the log",
        "endpoints",
        204,
        None,
        errors=(404, 409),
    ),
    Route(
        "POST",
        "/v1/endpoints/{id}/enable",
        endpoints.enable_endpoint,
        "Enable: its held deliveries go out at once, in order",
        "endpoints",
        200,
        EndpointOut,
        errors=_ONE,
    ),
    Route(
        "POST",
        "/v1/endpoints/{id}/disable",
        endpoints.disable_endpoint,
        "Disable: deliveries are held (new ones too) until enabled; nothing is dropped",
        "endpoints",
        200,
        EndpointOut,
        errors=_ONE,
    ),
    Route(
        "POST",
        "/v1/endpoints/{id}/rotate-secret",
        endpoints.rotate_secret,
        "New secret, shown once; the old one keeps signing for the grace period",
        "endpoints",
        200,
        EndpointWithSecret,
        body=RotateIn,
        errors=_EDIT,
        body_optional=True,
    ),
    Route(
        "GET",
        "/v1/endpoints/{id}/secret",
        endpoints.get_secret,
        "The current signing secret and any still in its grace period, for the receiver's developer",
        "endpoints",
        200,
        EndpointSecretOut,
        errors=_ONE,
    ),
    Route(
        "POST",
        "/v1/endpoints/{id}/preview",
        preview.preview_endpoint,
        "The exact request this endpoint would get for an event, or that its filter leaves it out;"
        " stores and sends nothing",
        "endpoints",
        200,
        PreviewOut,
        body=PreviewIn,
        errors=(400, 404, 415, 422),
    ),
    Route(
        "POST",
        "/v1/endpoints/{id}/test",
        endpoints.test_endpoint,
        'Deliver a test event to this endpoint only, marked "test": true in its envelope: a tillhook.ping, or'
        ' with {"event_type": T} the catalogue\'s example of T (422 when T is not in the catalogue or has no'
        " example). Its subscription and filter are not consulted; its transform or preset applies",
        "endpoints",
        202,
        PingOut,
        body=TestIn,
        body_optional=True,
        errors=(404, 409, 415, 422, 503),
    ),
    Route(
        "POST",
        "/v1/endpoints/{id}/replay",
        endpoints.replay_endpoint,
        "New deliveries to this endpoint for past events",
        "endpoints",
        202,
        ReplayOut,
        body=ReplayIn,
        errors=(400, 404, 415, 422, 503),
    ),
    Route(
        "GET",
        "/v1/events",
        log.list_events,
        "Events, newest first",
        "log",
        200,
        Page[EventOut],
        query=EventQuery,
        errors=(422,),
    ),
    Route(
        "GET",
        "/v1/events/{id}",
        log.get_event,
        "One event, its payload and its deliveries",
        "log",
        200,
        EventDetail,
        errors=_ONE,
    ),
    Route(
        "GET",
        "/v1/event-types",
        event_types.list_event_types,
        "Every event type in the catalogue ([[event_types]]) or ever received, by name, with how many came and when",
        "event-types",
        200,
        EventTypeList,
    ),
    Route(
        "GET",
        "/v1/event-types/{name}",
        event_types.get_event_type,
        "One event type, with the catalogue's schema and example; 404 when neither the catalogue nor the"
        " events received know it",
        "event-types",
        200,
        EventTypeDetail,
        errors=_ONE,
    ),
    Route(
        "GET",
        "/v1/deliveries",
        log.list_deliveries,
        "Deliveries, newest first",
        "log",
        200,
        Page[DeliveryOut],
        query=DeliveryQuery,
        errors=(404, 422),
    ),
    Route(
        "POST",
        "/v1/deliveries/retry",
        log.post_retry_matching,
        "Retry every failed delivery the filters match (at most 10,000 a call, oldest first); dry_run counts them",
        "log",
        200,
        RetryMatchingOut,
        body=RetryMatchingIn,
        errors=(400, 404, 415, 422, 503),
    ),
    Route(
        "GET",
        "/v1/deliveries/{id}",
        log.get_delivery,
        "One delivery with every attempt",
        "log",
        200,
        DeliveryDetail,
        errors=_ONE,
    ),
    Route(
        "POST",
        "/v1/deliveries/{id}/retry",
        log.retry_delivery,
        "Send again now, whatever its state (a failed one becomes pending)",
        "log",
        202,
        DeliveryOut,
        errors=(404, 409, 503),
    ),
)


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
