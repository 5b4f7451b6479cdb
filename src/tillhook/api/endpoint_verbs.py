"""What can be done to an endpoint, with the rules that govern it: the one function each
admin API handler (api/endpoints.py) and each dashboard page (dashboard/endpoint_pages.py)
calls after parsing, so both refuse the same things in the same words. The CLI reaches
these through the API."""

from __future__ import annotations

from typing import Any

from tillhook import admission, rules
from tillhook.api.parsing import invalid, parse_when
from tillhook.api.schemas import (
    EndpointIn,
    EndpointSecretOut,
    PingOut,
    PreviousSecret,
    ReplayIn,
    RotateIn,
)
from tillhook.api.state import Services
from tillhook.config import parse_duration
from tillhook.endpoint_rules import ExtraSignatureSpec, url_policy
from tillhook.envelope import to_test_event
from tillhook.errors import Conflict, InvalidInput
from tillhook.models import Endpoint, SigningSecret, format_time
from tillhook.store.port import LogFilter


def validation_context(services: Services) -> dict[str, object]:
    """What EndpointIn and EndpointPatch check a URL against."""
    delivery = services.config.delivery
    return url_policy(delivery.allow_http, delivery.allow_networks)


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


async def create(services: Services, spec: EndpointIn) -> Endpoint:
    secret = spec.secret.get_secret_value() if spec.secret else rules.new_secret()
    endpoint = spec.record((SigningSecret(secret),), enabled=spec.enabled)
    created = await services.store.create_endpoint(endpoint, services.clock.now())
    _settled(services, created)
    return created


async def update(services: Services, endpoint: Endpoint, changes: dict[str, Any]) -> Endpoint:
    """`changes`: the fields an EndpointPatch set."""
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


async def rotate(services: Services, endpoint: Endpoint, spec: RotateIn) -> Endpoint:
    grace_s = grace_seconds(spec.grace)
    if secret_pinned(services, endpoint):
        raise Conflict(
            f"the secret of endpoint {endpoint.name!r} is set in the config file: change it there",
            slug="config-managed",
        )
    now = services.clock.now()
    new_secret = spec.secret.get_secret_value() if spec.secret else rules.new_secret()
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


# Longer, and a leaked old secret would go on signing for too long.
MAX_GRACE_S = 30 * 86400


def grace_seconds(value: str) -> float:
    """How long a rotated-out secret keeps signing: a duration up to 30d, or "0s" to end it now."""
    if value.strip() in ("0", "0s"):
        return 0.0
    try:
        grace_s = parse_duration(value)
    except ValueError as exc:
        raise invalid([{"field": "grace", "message": str(exc)}], "the body") from None
    if grace_s > MAX_GRACE_S:
        raise invalid([{"field": "grace", "message": "may be at most 30d"}], "the body")
    return grace_s


PING_TYPE = "tillhook.ping"


def test_data(services: Services, endpoint: Endpoint, event_type: str | None) -> dict[str, Any]:
    """The data a test of `event_type` sends: its catalogue example; without a type, the ping's."""
    if event_type is None:
        return {"endpoint": endpoint.name, "message": "a test event from tillhook"}
    spec = services.catalogue.get(event_type)
    if spec is None:
        message = (
            f"{event_type} is not in the event-type catalogue: add an [[event_types]] table naming it, with an"
            " example, to the config file and restart tillhook"
        )
    elif spec.example is None:
        message = (
            f"{event_type} has no example in the catalogue: give its [[event_types]] table an example in the"
            " config file and restart tillhook"
        )
    else:
        return spec.example
    raise InvalidInput(message, errors=[{"field": "event_type", "message": message}])


def testable_types(services: Services) -> list[str]:
    """The catalogue's types a test can send: those with an example, by name."""
    return sorted(name for name, spec in services.catalogue.specs.items() if spec.example is not None)


async def send_test(services: Services, endpoint: Endpoint, event_type: str | None = None) -> PingOut:
    """A test event to this endpoint only, stored and delivered like any event: the ping, or
    `event_type`'s catalogue example."""
    data = test_data(services, endpoint, event_type)
    if not endpoint.enabled:
        raise Conflict(f"endpoint {endpoint.name!r} is disabled; enable it first", slug="endpoint-disabled")
    event = to_test_event(event_type or PING_TYPE, data, services.clock.now(), endpoint.id)
    await admission.enqueue(services.dispatcher, [event])
    (delivery,) = await services.store.list_deliveries(LogFilter(event_id=event.id, limit=1))
    return PingOut(event_id=event.id, delivery_id=delivery.id, event_type=event.type)


def replay_window(services: Services, spec: ReplayIn) -> tuple[float, float]:
    """[since, until) in unix seconds; without an until, up to and including now."""
    now = services.clock.now()
    since = parse_when(spec.since, now, "since")
    until = parse_when(spec.until, now, "until") if spec.until is not None else now
    if until <= since:
        raise invalid([{"field": "until", "message": "must be later than since"}], "the body")
    # Events received at `now` count too.
    return since, until if spec.until else now + 0.001


async def replay_as_asked(services: Services, endpoint: Endpoint, spec: ReplayIn) -> int:
    """`replay` over the window `spec` names."""
    since, until = replay_window(services, spec)
    return await replay(services, endpoint, since, until, spec.only_failed)


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
