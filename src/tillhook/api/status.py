"""GET /v1/status: what a shop checks first when something seems off. With an outbox shared by
several daemons it is the whole outbox's status, whichever daemon answers: what is in flight is
read from the outbox, and each endpoint names the daemon that serves it."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from tillhook import __version__
from tillhook.api import viewing
from tillhook.api.endpoints import endpoint_state
from tillhook.api.schemas import DaemonOut, DatabaseStatus, EndpointStatus, StatusOut
from tillhook.api.state import SERVICES, Services
from tillhook.models import DeliveryState, Endpoint, format_time
from tillhook.sharing import Sharing
from tillhook.store.port import Backlog, EndpointStats, OrderedHead

_NO_STATS = EndpointStats(last_success_at=None, last_failure_at=None, last_failure_reason=None)


async def get_status(request: web.Request) -> web.Response:
    reply = await status_report(request.app[SERVICES], viewer=viewing.is_viewer(request))
    return web.json_response(reply.model_dump(mode="json"))


@dataclass(frozen=True, slots=True)
class _Figures:
    """What the outbox says of every endpoint, read once per report."""

    now: float
    pending: dict[str, Backlog]
    stats: dict[str, EndpointStats]
    heads: dict[str, OrderedHead]
    in_flight: dict[str, int] | None  # shared: every daemon's; None: this daemon's gates say


async def status_report(services: Services, *, viewer: bool) -> StatusOut:
    """The status of the daemon and each endpoint: the API's reply and the dashboard's overview."""
    store, sharing = services.store, services.sharing
    now = services.clock.now()
    counts = await store.count_by_state()
    figures = _Figures(
        now=now,
        pending=await store.pending_by_endpoint(),
        stats=await store.endpoint_stats(),
        heads=await store.ordered_heads([e.id for e in services.registry.all() if e.ordered]),
        in_flight=await store.in_flight_by_endpoint() if sharing is not None else None,
    )
    endpoints = [_endpoint_status(services, endpoint, figures) for endpoint in services.registry.all()]
    oldest_all = min((b.oldest_created_at for b in figures.pending.values()), default=None)
    uptime_s = services.clock.monotonic() - services.started_monotonic
    report = StatusOut(
        version=__version__,
        started_at=format_time(now - uptime_s),
        uptime_s=round(uptime_s, 3),
        database=DatabaseStatus(path=store.location, size_bytes=await store.size_bytes()),
        deliveries={state.value: counts.get(state, 0) for state in DeliveryState},
        backlog=counts.get(DeliveryState.PENDING, 0) + counts.get(DeliveryState.DELIVERING, 0),
        oldest_pending_age_s=round(now - oldest_all, 3) if oldest_all is not None else None,
        in_flight=services.gates.in_flight if figures.in_flight is None else sum(figures.in_flight.values()),
        daemons=await _daemons(services, sharing, now),
        endpoints=endpoints,
    )
    return viewing.status(services, report) if viewer else report


def _endpoint_status(services: Services, endpoint: Endpoint, figures: _Figures) -> EndpointStatus:
    now, sharing = figures.now, services.sharing
    backlog = figures.pending.get(endpoint.id)
    waiting, oldest = (backlog.pending, backlog.oldest_created_at) if backlog is not None else (0, None)
    stat = figures.stats.get(endpoint.id, _NO_STATS)
    gate = services.gates.view(endpoint.id, now)
    # Only the serving daemon attempts the endpoint: another's gates have not seen how it goes.
    known = sharing is None or sharing.serves(endpoint.id)
    ok, failed = gate.succeeded_last_hour, gate.failed_last_hour
    head = figures.heads.get(endpoint.id)
    # Held back: its head has failed at least once and waits for its next try.
    blocked = head if head is not None and head.state == DeliveryState.PENDING and head.attempts > 0 else None
    paused, probe = gate.paused_until, gate.next_probe_at
    return EndpointStatus(
        id=endpoint.id,
        name=endpoint.name,
        state=endpoint_state(services, endpoint),
        disabled_reason=endpoint.disabled_reason,
        served_by=sharing.served_by(endpoint.id) if sharing is not None else None,
        in_flight=gate.in_flight if figures.in_flight is None else figures.in_flight.get(endpoint.id, 0),
        pending=waiting,
        oldest_pending_age_s=round(now - oldest, 3) if oldest is not None else None,
        consecutive_failures=gate.consecutive_failures if known else None,
        last_success_at=format_time(stat.last_success_at) if stat.last_success_at else None,
        last_failure_at=format_time(stat.last_failure_at) if stat.last_failure_at else None,
        last_failure_reason=stat.last_failure_reason,
        attempts_last_hour=ok + failed if known else None,
        success_rate_last_hour=round(ok / (ok + failed), 4) if known and ok + failed else None,
        ordered=endpoint.ordered,
        blocked_by=blocked.event_id if blocked else None,
        blocked_reason=(blocked.last_error or f"HTTP {blocked.last_status}") if blocked else None,
        rate_limit=endpoint.rate_limit,
        paused_until=format_time(paused) if known and paused else None,
        next_probe_at=format_time(probe) if known and probe is not None else None,
        held=0 if endpoint.enabled else waiting,
    )


async def _daemons(services: Services, sharing: Sharing | None, now: float) -> list[DaemonOut]:
    if sharing is None:
        return []
    return [
        DaemonOut(
            id=row.id,
            host=row.host,
            pid=row.pid,
            listen=row.listen,
            started_at=format_time(row.started_at),
            last_seen_at=format_time(row.seen_at),
            live=row.live,
            this=row.id == sharing.daemon_id,
        )
        for row in await services.store.daemons(now)
    ]
