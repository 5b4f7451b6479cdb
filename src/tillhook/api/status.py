"""GET /v1/status: what a shop checks first when something seems off."""

from __future__ import annotations

from aiohttp import web

from tillhook import __version__
from tillhook.api.endpoints import endpoint_state
from tillhook.api.schemas import DatabaseStatus, EndpointStatus, StatusOut
from tillhook.api.state import SERVICES, Services
from tillhook.models import DeliveryState, format_time
from tillhook.store.port import EndpointStats

_NO_STATS = EndpointStats(last_success_at=None, last_failure_at=None, last_failure_reason=None)


async def get_status(request: web.Request) -> web.Response:
    reply = await status_report(request.app[SERVICES])
    return web.json_response(reply.model_dump(mode="json"))


async def status_report(services: Services) -> StatusOut:
    """The status of the daemon and each endpoint: the API's reply and the dashboard's overview."""
    store, gates = services.store, services.gates
    now = services.clock.now()
    counts = await store.count_by_state()
    pending = await store.pending_by_endpoint()
    stats = await store.endpoint_stats()
    heads = await store.ordered_heads([e.id for e in services.registry.all() if e.ordered])
    endpoints = []
    for endpoint in services.registry.all():
        backlog = pending.get(endpoint.id)
        waiting, oldest = (backlog.pending, backlog.oldest_created_at) if backlog is not None else (0, None)
        stat = stats.get(endpoint.id, _NO_STATS)
        gate = gates.view(endpoint.id, now)
        ok, failed = gate.succeeded_last_hour, gate.failed_last_hour
        head = heads.get(endpoint.id)
        # Held back: its head has failed at least once and waits for its next try.
        blocked = head if head is not None and head.state == DeliveryState.PENDING and head.attempts > 0 else None
        paused, probe = gate.paused_until, gate.next_probe_at
        endpoints.append(
            EndpointStatus(
                id=endpoint.id,
                name=endpoint.name,
                state=endpoint_state(services, endpoint),
                disabled_reason=endpoint.disabled_reason,
                in_flight=gate.in_flight,
                pending=waiting,
                oldest_pending_age_s=round(now - oldest, 3) if oldest is not None else None,
                consecutive_failures=gate.consecutive_failures,
                last_success_at=format_time(stat.last_success_at) if stat.last_success_at else None,
                last_failure_at=format_time(stat.last_failure_at) if stat.last_failure_at else None,
                last_failure_reason=stat.last_failure_reason,
                attempts_last_hour=ok + failed,
                success_rate_last_hour=round(ok / (ok + failed), 4) if ok + failed else None,
                ordered=endpoint.ordered,
                blocked_by=blocked.event_id if blocked else None,
                blocked_reason=(blocked.last_error or f"HTTP {blocked.last_status}") if blocked else None,
                rate_limit=endpoint.rate_limit,
                paused_until=format_time(paused) if paused else None,
                next_probe_at=format_time(probe) if probe is not None else None,
                held=0 if endpoint.enabled else waiting,
            )
        )
    oldest_all = min((b.oldest_created_at for b in pending.values()), default=None)
    uptime_s = services.clock.monotonic() - services.started_monotonic
    return StatusOut(
        version=__version__,
        started_at=format_time(now - uptime_s),
        uptime_s=round(uptime_s, 3),
        database=DatabaseStatus(path=store.location, size_bytes=await store.size_bytes()),
        deliveries={state.value: counts.get(state, 0) for state in DeliveryState},
        backlog=counts.get(DeliveryState.PENDING, 0) + counts.get(DeliveryState.DELIVERING, 0),
        oldest_pending_age_s=round(now - oldest_all, 3) if oldest_all is not None else None,
        in_flight=gates.in_flight,
        endpoints=endpoints,
    )
