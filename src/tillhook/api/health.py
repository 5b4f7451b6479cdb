"""GET /healthz: no auth; 200 only while the loop ticks and the database takes writes."""

from __future__ import annotations

from aiohttp import web

from tillhook.api.problems import problem_response
from tillhook.api.state import SERVICES
from tillhook.errors import StoreUnavailable

STALE_LOOP_S = 10.0


async def get_healthz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    silent_s = services.clock.monotonic() - services.dispatcher.last_tick_monotonic
    if silent_s > STALE_LOOP_S:
        return problem_response(503, "unhealthy", f"the delivery loop has not ticked for {silent_s:.0f}s")
    try:
        await services.store.check_writable()
    except StoreUnavailable as exc:
        return problem_response(503, "unhealthy", exc.message)
    return web.json_response({"status": "ok"})
