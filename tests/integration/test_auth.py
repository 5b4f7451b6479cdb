"""The three tokens against the real app on loopback: the viewer reads everything but
secrets and changes nothing; the admin does everything; the ingest token only posts events."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    ADMIN_TOKEN,
    INGEST_TOKEN,
    VIEWER_TOKEN,
    Harness,
    make_config,
)
from tillhook.redact import origin

PROBLEM = "application/problem+json"
READ_ONLY = "the viewer token may only read; use the admin token to change anything"
NO_SECRETS = "the viewer token may not read secrets; use the admin token"

_ENDPOINT = {"name": "shop2", "url": "http://127.0.0.1:9/x"}
# Every change the admin API offers, each with a body it would accept from the admin token.
CHANGES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/endpoints", _ENDPOINT),
    ("PATCH", "/v1/endpoints/shop", {"max_in_flight": 1}),
    ("POST", "/v1/endpoints/shop/enable", None),
    ("POST", "/v1/endpoints/shop/rotate-secret", None),
    ("POST", "/v1/endpoints/shop/test", None),
    ("POST", "/v1/endpoints/shop/replay", {"since": "1h"}),
    ("POST", "/v1/deliveries/{delivery}/retry", None),
    ("POST", "/v1/events", {"type": "sale.completed", "data": {}}),
    ("DELETE", "/v1/endpoints/shop", None),
]


async def call(h: Harness, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    async with h.session.request(method, h.server.make_url(path), data=data, headers=headers) as response:
        text = await response.text()
        if response.status >= 400:
            assert response.content_type == PROBLEM, text
            return response.status, json.loads(text)
        return response.status, (json.loads(text) if text and response.content_type == "application/json" else text)


async def snapshot(h: Harness) -> dict[str, Any]:
    """Everything a change could touch, as the admin token reads it."""
    seen = {}
    for path in ("/v1/endpoints", "/v1/deliveries", "/v1/events", "/v1/endpoints/shop/secret"):
        code, seen[path] = await call(h, ADMIN_TOKEN, "GET", path)
        assert code == 200, seen[path]
    seen["counts"] = await h.services.store.count_by_state()
    return seen


@pytest.fixture
async def shop(tmp_path: Path, receivers: Any, make_harness: Any, clock: Any) -> tuple[Harness, Any, str]:
    """A daemon with a disabled endpoint "shop" that has one delivered event."""
    receiver = await receivers()
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    code, _ = await call(h, ADMIN_TOKEN, "POST", "/v1/endpoints", {"name": "shop", "url": receiver.url})
    assert code == 201
    code, _ = await call(h, INGEST_TOKEN, "POST", "/v1/events", {"type": "sale.completed", "data": {}})
    assert code == 202
    assert await h.step() == 1
    (delivery,) = (await call(h, ADMIN_TOKEN, "GET", "/v1/deliveries"))[1]["data"]
    assert (await call(h, ADMIN_TOKEN, "POST", "/v1/endpoints/shop/disable"))[0] == 200
    await h.services.alerts.wait_idle()  # the disable's alert is stored (as an event) before anything is compared
    return h, receiver, delivery["id"]


@pytest.mark.parametrize(
    "path", ["/v1/status", "/v1/endpoints", "/v1/endpoints/shop", "/v1/deliveries", "/v1/events", "/metrics"]
)
async def test_the_viewer_reads_every_admin_route(shop: Any, path: str) -> None:
    h, _, _ = shop
    code, body = await call(h, VIEWER_TOKEN, "GET", path)
    assert code == 200, body
    expected = (await call(h, ADMIN_TOKEN, "GET", path))[1]
    # Of where an endpoint delivers the viewer reads the origin only; else the admin's reply.
    endpoints = expected["data"] if path == "/v1/endpoints" else [expected] if path == "/v1/endpoints/shop" else []
    for endpoint in endpoints:
        endpoint["url"] = origin(endpoint["url"])
    assert body == expected


async def test_the_viewer_reads_one_event_and_one_delivery(shop: Any) -> None:
    h, _, delivery = shop
    code, detail = await call(h, VIEWER_TOKEN, "GET", f"/v1/deliveries/{delivery}")
    assert code == 200 and detail["state"] == "delivered"
    code, event = await call(h, VIEWER_TOKEN, "GET", f"/v1/events/{detail['event_id']}")
    assert code == 200 and event["id"] == detail["event_id"]


async def test_the_viewer_never_reads_a_secret(shop: Any) -> None:
    h, _, _ = shop
    code, problem = await call(h, VIEWER_TOKEN, "GET", "/v1/endpoints/shop/secret")
    assert code == 403 and problem["title"] and problem["detail"] == NO_SECRETS, problem
    code, _ = await call(h, ADMIN_TOKEN, "GET", "/v1/endpoints/shop/secret")
    assert code == 200


async def test_the_viewer_changes_nothing(shop: Any) -> None:
    h, receiver, delivery = shop
    before = await snapshot(h)
    received = len(receiver.received)
    for method, path, body in CHANGES:
        code, problem = await call(h, VIEWER_TOKEN, method, path.format(delivery=delivery), body)
        assert (code, problem["detail"]) == (403, READ_ONLY), (method, path, problem)
    assert await h.step(3600) == 0  # nothing was queued either
    assert await snapshot(h) == before and len(receiver.received) == received


async def test_the_admin_still_does_everything(shop: Any) -> None:
    h, _, delivery = shop
    for method, path, body in CHANGES:
        code, reply = await call(h, ADMIN_TOKEN, method, path.format(delivery=delivery), body)
        assert 200 <= code < 300, (method, path, reply)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/status"),
        ("GET", "/v1/events"),
        ("GET", "/v1/endpoints/shop/secret"),
        ("GET", "/metrics"),
        ("POST", "/v1/endpoints/shop/enable"),
    ],
)
async def test_the_ingest_token_still_only_posts_events(shop: Any, method: str, path: str) -> None:
    h, _, _ = shop
    code, problem = await call(h, INGEST_TOKEN, method, path)
    assert code == 403 and "ingest token may only POST /v1/events" in problem["detail"], problem
    assert (await call(h, INGEST_TOKEN, "POST", "/v1/events", {"type": "a", "data": {}}))[0] == 202


async def test_a_wrong_token_is_401_for_every_role_route(shop: Any) -> None:
    h, _, _ = shop
    for token in (VIEWER_TOKEN + "x", VIEWER_TOKEN[:-1], "vwr_" + "x" * 43):
        code, problem = await call(h, token, "GET", "/v1/status")
        assert code == 401 and "not valid" in problem["detail"], problem


async def test_a_generated_viewer_token_is_kept_and_an_older_database_gets_one(
    tmp_path: Path, make_harness: Any, clock: Any
) -> None:
    config = make_config(tmp_path, [], auth={"ingest_token": None, "admin_token": None, "viewer_token": None})
    h = await make_harness(config, clock=clock)
    first = h.services.tokens
    assert first.viewer.startswith(b"vwr_") and len(first.viewer) > 40
    assert len({first.ingest, first.admin, first.viewer}) == 3
    h = await restart(h, make_harness, config, clock)
    assert h.services.tokens == first  # the same three after a restart
    assert (await call(h, first.viewer.decode(), "GET", "/v1/status"))[0] == 200
    assert (await call(h, first.viewer.decode(), "POST", "/v1/endpoints", _ENDPOINT))[0] == 403

    await h.session.close()
    await h.server.close()
    with sqlite3.connect(tmp_path / "tillhook.db") as conn:  # as a database from before the viewer token
        conn.execute("DELETE FROM meta WHERE key = 'viewer_token'")
    conn.close()
    h = await make_harness(config, clock=clock)
    tokens = h.services.tokens
    assert (tokens.ingest, tokens.admin) == (first.ingest, first.admin)
    assert tokens.viewer.startswith(b"vwr_") and tokens.viewer != first.viewer
    assert (await call(h, tokens.viewer.decode(), "GET", "/v1/endpoints"))[0] == 200


async def restart(h: Harness, make_harness: Any, config: Any, clock: Any) -> Harness:
    await h.session.close()
    await h.server.close()  # runs the app's cleanup: the dispatcher stops, the store closes
    made: Harness = await make_harness(config, clock=clock)
    return made


async def test_no_reply_to_the_viewer_holds_a_credential(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: Any
) -> None:
    """The endpoint's signing secret, its url's password and query token, and its static
    headers' values appear in no reply the viewer token gets; the admin token still sees them."""
    receiver = await receivers()
    host = receiver.url.split("//", 1)[1]
    url = f"http://shop:pw-0123456789@{host}?token=tk-0123456789"
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    code, created = await call(
        h,
        ADMIN_TOKEN,
        "POST",
        "/v1/endpoints",
        {"name": "shop", "url": url, "headers": {"x-api-key": "key-0123456789"}},
    )
    assert code == 201, created
    assert (await call(h, INGEST_TOKEN, "POST", "/v1/events", {"type": "sale.completed", "data": {}}))[0] == 202
    assert await h.step() == 1
    (delivery,) = (await call(h, ADMIN_TOKEN, "GET", "/v1/deliveries"))[1]["data"]
    credentials = [created["secret"], "pw-0123456789", "tk-0123456789", "key-0123456789"]
    paths = [
        "/v1/status",
        "/v1/endpoints",
        "/v1/endpoints/shop",
        "/v1/deliveries",
        "/v1/events",
        "/metrics",
        f"/v1/deliveries/{delivery['id']}",
        f"/v1/events/{delivery['event_id']}",
    ]
    for path in paths:
        code, body = await call(h, VIEWER_TOKEN, "GET", path)
        assert code == 200, (path, body)
        assert not [c for c in credentials if c in json.dumps(body)], (path, body)
    shown = (await call(h, VIEWER_TOKEN, "GET", "/v1/endpoints/shop"))[1]
    assert shown["headers"] == {"x-api-key": "***"}
    assert shown["url"] == f"http://{host.split('/')[0]}/…"  # the origin only: a path or a query may hold a token
    as_admin = (await call(h, ADMIN_TOKEN, "GET", "/v1/endpoints/shop"))[1]
    assert as_admin["url"] == url and as_admin["headers"] == {"x-api-key": "key-0123456789"}
