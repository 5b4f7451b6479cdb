"""tillhook's own events: an endpoint failing, answering again or disabled, deliveries giving
up, a backlog growing old. Each is built like an ingested event (a `msg_` id, body bytes fixed
once) and stored through the same enqueue, so it is signed, retried and held like any other.
It goes only to the endpoints whose patterns name `tillhook` (rules.py), never to the one it
is about.

The hooks never wait: they build the event and hand its storing to a named task kept here. A
store that refuses an alert is logged; nothing is raised into whoever called the hook."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from tillhook import admission
from tillhook.alert_rules import BacklogWatch, BackoffAlarm, HourlyCount, span
from tillhook.clock import Clock
from tillhook.dispatcher import Dispatcher
from tillhook.envelope import to_new_events
from tillhook.errors import StoreUnavailable
from tillhook.gates import EndpointGates
from tillhook.metrics import Metrics
from tillhook.models import AttemptRecord, ClaimedDelivery, Endpoint, EventIn, NewEvent
from tillhook.redact import origin, origins_only, scrubber
from tillhook.registry import EndpointRegistry
from tillhook.shaping import FanOut
from tillhook.store.port import Outbox
from tillhook.transitions import DisabledBy

log = structlog.get_logger("tillhook.alerts")

FAILING = "tillhook.endpoint.failing"
RECOVERED = "tillhook.endpoint.recovered"
DISABLED = "tillhook.endpoint.disabled"
DELIVERY_FAILED = "tillhook.delivery.failed"
BACKLOG_HIGH = "tillhook.backlog.high"

CHECK_EVERY_S = 30.0  # the backlog, the give-up counts whose hour is over, back-offs unsaid


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The last give-up an alert names."""

    event_id: str
    delivery_id: int
    error: str


def endpoint_data(endpoint: Endpoint) -> dict[str, str]:
    return {"id": endpoint.id, "name": endpoint.name, "url": origin(endpoint.url)}


class Alerts:
    """The dispatcher's `transitions` (see transitions.py); the admin verbs call `disabled`
    too, and the side task `run` checks the backlog, the give-up counts and the back-offs
    not said yet, reading each endpoint's health from `gates`."""

    def __init__(
        self,
        store: Outbox,
        registry: EndpointRegistry,
        dispatcher: Dispatcher,
        gates: EndpointGates,
        clock: Clock,
        metrics: Metrics,
        *,
        backlog_age_s: float,
        fan_out: FanOut | None = None,
    ) -> None:
        self._store = store
        self._fan_out = fan_out
        self._registry = registry
        self._dispatcher = dispatcher
        self._gates = gates
        self._clock = clock
        self._metrics = metrics
        self._backoffs = BackoffAlarm()
        self._give_ups: HourlyCount[GaveUp] = HourlyCount()
        self._backlog = BacklogWatch(backlog_age_s)
        self._tasks: set[asyncio.Task[None]] = set()
        # Whether this daemon checks the backlog: of the daemons sharing an outbox, one does,
        # so that a backlog growing old is told once.
        self.checks_backlog: Callable[[], bool] = lambda: True

    # -- the hooks -----------------------------------------------------------------------

    def failing(self, endpoint: Endpoint, failures: int, last_failure: str | None) -> None:
        if self._backoffs.started(endpoint.id, self._clock.now()):
            self._failing(endpoint, failures, last_failure)

    def _failing(self, endpoint: Endpoint, n: int, last_failure: str | None) -> None:
        error = self._scrubbed(endpoint, last_failure)
        self._emit(
            FAILING,
            endpoint,
            {
                "summary": f"Endpoint {endpoint.name} is failing: {n} attempts in a row failed, so it is tried once"
                " at a time until it answers.",
                "check": _is_it_up(endpoint, error),
                "consecutive_failures": n,
                "last_error": error,
            },
        )

    def recovered(self, endpoint: Endpoint, failures: int) -> None:
        if not self._backoffs.ended(endpoint.id):
            return
        self._emit(
            RECOVERED,
            endpoint,
            {
                "summary": f"Endpoint {endpoint.name} is answering again after {failures} failed attempts in a row;"
                " the deliveries that waited for it go out now.",
                "check": "Nothing to fix: `tillhook status` shows its backlog going down.",
                "consecutive_failures": failures,
            },
        )

    def disabled(self, endpoint: Endpoint, reason: str, by: DisabledBy) -> None:
        if by == "receiver":
            check = (
                f"The receiver at {origin(endpoint.url)} asked not to be sent anything more. If it should"
                f" get events, fix it, then enable the endpoint: tillhook endpoints enable {endpoint.name}"
            )
        else:
            check = f"If that was not meant, enable it again: tillhook endpoints enable {endpoint.name}"
        self._emit(
            DISABLED,
            endpoint,
            {
                "summary": f"Endpoint {endpoint.name} is disabled ({reason}): its deliveries are held, none dropped,"
                " until it is enabled again.",
                "check": check,
                "reason": reason,
                "disabled_by": by,
            },
        )

    def gave_up(self, endpoint: Endpoint, delivery: ClaimedDelivery, record: AttemptRecord) -> None:
        error = self._scrubbed(endpoint, record.result.error or f"HTTP {record.result.status}")
        detail = GaveUp(delivery.event_id, delivery.id, error)
        count = self._give_ups.occurred(endpoint.id, self._clock.now(), detail)
        if count is not None:
            self._delivery_failed(endpoint, count, detail)

    # -- checked every CHECK_EVERY_S -----------------------------------------------------

    async def run(self) -> None:
        """The side task."""
        while True:
            await self._clock.sleep(CHECK_EVERY_S)
            await self.check()

    async def check(self) -> None:
        now = self._clock.now()
        for endpoint_id in self._backoffs.due(now, self._backing_off):
            endpoint, gate = self._registry.get(endpoint_id), self._gates.view(endpoint_id, now)
            if endpoint is not None:
                self._failing(endpoint, gate.consecutive_failures, gate.last_failure)
        for endpoint_id, count, last in self._give_ups.due(now):
            endpoint = self._registry.get(endpoint_id)
            if endpoint is not None:  # a deleted endpoint's failures interest nobody
                self._delivery_failed(endpoint, count, last)
        try:
            await self._check_backlog(now)
        except StoreUnavailable as exc:
            log.error("storage_unavailable", error=exc.message, at="alerts")

    async def _check_backlog(self, now: float) -> None:
        if not self.checks_backlog():
            return  # another daemon sharing the outbox checks it for all
        # A disabled endpoint's deliveries (or those of one out of the config file) are held
        # until a person enables it: waiting is what they are meant to do.
        watched = [e.id for e in self._registry.all() if e.enabled and not e.removed_from_config]
        oldest = await self._store.oldest_pending(watched)
        if oldest is None:
            self._backlog.over(None, now)  # nothing waits: armed again
            return
        age_s = now - oldest[1]
        if not self._backlog.over(age_s, now):
            return
        pending = await self._store.pending_by_endpoint()
        backlog = sum(pending[e].pending for e in watched if e in pending)
        holder = self._registry.get(oldest[0])
        where = f"Endpoint {holder.name} holds the oldest: is {origin(holder.url)} up? " if holder else ""
        waiting = "1 delivery is pending" if backlog == 1 else f"{backlog} deliveries are pending"
        data: dict[str, Any] = {
            "summary": f"Deliveries wait too long: the oldest pending one has waited {span(age_s)}, more than"
            f" alerts.backlog_age ({span(self._backlog.limit_s)}); {waiting}.",
            "check": where + "`tillhook status` shows each endpoint's backlog and why it waits.",
            "backlog": backlog,
            "oldest_pending_age_s": round(age_s, 3),
            "backlog_age_s": self._backlog.limit_s,
        }
        if holder is not None:
            data["oldest_pending_endpoint"] = endpoint_data(holder)
        self._emit(BACKLOG_HIGH, None, data, exclude=oldest[0])

    def _delivery_failed(self, endpoint: Endpoint, count: int, last: GaveUp) -> None:
        if count == 1:
            summary = (
                f"A delivery to endpoint {endpoint.name} gave up: it kept failing until"
                " delivery.give_up_after and is now failed (kept, and can be retried)."
            )
        else:
            summary = (
                f"{count} more deliveries to endpoint {endpoint.name} gave up in the last hour: they kept"
                " failing until delivery.give_up_after and are now failed (kept, and can be retried)."
            )
        self._emit(
            DELIVERY_FAILED,
            endpoint,
            {
                "summary": summary,
                "check": _is_it_up(endpoint, last.error) + "; once it answers, retry them: tillhook deliveries list"
                f" --endpoint {endpoint.name} --state failed, then tillhook deliveries retry ID",
                "count": count,
                "last_error": last.error,
                "event_id": last.event_id,
                "delivery_id": last.delivery_id,
            },
        )

    # -- storing -------------------------------------------------------------------------

    def _emit(self, event_type: str, about: Endpoint | None, data: dict[str, Any], exclude: str | None = None) -> None:
        if about is not None:
            data = {"endpoint": endpoint_data(about), **data}
            exclude = about.id
        (event,) = to_new_events(
            [EventIn(type=event_type, data=data)],
            self._clock.now(),
            lambda t: self._registry.alert_subscribers(t, exclude),
        )
        task = asyncio.create_task(self._stored(event, about), name=f"tillhook-alert-{event.id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _stored(self, event: NewEvent, about: Endpoint | None) -> None:
        name = about.name if about is not None else None
        try:
            # Through the endpoints' filters like any event: a chat endpoint may want only some.
            if self._fan_out is not None:
                (event,) = await self._fan_out([event])
            await admission.enqueue(self._dispatcher, [event])
        except StoreUnavailable as exc:
            log.error("alert_not_stored", type=event.type, endpoint=name, error=exc.message)
            return
        self._metrics.alerts_emitted.labels(event.type).inc()
        log.info("alert_emitted", type=event.type, endpoint=name, event_id=event.id, deliveries=len(event.endpoint_ids))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("alert_crashed", task=task.get_name(), error=repr(task.exception()))

    @property
    def storing(self) -> int:
        """Alerts emitted and not yet stored (or refused)."""
        return len(self._tasks)

    async def wait_idle(self) -> None:
        """Until every alert emitted so far is stored (or was refused)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, timeout_s: float) -> None:
        """At a stop, before the store closes: what is being stored gets `timeout_s`."""
        if not self._tasks:
            return
        _, unfinished = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished)
            log.error("alerts_not_stored", count=len(unfinished), reason="the store did not answer before the stop")

    def _backing_off(self, endpoint_id: str) -> bool:
        backing_off = self._gates.view(endpoint_id, self._clock.now()).backing_off
        return backing_off and self._registry.get(endpoint_id) is not None

    @staticmethod
    def _scrubbed(endpoint: Endpoint, text: str | None) -> str:
        # Error texts are scrubbed where they are made; an alert goes to another receiver,
        # often a chat, and a viewer reads it as an event, so once more costs nothing.
        scrubbed = scrubber(endpoint.url, endpoint.headers)(text or "unknown")
        # Nor the path, where chat webhooks keep their token, however the text quotes it
        # (normalised by aiohttp, or the path alone): only where it goes.
        return origins_only(scrubbed, endpoint.url)


def _is_it_up(endpoint: Endpoint, error: str) -> str:
    return f"Is {origin(endpoint.url)} up? Last error: {error}"
