"""/v1/endpoints: list, create, show, update, delete, enable/disable, rotate and read the
secret, send a test event, replay past events."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tillhook import admission, rules
from tillhook.api.parsing import body_model, find_endpoint, invalid, parse_when
from tillhook.api.schemas import (
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EndpointSecretOut,
    EndpointState,
    EndpointWithSecret,
    ExtraSignatureSpec,
    PingOut,
    PreviousSecret,
    ReplayIn,
    ReplayOut,
    RotateIn,
)
from tillhook.api.state import ROLE, SERVICES, Services
from tillhook.config import parse_duration
from tillhook.envelope import to_new_events
from tillhook.errors import Conflict
from tillhook.gates import GateView
from tillhook.models import (
    Endpoint,
    EventIn,
    ExtraSignature,
    SigningSecret,
    format_time,
)
from tillhook.redact import MASK, redact_url
from tillhook.store.port import LogFilter


def endpoint_state(services: Services, endpoint: Endpoint) -> EndpointState:
    return state_of(endpoint, services.gates.view(endpoint.id, services.clock.now()))


def state_of(endpoint: Endpoint, gate: GateView) -> EndpointState:
    """What holds the endpoint back first: disabled > paused (the receiver asked for a wait)
    > backing_off > healthy."""
    return "disabled" if not endpoint.enabled else gate.state


def endpoint_out(services: Services, endpoint: Endpoint, *, reveal: bool = True) -> EndpointOut:
    """`reveal=False` (for the viewer token) masks what may be a credential: the url's user
    info and query values, and every static header's value (its name stays)."""
    expiring = [s.expires_at for s in endpoint.secrets if s.expires_at is not None]
    now = services.clock.now()
    live = [t for t in expiring if t > now]
    return EndpointOut(
        id=endpoint.id,
        name=endpoint.name,
        url=endpoint.url if reveal else redact_url(endpoint.url),
        events=list(endpoint.events),
        enabled=endpoint.enabled,
        state=endpoint_state(services, endpoint),
        disabled_reason=endpoint.disabled_reason,
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
        config_managed=endpoint.config_managed,
        previous_secret_expires_at=format_time(max(live)) if live else None,
    )


def _with_secret(services: Services, endpoint: Endpoint) -> EndpointWithSecret:
    return EndpointWithSecret(**endpoint_out(services, endpoint).model_dump(), secret=current_secret(endpoint))


def validation_context(services: Services) -> dict[str, object]:
    """What EndpointIn and EndpointPatch check a URL against."""
    delivery = services.config.delivery
    return {"allow_http": delivery.allow_http, "allow_networks": delivery.allow_networks}


def _check_patched(endpoint: Endpoint, changes: dict[str, Any]) -> None:
    """The endpoint as the patch leaves it: a new url with the old headers, or the reverse."""
    url = changes.get("url", endpoint.url)
    headers = changes.get("headers", dict(endpoint.headers))
    if "url" in changes or "headers" in changes:
        try:
            rules.check_url_with_headers(url, headers)
        except ValueError as exc:
            field = "headers" if "headers" in changes else "url"
            raise invalid([{"field": field, "message": str(exc)}], "the body") from None
    old = endpoint.extra_signature
    signature = changes.get("extra_signature", {"header": old.header, "scheme": old.scheme} if old else None)
    if signature is not None and ("extra_signature" in changes or "headers" in changes):
        _check_signature(signature["header"], signature["scheme"], headers)


def _check_signature(header: str, scheme: str, headers: dict[str, str]) -> None:
    try:
        rules.check_extra_signature(header, scheme, headers)
    except ValueError as exc:
        raise invalid([{"field": "extra_signature.header", "message": str(exc)}], "the body") from None


def _settled(services: Services, endpoint: Endpoint) -> None:
    """The running daemon sees the change at once."""
    services.registry.put(endpoint)
    services.dispatcher.wake([endpoint.id])


# -- the verbs: the API's handlers below and the dashboard's pages both call these -----------


async def create(services: Services, spec: EndpointIn) -> Endpoint:
    endpoint = Endpoint(
        id="",
        name=spec.name,
        url=spec.url,
        events=tuple(spec.events),
        secrets=(SigningSecret(spec.secret or rules.new_secret()),),
        max_in_flight=spec.max_in_flight,
        rate_limit=spec.rate_limit,
        ordered=spec.ordered,
        headers=tuple(spec.headers.items()),
        enabled=spec.enabled,
        filter=spec.filter,
        transform=spec.transform,
        preset=spec.preset,
        extra_signature=ExtraSignature(spec.extra_signature.header) if spec.extra_signature else None,
    )
    if spec.extra_signature is not None:
        _check_signature(spec.extra_signature.header, spec.extra_signature.scheme, spec.headers)
    created = await services.store.create_endpoint(endpoint, services.clock.now())
    _settled(services, created)
    return created


async def update(services: Services, endpoint: Endpoint, changes: dict[str, Any]) -> Endpoint:
    """`changes`: the fields an EndpointPatch set."""
    for required in ("name", "url", "events", "headers", "ordered"):
        if required in changes and changes[required] is None:
            raise invalid([{"field": required, "message": "may not be null"}], "the body")
    if changes.get("extra_signature") is not None:
        # A patch's dump leaves out what it did not set, the scheme's default too: store it whole.
        changes = {**changes, "extra_signature": ExtraSignatureSpec(**changes["extra_signature"]).model_dump()}
    _check_patched(endpoint, changes)
    updated = await services.store.update_endpoint(endpoint.id, changes, services.clock.now())
    _settled(services, updated)
    return updated


async def delete(services: Services, endpoint: Endpoint) -> int:
    """Returns how many unfinished deliveries it cancelled."""
    cancelled = await services.store.delete_endpoint(endpoint.id, services.clock.now())
    services.registry.remove(endpoint.id)
    return cancelled


async def set_enabled(services: Services, endpoint: Endpoint, enabled: bool) -> Endpoint:
    changed = await services.store.set_endpoint_enabled(
        endpoint.id, enabled, "disabled through the admin API", services.clock.now()
    )
    if enabled:
        # A fresh start: whatever made it fail before is presumably fixed.
        services.gates.forget(endpoint.id)
    # As the running daemon saw it until now: a 410 may have disabled it meanwhile, and said so.
    before = services.registry.get(endpoint.id)
    _settled(services, changed)
    if before is not None and before.enabled and not changed.enabled:
        services.alerts.disabled(changed, changed.disabled_reason or "disabled through the admin API", "admin")
    return changed


def secret_pinned(services: Services, endpoint: Endpoint) -> bool:
    """Its secret is written in the config file, so only the file changes it."""
    pinned = next((e for e in services.config.endpoints if e.name == endpoint.name and e.secret), None)
    return endpoint.config_managed and pinned is not None


async def rotate(services: Services, endpoint: Endpoint, grace_s: float, secret: str | None = None) -> Endpoint:
    if secret_pinned(services, endpoint):
        raise Conflict(
            f"the secret of endpoint {endpoint.name!r} is set in the config file: change it there",
            slug="config-managed",
        )
    now = services.clock.now()
    new_secret = secret or rules.new_secret()
    rotated = await services.store.rotate_secret(endpoint.id, new_secret, now + grace_s, now)
    _settled(services, rotated)
    return rotated


def current_secret(endpoint: Endpoint) -> str:
    return next(s.secret for s in endpoint.secrets if s.expires_at is None)


def secrets_of(services: Services, endpoint: Endpoint) -> EndpointSecretOut:
    now = services.clock.now()
    graced = sorted(
        (s for s in endpoint.secrets if s.expires_at is not None and s.expires_at > now),
        key=lambda s: s.expires_at or 0.0,
        reverse=True,
    )
    return EndpointSecretOut(
        endpoint_id=endpoint.id,
        name=endpoint.name,
        secret=current_secret(endpoint),
        previous=[PreviousSecret(secret=s.secret, expires_at=format_time(s.expires_at or 0.0)) for s in graced],
    )


def grace_seconds(value: str) -> float:
    if value.strip() in ("0", "0s"):
        return 0.0
    try:
        grace_s = parse_duration(value)
    except ValueError as exc:
        raise invalid([{"field": "grace", "message": str(exc)}], "the body") from None
    if grace_s > 30 * 86400:
        raise invalid([{"field": "grace", "message": "may be at most 30d"}], "the body")
    return grace_s


async def send_test(services: Services, endpoint: Endpoint) -> PingOut:
    if not endpoint.enabled:
        raise Conflict(f"endpoint {endpoint.name!r} is disabled; enable it first", slug="endpoint-disabled")
    now = services.clock.now()
    ping = EventIn(type="tillhook.ping", data={"endpoint": endpoint.name, "message": "a test event from tillhook"})
    (event,) = to_new_events([ping], now, lambda _type: (endpoint.id,))
    await admission.enqueue(services.dispatcher, [event])
    (delivery,) = await services.store.list_deliveries(LogFilter(event_id=event.id, limit=1))
    return PingOut(event_id=event.id, delivery_id=delivery.id)


def replay_window(services: Services, spec: ReplayIn) -> tuple[float, float]:
    """[since, until) in unix seconds; without an until, up to and including now."""
    now = services.clock.now()
    since = parse_when(spec.since, now, "since")
    until = parse_when(spec.until, now, "until") if spec.until is not None else now
    if until <= since:
        raise invalid([{"field": "until", "message": "must be later than since"}], "the body")
    # Events received at `now` count too.
    return since, until if spec.until else now + 0.001


async def replay(services: Services, endpoint: Endpoint, since: float, until: float, only_failed: bool) -> int:
    """Returns how many deliveries it made."""
    created = await services.store.replay(endpoint, since, until, only_failed, services.clock.now())
    services.dispatcher.wake([endpoint.id])
    return created


async def replay_count(services: Services, endpoint: Endpoint, since: float, until: float, only_failed: bool) -> int:
    """How many deliveries `replay` with the same arguments would make now."""
    return await services.store.replay_count(endpoint, since, until, only_failed)


async def unfinished_count(services: Services, endpoint: Endpoint) -> int:
    """What `delete` would cancel now."""
    return await services.store.unfinished_count(endpoint.id)


# -- the API's handlers ----------------------------------------------------------------------


async def list_endpoints(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    reveal = request.get(ROLE) != "viewer"
    items = [endpoint_out(services, e, reveal=reveal).model_dump(mode="json") for e in services.registry.all()]
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
    rotated = await rotate(services, endpoint, grace_seconds(spec.grace), spec.secret)
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
    ping = await send_test(services, endpoint)
    return web.json_response(ping.model_dump(), status=202)


async def replay_endpoint(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    endpoint = find_endpoint(services.registry, request.match_info["id"])
    spec = await body_model(request, ReplayIn)
    since, until = replay_window(services, spec)
    created = await replay(services, endpoint, since, until, spec.only_failed)
    reply = ReplayOut(endpoint_id=endpoint.id, deliveries=created)
    return web.json_response(reply.model_dump(), status=202)
