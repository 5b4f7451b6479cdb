"""Each error status of ingest, from the real process, which keeps serving afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.acceptance.conftest import ADMIN_TOKEN, INGEST_TOKEN, Accepting, Daemon, write_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
JSON = {"Content-Type": "application/json"}


def nested(depth: int) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for _ in range(depth - 1):
        data = {"x": data}
    return data


BAD = [
    # (why, method, path, token, headers, body, status, slug)
    ("no token", "POST", "/v1/events", None, JSON, b'{"type":"a","data":{}}', 401, "unauthorized"),
    ("wrong token", "POST", "/v1/events", "nope", JSON, b'{"type":"a","data":{}}', 401, "unauthorized"),
    ("ingest token on an admin route", "GET", "/v1/status", INGEST_TOKEN, {}, b"", 403, "forbidden"),
    (
        "not JSON",
        "POST",
        "/v1/events",
        INGEST_TOKEN,
        {"Content-Type": "text/plain"},
        b"hi",
        415,
        "unsupported-media-type",
    ),
    ("malformed JSON", "POST", "/v1/events", INGEST_TOKEN, JSON, b'{"type": ', 400, "malformed-body"),
    ("not UTF-8", "POST", "/v1/events", INGEST_TOKEN, JSON, b'{"type": "\xff", "data": {}}', 400, "malformed-body"),
    (
        "too large",
        "POST",
        "/v1/events",
        INGEST_TOKEN,
        JSON,
        json.dumps({"type": "a", "data": {"x": "y" * 5000}}).encode(),
        413,
        "body-too-large",
    ),
    ("missing data", "POST", "/v1/events", INGEST_TOKEN, JSON, b'{"type": "sale.completed"}', 422, "invalid-event"),
    ("bad type", "POST", "/v1/events", INGEST_TOKEN, JSON, b'{"type": "no spaces", "data": {}}', 422, "invalid-event"),
    (
        "too deep",
        "POST",
        "/v1/events",
        INGEST_TOKEN,
        JSON,
        json.dumps({"type": "a", "data": nested(40)}).encode(),
        422,
        "invalid-event",
    ),
    ("unknown route", "GET", "/v1/nothing", ADMIN_TOKEN, {}, b"", 404, "not-found"),
    ("wrong method", "DELETE", "/v1/events", ADMIN_TOKEN, {}, b"", 405, "method-not-allowed"),
]


@pytest.fixture
async def running(tmp_path: Path, receivers: Any, daemons: Any) -> tuple[Daemon, Accepting]:
    behaviour = _Ok()
    receiver = await receivers(secret=SECRET, behaviour=behaviour)
    config = write_config(
        tmp_path / "tillhook.toml",
        [{"name": "pos", "url": receiver.url, "secret": SECRET}],
        server={"max_body_bytes": 4096},
    )
    return await daemons(config).start(), behaviour


class _Ok(Accepting):
    async def __call__(self, request: Any, n: int) -> Any:
        from aiohttp import web

        await self.accept(request.headers["webhook-id"])
        return web.Response(text="ok")


async def test_every_bad_request_gets_its_problem_and_the_daemon_keeps_serving(
    running: tuple[Daemon, Accepting], http: aiohttp.ClientSession
) -> None:
    daemon, behaviour = running
    for why, method, path, token, headers, body, status, slug in BAD:
        sent = dict(headers)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with http.request(method, daemon.url + path, data=body, headers=sent) as response:
            text = await response.text()
            assert response.status == status, f"{why}: {response.status} {text}"
            assert response.content_type == "application/problem+json", why
            problem = json.loads(text)
            assert problem["status"] == status and problem["type"] == f"urn:tillhook:problem:{slug}", why
            assert problem["detail"], why
            if status == 422:
                assert problem.get("errors") or "deeper" in problem["detail"], why

    # Nothing of that was stored, and a good event still goes through.
    async with http.get(f"{daemon.url}/v1/events", headers=daemon.headers(ADMIN_TOKEN)) as response:
        assert (await response.json())["data"] == []
    async with http.post(
        f"{daemon.url}/v1/events", json={"type": "sale.completed", "data": {"total": 5}}, headers=daemon.headers()
    ) as response:
        assert response.status == 202
        event_id = (await response.json())["id"]
    await behaviour.wait_for_all({event_id}, timeout_s=30)
    assert await daemon.terminate() == 0


async def test_a_bad_event_in_a_batch_refuses_the_whole_batch(
    running: tuple[Daemon, Accepting], http: aiohttp.ClientSession
) -> None:
    daemon, _ = running
    batch = [{"type": "sale.completed", "data": {}}, {"type": "sale.completed", "data": "nope"}]
    async with http.post(f"{daemon.url}/v1/events", json=batch, headers=daemon.headers()) as response:
        assert response.status == 422
        problem = await response.json(content_type=None)
        assert [e["field"] for e in problem["errors"]] == ["[1].data"]
    async with http.get(f"{daemon.url}/v1/events", headers=daemon.headers(ADMIN_TOKEN)) as response:
        assert (await response.json())["data"] == []
