"""GET /openapi.json: OpenAPI 3.1, generated from the route table and its pydantic models."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from tillhook import __version__
from tillhook.api.auth import viewer_may_call
from tillhook.api.routes import ROUTES, Route
from tillhook.models import Problem

_REF = "#/components/schemas/{model}"
# On every operation: whether the viewer token may call it (reads, and a preview, which changes
# nothing); the admin token may call every operation, the ingest token only POST /v1/events.
VIEWER = "x-tillhook-viewer"
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _models() -> list[tuple[type[BaseModel], Any]]:
    seen: dict[tuple[type[BaseModel], str], None] = {(Problem, "serialization"): None}
    for route in ROUTES:
        if route.body is not None:
            seen[(route.body, "validation")] = None
        if route.reply is not None:
            seen[(route.reply, "serialization")] = None
    return list(seen)


def build_openapi() -> dict[str, Any]:
    refs, schemas = models_json_schema(_models(), ref_template=_REF)
    components = schemas.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs, components)
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document (no token needed: it describes the routes and holds no data)",
            "tags": ["operations"],
            "operationId": "get_openapi",
            "security": [],
            VIEWER: True,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
            },
        }
    }
    paths["/"] = {
        "get": {
            "summary": "The dashboard (HTML): its pages sign in with a token at /ui/signin and keep a session cookie",
            "tags": ["dashboard"],
            "operationId": "get_dashboard",
            "security": [],
            VIEWER: True,
            "responses": {
                "200": {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}},
                "303": {"description": "Not signed in: to the sign-in page"},
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tillhook",
            "version": __version__,
            "description": "Webhook delivery daemon for point-of-sale servers: ingest events, deliver them signed"
            " (Standard Webhooks), and read and steer the delivery log.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the admin token (everything); the viewer token (every GET route but"
                    " GET /v1/endpoints/{id}/secret, and POST /v1/endpoints/{id}/preview, which stores and"
                    " sends nothing: it reads, never a secret, and changes nothing; each operation's"
                    f" `{VIEWER}` says whether the viewer token may call it); or for POST /v1/events the"
                    " ingest token (`tillhook tokens` prints all three)",
                }
            },
        },
    }


_OPERATION_ID_CHARS = re.compile(r"[{}]")
_PATH_PARAMETER = re.compile(r"{(\w+)}")


def _operation_id(route: Route) -> str:
    """e.g. GET /v1/endpoints/{id}/secret -> get_v1_endpoints_id_secret"""
    return route.method.lower() + _OPERATION_ID_CHARS.sub("", route.path.replace("/", "_").replace("-", "_"))


def _operation(route: Route, refs: Any, components: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": _operation_id(route),
        VIEWER: viewer_may_call(route.method, route.path),
    }
    if route.public:
        operation["security"] = []
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAMETER.findall(route.path)
    ]
    if route.query is not None:
        schema = route.query.model_json_schema(ref_template=_REF)
        components.update(schema.pop("$defs", {}))
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": {k: v for k, v in prop.items() if k != "description"},
                    **({"description": prop["description"]} if "description" in prop else {}),
                }
            )
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": not route.body_optional,
            "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": HTTPStatus(route.status).phrase}
    if route.reply is not None:
        ok["content"] = {"application/json": {"schema": refs[(route.reply, "serialization")]}}
    elif route.text_reply is not None:
        ok["content"] = {route.text_reply: {"schema": {"type": "string"}}}
    responses[str(route.status)] = ok
    errors = set(route.errors) | ({400, 415, 422} if route.body is not None else set())
    if not route.public:
        errors |= {401, 403}
    for code in sorted(errors):
        responses[str(code)] = {"description": HTTPStatus(code).phrase, "content": _PROBLEM}
    operation["responses"] = responses
    return operation


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi())
