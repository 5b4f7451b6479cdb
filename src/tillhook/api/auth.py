"""Bearer tokens: the ingest token may only post events; the viewer token may read everything
but secrets and change nothing; the admin token may do everything."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from tillhook.api.dashboard.guard import is_dashboard, route_pattern
from tillhook.api.problems import HttpProblem
from tillhook.api.state import ROLE, SERVICES

PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json"})  # the document holds routes, no data
INGEST_ROUTES = frozenset({("POST", "/v1/events")})
SECRET_ROUTES = frozenset({("GET", "/v1/endpoints/{id}/secret")})
READ_METHODS = frozenset({"GET", "HEAD"})
# POSTs that store, send and change nothing, and show only what a viewer may see (a preview
# masks the url's credentials and the headers' values, and signs nothing).
READS_BY_POST = frozenset({("POST", "/v1/endpoints/{id}/preview")})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tillhook"'}


def allowed(role: str, method: str, path_pattern: str) -> str | None:
    """None when `role` may call `method` on the route `path_pattern` (e.g.
    "/v1/endpoints/{id}"), else why not, in words for the caller. The one place the rule lives."""
    if role == "admin":
        return None
    if role == "viewer":
        if method not in READ_METHODS and (method, path_pattern) not in READS_BY_POST:
            return "the viewer token may only read; use the admin token to change anything"
        if ("GET", path_pattern) in SECRET_ROUTES:
            return "the viewer token may not read secrets; use the admin token"
        return None
    if role == "ingest":
        if (method, path_pattern) in INGEST_ROUTES:
            return None
        return "the ingest token may only POST /v1/events; use the admin token here"
    return f"no route is open to the role {role!r}"


def viewer_may_call(method: str, path_pattern: str) -> bool:
    """What /openapi.json says of each operation (`x-tillhook-viewer`)."""
    return allowed("viewer", method, path_pattern) is None


def _unauthorized(detail: str) -> HttpProblem:
    return HttpProblem(401, "unauthorized", f"{detail}; `tillhook tokens` prints the tokens", headers=_CHALLENGE)


def _role(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("send Authorization: Bearer <token>")
    try:
        given = token.strip().encode()
    except UnicodeEncodeError:  # bytes that are not UTF-8 arrive as surrogates; no token has them
        raise _unauthorized("the bearer token is not UTF-8 text") from None
    tokens = request.app[SERVICES].tokens
    # Every comparison always runs, in constant time, so timing tells nothing about any token.
    matches = [
        (role, hmac.compare_digest(given, expected))
        for role, expected in (("admin", tokens.admin), ("viewer", tokens.viewer), ("ingest", tokens.ingest))
    ]
    role = next((role for role, match in matches if match), None)
    if role is None:
        raise _unauthorized("the bearer token is not valid")
    return role


__all__ = ["ROLE", "allowed", "auth_middleware", "viewer_may_call"]


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or is_dashboard(request.path):  # the dashboard has sessions
        response: web.StreamResponse = await handler(request)
        return response
    role = _role(request)
    refused = allowed(role, request.method, route_pattern(request))
    if refused is not None:
        raise HttpProblem(403, "forbidden", refused)
    request[ROLE] = role
    response = await handler(request)
    return response
