"""GET /metrics: the Prometheus text format."""

from __future__ import annotations

from typing import get_args

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tillhook.api.endpoints import endpoint_state
from tillhook.api.schemas import EndpointState
from tillhook.api.state import SERVICES
from tillhook.models import DeliveryState


async def get_metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    m, now = services.metrics, services.clock.now()
    counts = await services.store.count_by_state()
    for state in DeliveryState:
        m.deliveries.labels(state.value).set(counts.get(state, 0))
    pending = await services.store.pending_by_endpoint()
    # Rebuilt each time, so that deleted or renamed endpoints leave no stale series.
    for gauge in (m.backlog, m.oldest_pending_age, m.in_flight, m.endpoint_state):
        gauge.clear()
    for endpoint in services.registry.all():
        backlog = pending.get(endpoint.id)
        m.backlog.labels(endpoint.name).set(backlog.pending if backlog is not None else 0)
        m.oldest_pending_age.labels(endpoint.name).set(now - backlog.oldest_created_at if backlog is not None else 0)
        m.in_flight.labels(endpoint.name).set(services.gates.view(endpoint.id, now).in_flight)
        current = endpoint_state(services, endpoint)
        for name in get_args(EndpointState):
            m.endpoint_state.labels(endpoint.name, name).set(1 if name == current else 0)
    m.database_size.set(await services.store.size_bytes())
    return web.Response(body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
