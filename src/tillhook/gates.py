"""What lets an attempt start, owned in one place: the attempts in flight (each endpoint's and
in all), the token buckets of rate-limited endpoints, each endpoint's back-off health, and how
free slots are shared out among endpoints with work due. Everything else asks here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from tillhook.health import EndpointHealth, HealthChange, Standing
from tillhook.models import Endpoint
from tillhook.ratelimit import TokenBucket
from tillhook.retry import RetryPolicy
from tillhook.slots import share

GateState = Literal["healthy", "paused", "backing_off"]


@dataclass(frozen=True, slots=True)
class GateView:
    """An endpoint's gate as it stood when asked: a copy, for the API and alerts."""

    state: GateState  # what holds it back first: a pause the receiver asked for, then a back-off
    backing_off: bool
    paused_until: float | None  # while paused
    next_probe_at: float | None  # while backing off: when a probe may go
    consecutive_failures: int
    last_failure: str | None
    succeeded_last_hour: int
    failed_last_hour: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class Quotas:
    """Slots reserved for one claim, per endpoint id."""

    given: dict[str, int]
    # When the next token comes for a rate-limited endpoint that had slots but no token.
    token_at: float | None = None


def _serves_all(_endpoint_id: str) -> bool:
    return True


class EndpointGates:
    def __init__(self, policy: RetryPolicy, *, max_in_flight: int, endpoint_max_in_flight: int) -> None:
        self._policy = policy
        self.max_in_flight = max_in_flight
        self._endpoint_max = endpoint_max_in_flight
        self._in_flight: defaultdict[str, int] = defaultdict(int)
        self._total = 0
        self._buckets: dict[str, TokenBucket] = {}
        self._health: defaultdict[str, EndpointHealth] = defaultdict(EndpointHealth)
        self._turn = 0  # who goes first when slots are shared out
        # Whether this daemon serves the endpoint: with an outbox shared by several daemons,
        # one of them serves each endpoint (store/pg/presence.py); alone, this one serves all.
        self.serves: Callable[[str], bool] = _serves_all

    # -- slots and tokens ------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Slots taken, over every endpoint: attempts under way and slots kept for a claim."""
        return self._total

    def free_for(self, endpoint: Endpoint, now: float) -> int:
        """How many attempts to the endpoint may start now: its limit (one at a time when
        ordered, one probe while it backs off, none while paused) less those in flight,
        and no more than its tokens. The global limit is not counted."""
        free = self._slots_free(endpoint, now)
        if endpoint.rate_limit is None or free <= 0:
            return free
        return min(free, self._bucket(endpoint, now).available(now))

    def acquire(self, endpoint: Endpoint, n: int, now: float, *, sharing_with: int = 0) -> int:
        """Take up to `n` slots (and a token each) for the endpoint, within the global limit;
        returns how many were taken. While `sharing_with` other endpoints have work waiting,
        no more than a fair part of the global limit: the rest is theirs to share."""
        n = min(n, self.free_for(endpoint, now), self.max_in_flight - self._total)
        if sharing_with > 0:
            fair = max(1, self.max_in_flight // (sharing_with + 1))
            n = min(n, fair - self._in_flight.get(endpoint.id, 0))
        if n <= 0:
            return 0
        self._take(endpoint.id, n, now, endpoint.rate_limit is not None)
        return n

    def quotas(self, candidates: Iterable[Endpoint], now: float) -> Quotas:
        """Reserve the slots for one claim of the candidates' due deliveries: each endpoint's
        free slots, shared out under the global limit one at a time to the endpoint with the
        fewest in flight (ties in turn), so that none starves the others. What the claim
        does not fill goes back with `release(..., refund_tokens=True)`."""
        wanted: dict[str, int] = {}
        rated: set[str] = set()
        token_at: float | None = None
        for endpoint in candidates:
            free = self._slots_free(endpoint, now)
            if free > 0 and endpoint.rate_limit is not None:
                rated.add(endpoint.id)
                bucket = self._bucket(endpoint, now)
                tokens = bucket.available(now)
                if tokens == 0:
                    at = bucket.next_token_at(now)
                    token_at = at if token_at is None else min(token_at, at)
                free = min(free, tokens)
            if free > 0:
                wanted[endpoint.id] = free
        self._turn += 1
        given = share(wanted, self.max_in_flight - self._total, self._in_flight, self._turn)
        for endpoint_id, n in given.items():
            self._take(endpoint_id, n, now, endpoint_id in rated)
        return Quotas(given, token_at)

    def release(self, endpoint_id: str, n: int = 1, *, refund_tokens: bool = False) -> None:
        """Give back `n` slots: attempts that ended, or slots kept that found nothing to run
        (then `refund_tokens`, as nothing was sent for them)."""
        if n <= 0:
            return
        self._in_flight[endpoint_id] -= n
        self._total -= n
        if refund_tokens:
            bucket = self._buckets.get(endpoint_id)
            if bucket is not None:
                bucket.give_back(n)

    def _slots_free(self, endpoint: Endpoint, now: float) -> int:
        if not self.serves(endpoint.id):
            return 0
        limit = 1 if endpoint.ordered else (endpoint.max_in_flight or self._endpoint_max)
        health = self._health.get(endpoint.id)
        slots = limit if health is None else health.slots(limit, now)
        return max(0, slots - self._in_flight.get(endpoint.id, 0))

    def _bucket(self, endpoint: Endpoint, now: float) -> TokenBucket:
        assert endpoint.rate_limit is not None
        bucket = self._buckets.get(endpoint.id)
        if bucket is None or bucket.rate != endpoint.rate_limit:
            bucket = self._buckets[endpoint.id] = TokenBucket.full(endpoint.rate_limit, now)
        return bucket

    def _take(self, endpoint_id: str, n: int, now: float, tokens: bool) -> None:
        if tokens:
            self._buckets[endpoint_id].take(n, now)
        self._in_flight[endpoint_id] += n
        self._total += n

    # -- health ------------------------------------------------------------------------------

    def probing(self, endpoint_id: str) -> bool:
        """Whether a slot taken now is the endpoint's one probe: it is backing off."""
        health = self._health.get(endpoint_id)
        return health is not None and health.backing_off

    def standing(self, endpoint_id: str) -> Standing:
        health = self._health.get(endpoint_id)
        return Standing() if health is None else health.standing()

    def apply(self, endpoint_id: str, change: HealthChange, now: float) -> None:
        """What an attempt's outcome said about the endpoint (outcomes.judge)."""
        if change.kind != "none" or change.paused_until is not None:
            self._health[endpoint_id].apply(change, now, self._policy)

    def forget(self, endpoint_id: str) -> None:
        """A fresh start for its health (enabled again: whatever failed is presumably fixed);
        its attempts in flight and its tokens stay counted."""
        self._health.pop(endpoint_id, None)

    def view(self, endpoint_id: str, now: float) -> GateView:
        in_flight = self._in_flight.get(endpoint_id, 0)
        health = self._health.get(endpoint_id)
        if health is None:
            return GateView("healthy", False, None, None, 0, None, 0, 0, in_flight)
        succeeded, failed = health.last_hour(now)
        paused = health.paused_until if health.paused_until > now else None
        state: GateState = "paused" if paused is not None else "backing_off" if health.backing_off else "healthy"
        return GateView(
            state=state,
            backing_off=health.backing_off,
            paused_until=paused,
            next_probe_at=health.probe_not_before if health.backing_off else None,
            consecutive_failures=health.consecutive_failures,
            last_failure=health.last_failure,
            succeeded_last_hour=succeeded,
            failed_last_hour=failed,
            in_flight=in_flight,
        )
