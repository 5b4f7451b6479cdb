"""What every dashboard request passes first: pages need a session, changes need the
session's form token and a same-origin request, and every reply carries headers that keep
the browser from loading anything but the daemon's own files or running text it shows."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from tillhook.api.dashboard.sessions import COOKIE, Session, Sessions

PREFIX = "/ui/"
SIGN_IN = "/ui/signin"
SIGN_OUT = "/ui/signout"
PUBLIC = frozenset({SIGN_IN})
# The posts a viewer session may make: they change nothing in the outbox (the API's rule for
# the viewer token, api/auth.py, lets the same preview through).
VIEWER_POSTS = frozenset({SIGN_OUT, "/ui/endpoints/{name}/preview"})
SESSIONS = web.AppKey("dashboard_sessions", Sessions)
SESSION = web.RequestKey("dashboard_session", Session)

SECURITY_HEADERS = {
    # Only the daemon's own scripts, styles and images; no inline script, no frames, forms
    # post only back to the daemon.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make form posts send Origin: null
    "Cache-Control": "no-store",
}


def is_dashboard(path: str) -> bool:
    return path == "/" or path.startswith(PREFIX)


def _public(path: str) -> bool:
    return path in PUBLIC or path.startswith(PREFIX + "static/")


def same_origin(request: web.Request) -> bool:
    """A change must come from a page of this daemon: the Origin (or, without one, the
    Referer) names this host, and the browser does not call it cross-site."""
    if request.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none"):
        return False
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if origin is None:
        return False
    parts = urlsplit(origin)
    return parts.netloc == request.host and parts.scheme in ("http", "https")


def route_pattern(request: web.Request) -> str:
    """The route's pattern, so a rule names "/v1/endpoints/{id}/secret" once for every id; an
    unknown path is its own pattern (and then a 404 for whoever may reach it)."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else None
    return canonical or request.path


def refused(status: int, text: str) -> web.Response:
    response = web.Response(status=status, text=text, content_type="text/plain")
    response.headers.update(SECURITY_HEADERS)
    return response


@web.middleware
async def dashboard_guard(request: web.Request, handler: Any) -> web.StreamResponse:
    if not is_dashboard(request.path):
        response: web.StreamResponse = await handler(request)
        return response
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        # A raised reply (the redirects of sign-in, which sets the cookie, and of sign-out)
        # is sent as it is: it needs the headers as much as a returned one.
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


async def _guarded(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.method == "POST" and not same_origin(request):
        return refused(403, "refused: this change did not come from a tillhook page (cross-site request)")
    if not _public(request.path):
        session = request.app[SESSIONS].get(request.cookies.get(COOKIE))
        if session is None:
            if request.method != "GET":
                return refused(403, "refused: sign in first")
            raise web.HTTPSeeOther(SIGN_IN)
        if request.method == "POST":
            form = await request.post()
            given = form.get("csrf")
            if not session.csrf_matches(given if isinstance(given, str) else None):
                return refused(403, "refused: the form's token does not match this session; reload the page")
            if session.role != "admin" and route_pattern(request) not in VIEWER_POSTS:
                return refused(403, "refused: signed in with the viewer token, which may only read")
        request[SESSION] = session
    response: web.StreamResponse = await handler(request)
    return response
