"""RFC 9457 problem responses, and the one middleware that maps errors to them."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web

from tillhook.errors import Conflict, InvalidInput, NotFound, StoreUnavailable

log = structlog.get_logger("tillhook.api")

PROBLEM_TYPE = "application/problem+json"


class HttpProblem(Exception):
    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def response(self) -> web.Response:
        return problem_response(self.status, self.slug, self.detail, errors=self.errors, headers=self.headers)


def problem_response(
    status: int,
    slug: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"urn:tillhook:problem:{slug}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


_AIOHTTP_SLUGS = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}


@web.middleware
async def problems_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except HttpProblem as problem:
        return problem.response()
    except InvalidInput as exc:
        return problem_response(exc.status, exc.slug, exc.message, errors=exc.errors)
    except StoreUnavailable as exc:
        log.error("storage_unavailable", error=exc.message, path=request.path)
        return problem_response(
            503, "storage-unavailable", f"nothing was stored: {exc.message}", headers={"Retry-After": "5"}
        )
    except NotFound as exc:
        return problem_response(404, exc.slug, exc.message)
    except Conflict as exc:
        return problem_response(409, exc.slug, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(exc.status, _AIOHTTP_SLUGS.get(exc.status, "http-error"), _detail(request, exc))
    except Exception:
        log.exception("request_failed", path=request.path, method=request.method)
        return problem_response(500, "internal-error", "tillhook failed to handle this request; its log says why")


def _detail(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"there is no route {request.path}; see GET /openapi.json for the routes"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    if exc.status == 413:
        limit = request.app._client_max_size
        return f"the body is larger than server.max_body_bytes ({limit} bytes); split the batch"
    return exc.text or exc.reason
