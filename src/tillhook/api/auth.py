"""Bearer tokens: the ingest token may only post events; the admin token may do everything."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from tillhook.api.dashboard.guard import is_dashboard
from tillhook.api.problems import HttpProblem
from tillhook.api.state import SERVICES

PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json"})  # the document holds routes, no data
INGEST_ROUTES = frozenset({("POST", "/v1/events")})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tillhook"'}


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or is_dashboard(request.path):  # the dashboard has sessions
        response: web.StreamResponse = await handler(request)
        return response
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpProblem(
            401, "unauthorized", "send Authorization: Bearer <token>; `tillhook tokens` prints the tokens",
            headers=_CHALLENGE,
        )
    try:
        given = token.strip().encode()
    except UnicodeEncodeError:  # bytes that are not UTF-8 arrive as surrogates; no token has them
        raise HttpProblem(
            401, "unauthorized", "the bearer token is not UTF-8 text; `tillhook tokens` prints the tokens",
            headers=_CHALLENGE,
        ) from None
    tokens = request.app[SERVICES].tokens
    # Both comparisons always run, in constant time, so timing tells nothing about either token.
    is_admin = hmac.compare_digest(given, tokens.admin)
    is_ingest = hmac.compare_digest(given, tokens.ingest)
    if not (is_admin or is_ingest):
        raise HttpProblem(
            401, "unauthorized", "the bearer token is not valid; `tillhook tokens` prints the tokens",
            headers=_CHALLENGE,
        )
    if not is_admin and (request.method, request.path) not in INGEST_ROUTES:
        raise HttpProblem(403, "forbidden", "the ingest token may only POST /v1/events; use the admin token here")
    response = await handler(request)
    return response
