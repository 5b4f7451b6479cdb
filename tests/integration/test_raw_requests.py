"""Requests that HTTP libraries do not send, written to a raw socket: header bytes that are
not UTF-8, and bodies that stop arriving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.integration.conftest import ADMIN_TOKEN, INGEST_TOKEN, Harness, make_config

WAIT_S = 10.0


async def send(harness: Harness, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.server.port)
    writer.write(request)
    return reader, writer


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), WAIT_S)
    return int(status_line.split()[1]), headers, json.loads(body)


async def test_a_non_utf8_bearer_token_is_a_401(
    tmp_path: Path, make_harness: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await make_harness(make_config(tmp_path, []))
    for path in (b"/v1/status", b"/v1/events"):
        reader, writer = await send(
            harness,
            b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ab\xff\xfecd\r\nConnection: close\r\n\r\n",
        )
        status, headers, problem = await response(reader)
        writer.close()
        assert status == 401, problem
        assert headers["content-type"].startswith("application/problem+json")
        assert headers["www-authenticate"].startswith("Bearer")
        assert "not UTF-8" in problem["detail"]


def post(path: str, token: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_an_event_body_that_stops_arriving_gets_408_and_nothing_is_stored(
    tmp_path: Path, make_harness: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await make_harness(make_config(tmp_path, [], server={"body_timeout": "500ms"}))
    body = json.dumps({"type": "sale.done", "data": {"amount": 1}}).encode()
    reader, writer = await send(harness, post("/v1/events", INGEST_TOKEN, len(body)) + body[:10])
    status, headers, problem = await response(reader)
    assert status == 408, problem
    assert headers["content-type"].startswith("application/problem+json") and headers["connection"] == "close"
    assert "server.body_timeout" in problem["detail"] and "nothing was stored" in problem["detail"]
    writer.write(body[10:])  # too late: it is not taken as the event
    writer.close()
    listed = await harness.session.get(
        harness.server.make_url("/v1/events"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert (await listed.json())["data"] == []


async def test_an_admin_body_that_stops_arriving_gets_408(
    tmp_path: Path, make_harness: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await make_harness(make_config(tmp_path, [], server={"body_timeout": "500ms"}))
    reader, writer = await send(harness, post("/v1/endpoints", ADMIN_TOKEN, 200) + b'{"name": "x"')
    status, _, problem = await response(reader)
    writer.close()
    assert status == 408 and problem["type"] == "urn:tillhook:problem:request-timeout"
    assert harness.services.registry.all() == []
