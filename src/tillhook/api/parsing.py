"""Turning requests into validated models, with every bad field named in a 422."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from tillhook.api.connections import CLOSE_AFTER_RESPONSE
from tillhook.api.problems import HttpProblem
from tillhook.api.state import SERVICES
from tillhook.config import parse_duration
from tillhook.errors import InvalidInput, NotFound
from tillhook.models import Endpoint
from tillhook.registry import EndpointRegistry
from tillhook.wording import field_errors

M = TypeVar("M", bound=BaseModel)


def invalid(errors: list[dict[str, str]], what: str = "the request") -> InvalidInput:
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return InvalidInput(f"{what} is not valid: {summary}", errors=errors)


def validate(model: type[M], data: Any, what: str, prefix: str = "", context: dict[str, Any] | None = None) -> M:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise invalid(field_errors(exc, prefix, whole="body"), what) from None


async def read_body(request: web.Request) -> bytes:
    """The whole body, if it arrives within server.body_timeout; else a 408 that also ends the
    connection, since the rest of the body is not worth waiting for."""
    if request.content.is_eof():
        # Already all here (a small request comes in one packet): no timer to arm.
        return await request.read()
    timeout = request.app[SERVICES].config.server.body_timeout
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        request[CLOSE_AFTER_RESPONSE] = True
        raise HttpProblem(
            408,
            "request-timeout",
            f"the body did not arrive within server.body_timeout ({timeout:g}s); nothing was stored."
            " Send the whole request at once",
            headers={"Connection": "close"},
        ) from None


async def body_model(
    request: web.Request, model: type[M], *, empty_ok: bool = False, context: dict[str, Any] | None = None
) -> M:
    raw = await read_body(request)
    if not raw.strip() and empty_ok:
        return validate(model, {}, "the body", context=context)
    if request.content_type != "application/json":
        raise InvalidInput(
            f"send Content-Type: application/json (got {request.content_type or 'none'})",
            status=415,
            slug="unsupported-media-type",
        )
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", status=400, slug="malformed-body") from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object", slug="invalid-input")
    return validate(model, data, "the body", context=context)


def query_model(request: web.Request, model: type[M]) -> M:
    repeated = [key for key in request.query if len(request.query.getall(key)) > 1]
    if repeated:
        raise invalid([{"field": key, "message": "give it once"} for key in repeated], "the query")
    return validate(model, dict(request.query), "the query")


def parse_when(value: str, now: float, field: str) -> float:
    """An RFC 3339 date-time, or a duration meaning that long ago ("2h")."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise invalid(
            [
                {
                    "field": field,
                    "message": "must be an RFC 3339 date-time like 2026-11-22T10:30:00Z, or a duration ago like 2h",
                }
            ],
            "the request",
        )
    return moment.timestamp()


def parse_cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise invalid(
            [{"field": "cursor", "message": "is not a cursor from an earlier page's next_cursor"}], "the query"
        )
    return int(value)


def find_endpoint(registry: EndpointRegistry, ref: str) -> Endpoint:
    """By id, else by name."""
    endpoint = registry.get(ref) or registry.by_name(ref)
    if endpoint is None:
        raise NotFound(f"there is no endpoint with the id or name {ref!r}; GET /v1/endpoints lists them")
    return endpoint
