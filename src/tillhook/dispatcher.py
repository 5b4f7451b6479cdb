"""The delivery loop: wait for a wake, a due retry, a tick or a stop; claim only as many
deliveries as there are free slots; run each attempt as a named task; record the outcome."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable, Iterable

import structlog

from tillhook.clock import Clock
from tillhook.delivery import Deliverer
from tillhook.errors import StoreUnavailable
from tillhook.health import EndpointHealth
from tillhook.models import (
    AttemptRecord,
    AttemptResult,
    ClaimedDelivery,
    DeliveryState,
    Endpoint,
)
from tillhook.outcomes import judge
from tillhook.ratelimit import TokenBucket
from tillhook.registry import EndpointRegistry
from tillhook.retry import RetryPolicy
from tillhook.slots import share
from tillhook.store import SqliteStore
from tillhook.transitions import Before, Transitions, tell

log = structlog.get_logger("tillhook.dispatcher")

TICK_S = 1.0
# How long a stop waits for queued outcomes to be written, beyond shutdown_grace.
OUTCOME_WRITE_S = 5.0


class Dispatcher:
    def __init__(
        self,
        store: SqliteStore,
        deliverer: Deliverer,
        registry: EndpointRegistry,
        policy: RetryPolicy,
        clock: Clock,
        *,
        max_in_flight: int,
        endpoint_max_in_flight: int,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._deliverer = deliverer
        self._registry = registry
        self._policy = policy
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._endpoint_max = endpoint_max_in_flight
        self._rand = rand
        self.health: defaultdict[str, EndpointHealth] = defaultdict(EndpointHealth)
        self._in_flight: defaultdict[str, int] = defaultdict(int)
        self._attempts: set[asyncio.Task[None]] = set()
        self._writing = 0  # outcomes queued for the store and not yet written
        self._written = asyncio.Event()  # set whenever none is
        self._written.set()
        self._buckets: dict[str, TokenBucket] = {}
        self._unrecorded: list[AttemptRecord] = []  # outcomes the store could not take yet
        self._unavailable: str | None = None  # why the store refused writes, as last logged
        # Endpoints that may have due deliveries right now: all of them until a claim says not.
        self._maybe_due: set[str] = {e.id for e in registry.all()}
        self.admitted = 0
        self.launched = 0  # attempts started, however they were claimed
        self._turn = 0  # who goes first when slots are shared out
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
        requeued = await self._store.requeue_in_flight(self._clock.now())
        if requeued:
            log.warning("deliveries_requeued", count=requeued, reason="left in flight by an earlier stop")
        self._admitting = True
        next_tick = self._clock.monotonic()
        while not self._stopping:
            tick = self._clock.monotonic() >= next_tick
            if self._next_retry_at is not None and self._clock.now() >= self._next_retry_at:
                tick = True  # a retry scheduled by this process is due: look at every endpoint
            if tick:
                next_tick = self._clock.monotonic() + TICK_S
                self._next_retry_at = None
                self.last_tick_monotonic = self._clock.monotonic()
            self._wakeup.clear()
            try:
                await self.run_once(all_endpoints=tick)
            except StoreUnavailable as exc:
                # A full disk or a locked file: keep the loop alive and try again next tick.
                self._store_refused(exc)
            await self._wait(next_tick)

    async def _wait(self, next_tick: float) -> None:
        timeout = next_tick - self._clock.monotonic()
        if self._next_retry_at is not None:
            timeout = min(timeout, self._next_retry_at - self._clock.now())
        if timeout <= 0:
            return
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            pass

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
            await asyncio.wait_for(self._written.wait(), grace_s + OUTCOME_WRITE_S)
        except TimeoutError:
            log.error("outcomes_unwritten", count=self._writing, reason="the store did not answer")
        try:
            if self._unrecorded:
                await self._flush_unrecorded()
            await self._store.requeue_in_flight(self._clock.now())
        except StoreUnavailable as exc:
            # Whatever is still `delivering` is requeued at the next start instead.
            log.error("storage_unavailable", error=exc.message, at="shutdown")

    async def wait_idle(self) -> None:
        """Until every attempt started so far has finished and been recorded (for tests)."""
        while self._attempts or self._writing:
            if self._attempts:
                await asyncio.wait(set(self._attempts))
            await self._written.wait()

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    def in_flight_of(self, endpoint_id: str) -> int:
        return self._in_flight.get(endpoint_id, 0)

    # -- one step ------------------------------------------------------------------------

    async def run_once(self, now: float | None = None, *, all_endpoints: bool = True) -> int:
        """Claim what is due and free to run, and start those attempts; returns how many."""
        now = self._clock.now() if now is None else now
        if self._unrecorded:
            await self._flush_unrecorded()
        candidates = self._registry.enabled()
        if not all_endpoints:
            candidates = [e for e in candidates if e.id in self._maybe_due]
        wanted: dict[str, int] = {}
        for endpoint in candidates:
            free = self._free_slots(endpoint, now)
            if free > 0:
                wanted[endpoint.id] = free
        self._turn += 1
        quotas = share(wanted, self._max_in_flight - self.in_flight, self._in_flight, self._turn)
        if not quotas:
            return 0
        ordered = frozenset(e.id for e in candidates if e.ordered and e.id in quotas)
        claimed = await self._store.claim_due(quotas, now, ordered)
        self._unavailable = None
        per_endpoint: defaultdict[str, int] = defaultdict(int)
        for delivery in claimed:
            per_endpoint[delivery.endpoint_id] += 1
        for endpoint_id, quota in quotas.items():
            if per_endpoint[endpoint_id] < quota:
                self._maybe_due.discard(endpoint_id)  # drained for now; a wake or tick brings it back
            else:
                self._maybe_due.add(endpoint_id)
        for delivery in claimed:
            bucket = self._buckets.get(delivery.endpoint_id)
            if bucket is not None:
                bucket.take(1, now)
            self._start(delivery)
        return len(claimed)

    def _free_slots(self, endpoint: Endpoint, now: float) -> int:
        limit = 1 if endpoint.ordered else (endpoint.max_in_flight or self._endpoint_max)
        free = self.health[endpoint.id].slots(limit, now) - self._in_flight[endpoint.id]
        if endpoint.rate_limit is None or free <= 0:
            return free
        bucket = self._buckets.get(endpoint.id)
        if bucket is None or bucket.rate != endpoint.rate_limit:
            bucket = self._buckets[endpoint.id] = TokenBucket.full(endpoint.rate_limit, now)
        tokens = bucket.available(now)
        if tokens == 0:
            self._note_retry(bucket.next_token_at(now))  # come back when the next token is there
        return min(free, tokens)

    # -- admission: fresh deliveries that skip the claim -----------------------------------

    def take(self, endpoint_id: str) -> bool:
        """Reserve a slot for a delivery being stored right now, when its endpoint has one
        free and no known due backlog, so that a new event never overtakes older due ones."""
        endpoint = self._registry.get(endpoint_id)
        if (
            not self._admitting
            or endpoint is None
            or not endpoint.enabled
            or endpoint.ordered
            or endpoint_id in self._maybe_due
            or self.in_flight >= self._max_in_flight
        ):
            return False
        now = self._clock.now()
        if self._free_slots(endpoint, now) <= 0:
            return False
        bucket = self._buckets.get(endpoint_id)
        if bucket is not None:
            bucket.take(1, now)
        self._in_flight[endpoint_id] += 1
        self.admitted += 1
        return True

    def committed(self, started: list[ClaimedDelivery], queued: set[str]) -> None:
        for delivery in started:
            self._launch(delivery)
        if queued:
            self.wake(queued)

    def aborted(self, endpoint_ids: list[str]) -> None:
        for endpoint_id in endpoint_ids:
            self._in_flight[endpoint_id] -= 1

    def _start(self, delivery: ClaimedDelivery) -> None:
        self._in_flight[delivery.endpoint_id] += 1
        self._launch(delivery)

    def _launch(self, delivery: ClaimedDelivery, probe: bool | None = None) -> None:
        """Run the attempt of a delivery whose slot is already counted. `probe`: whether its
        slot was the back-off's one probe (by default: whether the endpoint backs off now)."""
        endpoint = self._registry.get(delivery.endpoint_id)
        if endpoint is None:  # deleted meanwhile; the row stays `delivering` until the next start
            self._in_flight[delivery.endpoint_id] -= 1
            return
        if probe is None:
            probe = self.health[endpoint.id].backing_off
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
            self._in_flight[endpoint.id] -= 1
        record = self._decide(endpoint, delivery, result, probe)
        reserved = self._reserve_next(endpoint.id)
        if not reserved and endpoint.id in self._maybe_due:
            self._wakeup.set()
        self._record(record, endpoint.id, reserved)

    def _reserve_next(self, endpoint_id: str) -> int:
        """Keep the endpoint's free slots (the one just freed among them) for its next due
        deliveries, claimed in the same transaction that writes this outcome: a busy endpoint
        then never waits for a transaction of its own between two deliveries."""
        endpoint = self._registry.get(endpoint_id)
        if self._stopping or endpoint is None or not endpoint.enabled or endpoint_id not in self._maybe_due:
            return 0
        now = self._clock.now()
        n = min(self._free_slots(endpoint, now), self._max_in_flight - self.in_flight)
        others = len(self._maybe_due) - 1
        if others > 0:
            # Others have work waiting: keep no more than a fair part of the global limit, and
            # leave the rest for share() to give out.
            fair = max(1, self._max_in_flight // (others + 1))
            n = min(n, fair - self._in_flight[endpoint_id])
        if n <= 0:
            return 0
        bucket = self._buckets.get(endpoint_id)
        if bucket is not None:
            bucket.take(n, now)
        self._in_flight[endpoint_id] += n
        return n

    def _release(self, endpoint_id: str, n: int) -> None:
        """Give back slots kept by _reserve_next that found nothing to run."""
        self._in_flight[endpoint_id] -= n
        bucket = self._buckets.get(endpoint_id)
        if bucket is not None:
            bucket.tokens += n

    def _record(self, record: AttemptRecord, endpoint_id: str, reserved: int = 0) -> None:
        """Queue the outcome (and the claim of the next deliveries for `reserved` slots) and
        return: what was claimed starts from the writer's report, without a task having to
        wake up for it first. Once queued, an outcome is written even during a stop."""
        endpoint = self._registry.get(endpoint_id) if reserved else None
        quota = {endpoint_id: reserved} if reserved else None
        ordered = frozenset([endpoint_id]) if endpoint is not None and endpoint.ordered else frozenset()
        # Slots kept now, before a back-off that a failure finishing meanwhile may start, are
        # not its probe: like attempts under way then, their failures do not stretch its wait.
        probing = self.health[endpoint_id].backing_off

        def written(claimed: list[ClaimedDelivery] | None, error: StoreUnavailable | None) -> None:
            self._writing -= 1
            if not self._writing:
                self._written.set()
            self._recorded(record, endpoint_id, reserved, claimed, error, probing)

        try:
            self._store.record_attempts_soon([record], self._clock.now(), quota, ordered, written)
        except StoreUnavailable as exc:
            self._recorded(record, endpoint_id, reserved, None, exc, probing)
            return
        self._writing += 1
        self._written.clear()

    def _recorded(
        self,
        record: AttemptRecord,
        endpoint_id: str,
        reserved: int,
        claimed: list[ClaimedDelivery] | None,
        error: StoreUnavailable | None,
        probing: bool,
    ) -> None:
        if claimed is None:
            # The delivery stays `delivering` (never claimed twice) until the outcome is written.
            self._store_refused(error or StoreUnavailable("?"), delivery_id=record.delivery_id)
            self._unrecorded.append(record)
            self._release(endpoint_id, reserved)
            return
        if not reserved:
            return
        if self._stopping:
            # Not started; the final requeue of stop() puts them back to pending.
            self._release(endpoint_id, reserved)
            return
        self._release(endpoint_id, reserved - len(claimed))
        if len(claimed) < reserved:
            self._maybe_due.discard(endpoint_id)  # drained for now; a wake or tick brings it back
        for delivery in claimed:
            self._launch(delivery, probing)

    def _store_refused(self, exc: StoreUnavailable, **context: object) -> None:
        """Logged once per cause until the store takes writes again, not once a tick."""
        if exc.message != self._unavailable:
            self._unavailable = exc.message
            log.error("storage_unavailable", error=exc.message, **context)

    async def _flush_unrecorded(self) -> None:
        records, self._unrecorded = self._unrecorded, []
        try:
            await self._store.record_attempts(records, self._clock.now())
        except StoreUnavailable:
            self._unrecorded = records + self._unrecorded
            raise

    def _decide(
        self, endpoint: Endpoint, delivery: ClaimedDelivery, result: AttemptResult, probe: bool
    ) -> AttemptRecord:
        health = self.health[endpoint.id]
        before = Before.of(health, self._registry.get(endpoint.id))
        record = judge(endpoint, delivery, result, probe, self._policy, health, self._clock.now(), self._rand)
        if record.disable_endpoint is not None:
            self._registry.disable(endpoint.id, record.disable_endpoint)
        elif record.state is DeliveryState.PENDING:
            self._note_retry(record.next_attempt_at)
        if self.on_attempt is not None:
            self.on_attempt(endpoint.name, record.outcome, result.duration_ms / 1000)
        if self.transitions is not None:
            tell(self.transitions, endpoint, delivery, record, before, health)
        return record

    def _note_retry(self, at: float | None) -> None:
        if at is not None and (self._next_retry_at is None or at < self._next_retry_at):
            self._next_retry_at = at

    def _registry_ids(self) -> list[str]:
        return [e.id for e in self._registry.all()]
