"""/v1/endpoints: list, create, show, update, delete, enable/disable, rotate and read the
secret, send a test event, replay past events. Each handler parses, calls one function of
api/endpoint_verbs.py, and replies."""

from __future__ import annotations

from aiohttp import web

from tillhook.api.endpoint_verbs import (
    create,
    current_secret,
    delete,
    replay_as_asked,
    rotate,
    secrets_of,
    send_test,
    set_enabled,
    update,
    validation_context,
)
from tillhook.api.parsing import body_model, find_endpoint, query_model
from tillhook.api.schemas import (
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EndpointQuery,
    EndpointState,
    EndpointWithSecret,
    ReplayIn,
    ReplayOut,
    RotateIn,
    TestIn,
)
from tillhook.api.state import ROLE, SERVICES, Services
from tillhook.endpoint_rules import ExtraSignatureSpec
from tillhook.gates import GateView
from tillhook.models import Endpoint, format_time
from tillhook.redact import MASK, origin, origins_only, scrubber


def endpoint_state(services: Services, endpoint: Endpoint) -> EndpointState:
    return state_of(endpoint, services.gates.view(endpoint.id, services.clock.now()))


def state_of(endpoint: Endpoint, gate: GateView) -> EndpointState:
    """What holds the endpoint back first: disabled > paused (the receiver asked for a wait)
    > backing_off > healthy."""
    return "disabled" if not endpoint.enabled else gate.state


def endpoint_out(services: Services, endpoint: Endpoint, *, reveal: bool = True) -> EndpointOut:
    """`reveal=False` (for a viewer) shows what may hold a credential only in part: of the url
    its origin (a chat webhook's token is in its path), of each static header its name."""
    expiring = [s.expires_at for s in endpoint.secrets if s.expires_at is not None]
    now = services.clock.now()
    live = [t for t in expiring if t > now]
    return EndpointOut(
        id=endpoint.id,
        name=endpoint.name,
        url=endpoint.url if reveal else origin(endpoint.url),
        events=list(endpoint.events),
        enabled=endpoint.enabled,
        state=endpoint_state(services, endpoint),
        disabled_reason=(
            endpoint.disabled_reason
            if reveal or endpoint.disabled_reason is None
            else origins_only(scrubber(endpoint.url, endpoint.headers)(endpoint.disabled_reason), endpoint.url)
        ),
        max_in_flight=endpoint.max_in_flight,
        rate_limit=endpoint.rate_limit,
        ordered=endpoint.ordered,
        headers=dict(endpoint.headers) if reveal else {name: MASK for name, _ in endpoint.headers},
        filter=endpoint.filter,
        transform=endpoint.transform,
        preset=endpoint.preset,
        extra_signature=(
            ExtraSignatureSpec(header=endpoint.extra_signature.header, scheme="sha256-hex")
            if endpoint.extra_signature
            else None
        ),
        description=endpoint.description,
        category=endpoint.category,
        config_managed=endpoint.config_managed,
        previous_secret_expires_at=format_time(max(live)) if live else None,
    )


def _with_secret(services: Services, endpoint: Endpoint) -> EndpointWithSecret:
    return EndpointWithSecret(**endpoint_out(services, endpoint).model_dump(), secret=current_secret(endpoint))


# -- the API's handlers ----------------------------------------------------------------------


async def list_endpoints(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    reveal = request.get(ROLE) != "viewer"
    query = query_model(request, EndpointQuery)
    chosen = [e for e in services.registry.all() if query.category is None or (e.category or "") == query.category]
    items = [endpoint_out(services, e, reveal=reveal).model_dump(mode="json") for e in chosen]
    return web.json_response({"data": items, "next_cursor": None})


async def create_endpoint(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    spec = await body_model(request, EndpointIn, context=validation_context(services))
    created = await create(services, spec)
    return web.json_response(
        _with_secret(services, created).model_dump(mode="json"),
        status=201,
        headers={"Location": f"/v1/endpoints/{created.id}"},
    )


async def get_endpoint(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    endpoint = find_endpoint(services.registry, request.match_info["id"])
    reveal = request.get(ROLE) != "viewer"
    return web.json_response(endpoint_out(services, endpoint, reveal=reveal).model_dump(mode="json"))


async def patch_endpoint(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    endpoint = find_endpoint(services.registry, request.match_info["id"])
    patch = await body_model(request, EndpointPatch, context=validation_context(services))
    updated = await update(services, endpoint, patch.model_dump(exclude_unset=True))
    return web.json_response(endpoint_out(services, updated).model_dump(mode="json"))


async def delete_endpoint(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    endpoint = find_endpoint(services.registry, request.match_info["id"])
    await delete(services, endpoint)
    return web.Response(status=204)


async def enable_endpoint(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


async def disable_endpoint(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    services = request.app[SERVICES]
    endpoint = find_endpoint(services.registry, request.match_info["id"])
    changed = await set_enabled(services, endpoint, enabled)
    return web.json_response(endpoint_out(services, changed).model_dump(mode="json"))


async def rotate_secret(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    endpoint = find_endpoint(services.registry, request.match_info["id"])
    spec = await body_model(request, RotateIn, empty_ok=True)
    rotated = await rotate(services, endpoint, spec)
    return web.json_response(_with_secret(services, rotated).model_dump(mode="json"))


async def get_secret(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    endpoint = find_endpoint(services.registry, request.match_info["id"])
    reply = secrets_of(services, endpoint)
    # A secret has no business in a cache between the daemon and whoever asked.
    return web.json_response(reply.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


async def test_endpoint(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    endpoint = find_endpoint(services.registry, request.match_info["id"])
    spec = await body_model(request, TestIn, empty_ok=True)
    ping = await send_test(services, endpoint, spec.event_type)
    return web.json_response(ping.model_dump(), status=202)


async def replay_endpoint(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    endpoint = find_endpoint(services.registry, request.match_info["id"])
    spec = await body_model(request, ReplayIn)
    created = await replay_as_asked(services, endpoint, spec)
    reply = ReplayOut(endpoint_id=endpoint.id, deliveries=created)
    return web.json_response(reply.model_dump(), status=202)
