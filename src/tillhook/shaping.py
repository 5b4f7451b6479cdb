"""What an endpoint is sent: which events (its filter), the body (its transform or chat
preset, else the event itself) and the headers that sign it. The deliverer and the preview
both build requests here, so a preview is the request an attempt makes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from tillhook import __version__
from tillhook.clock import Clock
from tillhook.expressions.presets import PRESETS
from tillhook.expressions.sandbox import EvaluationError, Sandbox, Stopped
from tillhook.models import Endpoint, NewEvent, format_time
from tillhook.registry import EndpointRegistry
from tillhook.signing import hex_signature, signature_header

USER_AGENT = f"tillhook/{__version__}"

log = structlog.get_logger("tillhook.shaping")


def transform_source(endpoint: Endpoint) -> str | None:
    """An endpoint's own transform wins over its preset."""
    if endpoint.transform is not None:
        return endpoint.transform
    return PRESETS.get(endpoint.preset) if endpoint.preset is not None else None


@dataclass(frozen=True, slots=True)
class Shaped:
    body: bytes
    transformed: bool


async def shape(sandbox: Sandbox, endpoint: Endpoint, event_body: bytes, *, check_filter: bool) -> Shaped | None:
    """The body to send, or None when the filter (when asked to check it) leaves the event
    out. Raises EvaluationError when the filter or the transform fails."""
    if check_filter and endpoint.filter is not None:
        [keep] = await sandbox.filter(endpoint.filter, [event_body])
        if isinstance(keep, EvaluationError):
            raise keep
        if not keep:
            return None
    source = transform_source(endpoint)
    if source is None:
        return Shaped(event_body, transformed=False)
    return Shaped(await sandbox.transform(source, event_body), transformed=True)


def live_secrets(endpoint: Endpoint, now: float) -> list[str]:
    """The secrets that sign at `now`: the current one first, then any still in its grace."""
    return [s.secret for s in endpoint.secrets if s.expires_at is None or s.expires_at > now]


def request_headers(
    endpoint: Endpoint, event_id: str, body: bytes, timestamp_s: int, secrets: Sequence[str]
) -> dict[str, str]:
    """The endpoint's static headers, then tillhook's own, which nothing overrides. `secrets`:
    the ones still valid, current first."""
    headers = dict(endpoint.headers)
    headers.update(
        {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp_s),
            "webhook-signature": signature_header(secrets, event_id, timestamp_s, body),
        }
    )
    if endpoint.extra_signature is not None and secrets:
        # During a rotation the new secret's: a receiver of this scheme knows one secret.
        headers[endpoint.extra_signature.header] = hex_signature(secrets[0], body)
    return headers


QUARANTINE_S = 30.0
FILTER_CHUNK = 100  # events per sandbox round trip

Scope = str | tuple[str, str]  # an endpoint's id, or (its id, an event's id)


def _expressions(endpoint: Endpoint) -> tuple[str | None, ...]:
    return (endpoint.filter, endpoint.transform, endpoint.preset)


class Quarantine:
    """An expression stopped at its time or memory bound is not evaluated again for
    QUARANTINE_S, unless the endpoint's expressions change: each stop holds up whoever
    shares the sandbox for up to the bound. Stopped on one event, it waits for that event
    only (a huge one, say); stopped on two, or with no event named (a batch at fan-out), the
    expression is the trouble, and it waits for every event."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._held: dict[Scope, tuple[tuple[str | None, ...], float, str]] = {}  # (expressions, until, why)

    def held(self, endpoint: Endpoint, event_id: str | None = None) -> str | None:
        """Why it is not to be evaluated now, or None."""
        now = self._clock.now()
        scopes: tuple[Scope, ...] = (endpoint.id,) if event_id is None else (endpoint.id, (endpoint.id, event_id))
        for scope in scopes:
            held = self._held.get(scope)
            if held is None:
                continue
            key, until, why = held
            if key != _expressions(endpoint) or now >= until:
                del self._held[scope]  # changed since, or time to try again
                continue
            return f"not evaluated: at an earlier attempt {why}; it is tried again from {format_time(until)}"
        return None

    def stopped(self, endpoint: Endpoint, event_id: str | None, why: str) -> None:
        now = self._clock.now()
        key, until = _expressions(endpoint), now + QUARANTINE_S
        if len(self._held) > 1000:  # stopped events given up on or deleted are never looked up again
            self._held = {scope: held for scope, held in self._held.items() if held[1] > now}
        if event_id is not None:
            others = [
                scope
                for scope, (k, t, _) in self._held.items()
                if isinstance(scope, tuple)
                and scope[0] == endpoint.id
                and scope[1] != event_id
                and k == key
                and t > now
            ]
            self._held[(endpoint.id, event_id)] = (key, until, why)
            if not others:
                return
        self._held[endpoint.id] = (key, until, why)


class FanOut:
    """Applies the filters of the endpoints each event is for: one sandbox round trip per
    filtering endpoint for the whole batch. A filter that fails keeps the delivery, which
    checks it again before each attempt: nothing is dropped because an expression broke."""

    def __init__(self, registry: EndpointRegistry, sandbox: Sandbox, clock: Clock) -> None:
        self._registry = registry
        self._sandbox = sandbox
        self._clock = clock
        # At fan-out a stopped filter's deliveries are made, to be checked before each
        # attempt: one runaway filter does not hold up every event coming in.
        self._quarantine = Quarantine(clock)

    async def __call__(self, events: list[NewEvent]) -> list[NewEvent]:
        with_filter = self._registry.filtering()
        if not with_filter:
            return events  # the usual case: no endpoint filters, nothing to look at
        asked: defaultdict[str, list[int]] = defaultdict(list)
        # The endpoints as they are now: one may be changed or deleted while a filter runs.
        filtering: dict[str, Endpoint] = {}
        for index, event in enumerate(events):
            for endpoint_id in event.endpoint_ids:
                endpoint = self._registry.get(endpoint_id) if endpoint_id in with_filter else None
                if endpoint is not None and endpoint.filter is not None:
                    asked[endpoint_id].append(index)
                    filtering[endpoint_id] = endpoint
        if not asked:
            return events
        dropped: defaultdict[int, list[str]] = defaultdict(list)
        unsure: defaultdict[int, list[str]] = defaultdict(list)
        for endpoint_id, indexes in asked.items():
            verdicts = await self._verdicts(filtering[endpoint_id], indexes, events)
            for index, verdict in zip(indexes, verdicts, strict=True):
                if verdict is None:
                    unsure[index].append(endpoint_id)
                elif not verdict:
                    dropped[index].append(endpoint_id)
        shaped = []
        for index, event in enumerate(events):
            if index not in dropped and index not in unsure:
                shaped.append(event)
                continue
            out = dropped.get(index, [])
            shaped.append(
                replace(
                    event,
                    endpoint_ids=tuple(e for e in event.endpoint_ids if e not in out),
                    filtered_out=tuple(out),
                    check_filter=tuple(unsure.get(index, [])),
                )
            )
        return shaped

    async def _verdicts(self, endpoint: Endpoint, indexes: list[int], events: list[NewEvent]) -> list[bool | None]:
        """True or false per event, or None where the filter could not say (then the
        delivery checks it again before each attempt)."""
        assert endpoint.filter is not None
        if self._quarantine.held(endpoint) is not None:
            return [None] * len(indexes)
        verdicts: list[bool | EvaluationError] = []
        for start in range(0, len(indexes), FILTER_CHUNK):
            # Each round trip has one time bound: a batch of 1,000 large events would reach it
            # with a filter that takes a fraction of a millisecond an event.
            chunk = indexes[start : start + FILTER_CHUNK]
            got = await self._sandbox.filter(endpoint.filter, [events[i].body for i in chunk])
            verdicts += got
            stop = next((v for v in got if isinstance(v, Stopped)), None)
            if stop is not None:  # the rest would be stopped the same way, each at its cost
                verdicts += [stop] * (len(indexes) - len(verdicts))
                break
        failed = [(i, v) for i, v in zip(indexes, verdicts, strict=True) if isinstance(v, EvaluationError)]
        if failed:
            index, error = failed[0]
            log.warning(
                "filter_failed",
                endpoint=endpoint.name,
                error=str(error),
                event_id=events[index].id,
                failed=len(failed),
                of=len(indexes),
            )
            stop = next((v for _, v in failed if isinstance(v, Stopped)), None)
            if stop is not None:
                self._quarantine.stopped(endpoint, None, str(stop))
        return [None if isinstance(v, EvaluationError) else v for v in verdicts]
