"""The pages: sign in and out, and the overview. Each page asks the same functions the admin
API's handlers do and renders what they return."""

from __future__ import annotations

import hmac

from aiohttp import web

from tillhook.api import viewing
from tillhook.api.dashboard.charts import deliveries_chart, latency_chart
from tillhook.api.dashboard.guard import SESSION, SESSIONS, SIGN_IN
from tillhook.api.dashboard.render import render
from tillhook.api.dashboard.sessions import COOKIE
from tillhook.api.state import SERVICES
from tillhook.api.status import status_report


async def sign_in_page(request: web.Request) -> web.Response:
    return render(request, "signin.html", error=None)


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    given = form.get("token")
    role = _role_of(request, given if isinstance(given, str) else "")
    if role is None:
        return render(
            request,
            "signin.html",
            status=401,
            error="That token is not valid. `tillhook tokens` prints the admin and viewer tokens.",
        )
    session = request.app[SESSIONS].create(role)
    response = web.HTTPSeeOther("/")
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="Strict", path="/", secure=request.secure)
    raise response  # aiohttp deprecates returning an HTTPException


def _role_of(request: web.Request, given: str) -> str | None:
    tokens = request.app[SERVICES].tokens
    try:
        raw = given.strip().encode()
    except UnicodeEncodeError:
        return None
    # Both comparisons run, in constant time, whatever the token.
    is_admin = hmac.compare_digest(raw, tokens.admin)
    is_viewer = hmac.compare_digest(raw, tokens.viewer)
    if not raw:
        return None
    return "admin" if is_admin else "viewer" if is_viewer else None


async def sign_out(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS].drop(request[SESSION].id)
    response = web.HTTPSeeOther(SIGN_IN)
    response.del_cookie(COOKIE, path="/")
    raise response


async def overview(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    status = await status_report(services, viewer=viewing.is_viewer(request))
    hours = await services.store.attempts_by_hour(services.clock.now())
    template = "overview_live.html" if request.query.get("part") == "live" else "overview.html"
    return render(request, template, status=200, report=status, charts=(deliveries_chart(hours), latency_chart(hours)))
