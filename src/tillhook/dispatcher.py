"""The delivery loop: wait for a wake, a due retry, a tick or a stop; claim only as many
deliveries as the gates let start; run each attempt as a named task; record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import structlog

from tillhook.clock import Clock
from tillhook.delivery import Deliverer
from tillhook.errors import StoreUnavailable
from tillhook.gates import EndpointGates
from tillhook.models import (
    AttemptRecord,
    AttemptResult,
    ClaimedDelivery,
    DeliveryState,
    Endpoint,
)
from tillhook.outcome_writes import OutcomeWrites, Written
from tillhook.outcomes import emit, judge
from tillhook.registry import EndpointRegistry
from tillhook.retry import RetryPolicy
from tillhook.store.port import ClaimRequest, Outbox
from tillhook.transitions import Before, Transitions, tell

log = structlog.get_logger("tillhook.dispatcher")

TICK_S = 1.0
# How long a stop waits for queued outcomes to be written, beyond shutdown_grace.
OUTCOME_WRITE_S = 5.0


class Dispatcher:
    def __init__(
        self,
        store: Outbox,
        deliverer: Deliverer,
        registry: EndpointRegistry,
        policy: RetryPolicy,
        clock: Clock,
        gates: EndpointGates,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.outbox = store
        self.gates = gates
        self.clock = clock
        self._deliverer = deliverer
        self._registry = registry
        self._policy = policy
        self._rand = rand
        self._attempts: set[asyncio.Task[None]] = set()
        self._writes = OutcomeWrites(store, clock)
        # Endpoints that may have due deliveries right now: all of them until a claim says not.
        self._maybe_due: set[str] = {e.id for e in registry.all()}
        self.admitted = 0  # attempts started at their event's commit, without a claim
        self.launched = 0  # attempts started, however they were claimed
        self.on_attempt: Callable[[str, str, float], None] | None = None  # endpoint, outcome, seconds
        self.transitions: Transitions | None = None  # told of back-offs, recoveries, disables, give-ups
        self._next_retry_at: float | None = None
        self._wakeup = asyncio.Event()
        self._stopping = False
        # Off until the start-up requeue is written: it would turn admitted deliveries back
        # to pending, and they would be sent twice.
        self._admitting = False
        self._task: asyncio.Task[None] | None = None
        self.last_tick_monotonic = clock.monotonic()

    # -- control -------------------------------------------------------------------------

    def wake(self, endpoint_ids: Iterable[str] | None = None) -> None:
        """New work may be due: for these endpoints, or for all when None."""
        self._maybe_due.update(endpoint_ids if endpoint_ids is not None else self._registry_ids())
        self._wakeup.set()

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name="tillhook-dispatcher")
        return self._task

    async def run(self) -> None:
        requeued = await self.outbox.requeue_in_flight(self.clock.now())
        if requeued:
            log.warning("deliveries_requeued", count=requeued, reason="left in flight by an earlier stop")
        self._admitting = True
        next_tick = self.clock.monotonic()
        while not self._stopping:
            tick = self.clock.monotonic() >= next_tick
            if self._next_retry_at is not None and self.clock.now() >= self._next_retry_at:
                tick = True  # a retry scheduled by this process is due: look at every endpoint
            if tick:
                next_tick = self.clock.monotonic() + TICK_S
                self._next_retry_at = None
                self.last_tick_monotonic = self.clock.monotonic()
            self._wakeup.clear()
            try:
                await self.run_once(all_endpoints=tick)
            except StoreUnavailable as exc:
                # A full disk or a locked file: keep the loop alive and try again next tick.
                self._writes.refused(exc)
            await self._wait(next_tick)

    async def _wait(self, next_tick: float) -> None:
        timeout = next_tick - self.clock.monotonic()
        if self._next_retry_at is not None:
            timeout = min(timeout, self._next_retry_at - self.clock.now())
        if timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def stop(self, grace_s: float) -> None:
        """Stop claiming, give attempts in flight `grace_s` to finish, then cancel the rest;
        cancelled ones go back to pending."""
        self._stopping = True
        self._admitting = False
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._attempts:
            _, unfinished = await asyncio.wait(set(self._attempts), timeout=grace_s)
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.wait(unfinished)
                log.warning("attempts_cancelled", count=len(unfinished), reason="shutdown_grace ran out")
        try:
            await asyncio.wait_for(self._writes.idle(), grace_s + OUTCOME_WRITE_S)
        except TimeoutError:
            log.error("outcomes_unwritten", count=self._writes.writing, reason="the store did not answer")
        try:
            await self._writes.flush()
            await self.outbox.requeue_in_flight(self.clock.now())
        except StoreUnavailable as exc:
            # Whatever is still `delivering` is requeued at the next start instead.
            log.error("storage_unavailable", error=exc.message, at="shutdown")

    async def wait_idle(self) -> None:
        """Until every attempt started so far has finished and been recorded (for tests)."""
        while self._attempts or self._writes.writing:
            if self._attempts:
                await asyncio.wait(set(self._attempts))
            await self._writes.idle()

    # -- fresh deliveries, started at their commit (admission.py) -------------------------

    def admits(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint, if a delivery to it being stored now may start at its commit without
        a claim (given a slot by the gates): it is enabled, not ordered, and has no known due
        backlog, so that a new event never overtakes older due ones."""
        if not self._admitting or endpoint_id in self._maybe_due:
            return None
        endpoint = self._registry.get(endpoint_id)
        if endpoint is None or not endpoint.enabled or endpoint.ordered:
            return None
        return endpoint

    def start_admitted(self, deliveries: Sequence[ClaimedDelivery]) -> None:
        """Run deliveries stored `delivering`, their slots taken from the gates already."""
        if self._stopping:
            # Committed after the stop began, which waits for no attempt started since: not
            # started, so not sent twice. The stop's requeue, queued behind this write, puts
            # them back to pending for the next start.
            for delivery in deliveries:
                self.gates.release(delivery.endpoint_id, refund_tokens=True)
            return
        self.admitted += len(deliveries)
        for delivery in deliveries:
            self._launch(delivery)

    # -- one step ------------------------------------------------------------------------

    async def run_once(self, now: float | None = None, *, all_endpoints: bool = True) -> int:
        """Claim what is due and free to run, and start those attempts; returns how many."""
        now = self.clock.now() if now is None else now
        await self._writes.flush()
        candidates = self._registry.enabled()
        if not all_endpoints:
            candidates = [e for e in candidates if e.id in self._maybe_due]
        quotas = self.gates.quotas(candidates, now)
        self._note_retry(quotas.token_at)  # come back when the next token is there
        if not quotas.given:
            return 0
        ordered = frozenset(e.id for e in candidates if e.ordered and e.id in quotas.given)
        try:
            claimed = await self.outbox.claim_due(ClaimRequest(quotas.given, now, ordered))
        except BaseException:
            for endpoint_id, n in quotas.given.items():
                self.gates.release(endpoint_id, n, refund_tokens=True)
            raise
        self._writes.answered()
        per_endpoint = Counter(delivery.endpoint_id for delivery in claimed)
        for endpoint_id, quota in quotas.given.items():
            self._claimed(endpoint_id, quota, per_endpoint[endpoint_id])
        for delivery in claimed:
            self._launch(delivery)
        return len(claimed)

    def _claimed(self, endpoint_id: str, reserved: int, got: int) -> None:
        self.gates.release(endpoint_id, reserved - got, refund_tokens=True)
        if got < reserved:
            self._maybe_due.discard(endpoint_id)  # drained for now; a wake or tick brings it back
        else:
            self._maybe_due.add(endpoint_id)

    # -- attempts ------------------------------------------------------------------------

    def _launch(self, delivery: ClaimedDelivery, probe: bool | None = None) -> None:
        """Run the attempt of a delivery whose slot is taken. `probe`: whether its slot was
        the back-off's one probe (by default: whether the endpoint backs off now)."""
        endpoint = self._registry.get(delivery.endpoint_id)
        if endpoint is None:  # deleted meanwhile; the row stays `delivering` until the next start
            self.gates.release(delivery.endpoint_id)
            return
        if probe is None:
            probe = self.gates.probing(endpoint.id)
        self.launched += 1
        task = asyncio.create_task(self._attempt(endpoint, delivery, probe), name=f"tillhook-attempt-{delivery.id}")
        self._attempts.add(task)
        task.add_done_callback(self._attempt_done)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._attempts.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("attempt_crashed", error=repr(task.exception()))

    async def _attempt(self, endpoint: Endpoint, delivery: ClaimedDelivery, probe: bool) -> None:
        try:
            result = await self._deliverer.attempt(endpoint, delivery)
        finally:
            # The slot frees as soon as the receiver has answered; the delivery itself stays
            # `delivering` in the store until its outcome is written, so nobody claims it twice.
            self.gates.release(endpoint.id)
        record = self._decide(endpoint, delivery, result, probe)
        reserved = self._reserve_next(endpoint.id)
        if not reserved and endpoint.id in self._maybe_due:
            self._wakeup.set()
        self._record(record, endpoint.id, reserved)

    def _decide(
        self, endpoint: Endpoint, delivery: ClaimedDelivery, result: AttemptResult, probe: bool
    ) -> AttemptRecord:
        now = self.clock.now()
        standing = self.gates.standing(endpoint.id)
        before = Before.of(standing, self._registry.get(endpoint.id))
        judged = judge(endpoint, delivery, result, probe, self._policy, standing, now, self._rand)
        emit(judged.lines)
        self.gates.apply(endpoint.id, judged.change, now)
        record = judged.record
        if record.disable_endpoint is not None:
            self._registry.disable(endpoint.id, record.disable_endpoint)
        elif record.state is DeliveryState.PENDING:
            self._note_retry(record.next_attempt_at)
        if self.on_attempt is not None:
            self.on_attempt(endpoint.name, record.outcome, result.duration_ms / 1000)
        if self.transitions is not None:
            tell(self.transitions, endpoint, delivery, judged, before)
        return record

    # -- outcomes ------------------------------------------------------------------------

    def _reserve_next(self, endpoint_id: str) -> int:
        """Keep the endpoint's free slots (the one just freed among them) for its next due
        deliveries, claimed in the same transaction that writes this outcome: a busy endpoint
        then never waits for a transaction of its own between two deliveries. While others
        have work waiting, it keeps no more than its fair part of the global limit."""
        endpoint = self._registry.get(endpoint_id)
        if self._stopping or endpoint is None or not endpoint.enabled or endpoint_id not in self._maybe_due:
            return 0
        others = len(self._maybe_due) - 1
        return self.gates.acquire(endpoint, self.gates.max_in_flight, self.clock.now(), sharing_with=others)

    def _record(self, record: AttemptRecord, endpoint_id: str, reserved: int = 0) -> None:
        """Queue the outcome (and the claim of the next deliveries for `reserved` slots) and
        return: what was claimed starts as soon as the write is over, without a task having to
        wake up for it first. Once queued, an outcome is written even during a stop."""
        now = self.clock.now()
        claim = None
        if reserved:
            endpoint = self._registry.get(endpoint_id)
            ordered = frozenset([endpoint_id]) if endpoint is not None and endpoint.ordered else frozenset()
            claim = ClaimRequest({endpoint_id: reserved}, now, ordered)
        # Slots kept now, before a back-off that a failure finishing meanwhile may start, are
        # not its probe: like attempts under way then, their failures do not stretch its wait.
        probing = self.gates.probing(endpoint_id)
        self._writes.write(record, claim, functools.partial(self._recorded, endpoint_id, reserved, probing))

    def _recorded(self, endpoint_id: str, reserved: int, probing: bool, written: Written) -> None:
        if written.exception() is not None:  # kept by the writes, to be written again
            self.gates.release(endpoint_id, reserved, refund_tokens=True)
            return
        if not reserved:
            return
        if self._stopping:
            # Not started; the final requeue of stop() puts them back to pending.
            self.gates.release(endpoint_id, reserved, refund_tokens=True)
            return
        claimed = written.result()
        self._claimed(endpoint_id, reserved, len(claimed))
        for delivery in claimed:
            self._launch(delivery, probing)

    def _note_retry(self, at: float | None) -> None:
        if at is not None and (self._next_retry_at is None or at < self._next_retry_at):
            self._next_retry_at = at

    def _registry_ids(self) -> list[str]:
        return [e.id for e in self._registry.all()]
