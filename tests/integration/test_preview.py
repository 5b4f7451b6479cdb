"""POST /v1/endpoints/{id}/preview against the real app on loopback: the request it shows is
the request a real attempt sends to a real receiver (same bytes, same header names), a
filter's verdict and an expression's failure are answers, and nothing is stored or sent."""

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
from tillhook.expressions.presets import PRESETS
from tillhook.redact import MASK

# What aiohttp's client adds to every request by itself: not the endpoint's, not tillhook's.
TRANSPORT = {"host", "content-length", "accept", "accept-encoding"}
SALE = {"type": "transaction.completed", "data": {"amount": 55.39, "customer": "c_1"}}


async def api(h: Harness, method: str, path: str, body: Any = None, token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    async with h.session.request(
        method, h.server.make_url(path), json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        text = await response.text()
        if response.status >= 400:
            assert response.content_type == "application/problem+json", text
        return response.status, (json.loads(text) if text else None)


async def preview(h: Harness, name: str, body: Any, token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    return await api(h, "POST", f"/v1/endpoints/{name}/preview", body, token)


async def create(h: Harness, url: str, name: str = "shop", **fields: Any) -> dict[str, Any]:
    code, body = await api(h, "POST", "/v1/endpoints", {"name": name, "url": url, **fields})
    assert code == 201, body
    return body


async def ingest(h: Harness, event: dict[str, Any]) -> str:
    code, reply, _ = await h.post_events(event)
    assert code == 202, reply
    return str(reply["id"])


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("events", "deliveries", "attempts")
        }


@pytest.fixture
async def shop(tmp_path, receivers, make_harness, clock):
    receiver = await receivers()
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    return h, receiver, tmp_path / "tillhook.db"


async def test_the_preview_of_a_stored_event_is_the_request_a_real_attempt_sends(shop):
    h, receiver, _ = shop
    created = await create(h, receiver.url + "?key=s3cr3t", headers={"X-Api-Key": "k-123", "x-till": "3"})
    receiver.secret = created["secret"]
    event_id = await ingest(h, SALE)
    # Before the attempt, at the same moment of the fake clock: the same timestamp.
    code, shown = await preview(h, "shop", {"event_id": event_id})
    assert code == 200, shown
    await h.step()
    (sent,) = receiver.received
    assert sent.verified

    request = shown["request"]
    assert (shown["subscribed"], shown["filtered_out"], shown["error"], shown["transformed"]) == (
        True,
        False,
        None,
        False,
    )
    assert shown["event_id"] == event_id and shown["transformed_by"] is None and shown["notes"] == []
    assert request["method"] == "POST" and request["url"] == receiver.url + f"?key={MASK}"
    assert request["body_text"].encode() == sent.body  # the stored bytes, exactly
    assert request["body"] == json.loads(sent.body)
    assert {n.lower() for n in request["headers"]} == set(sent.headers) - TRANSPORT
    assert request["headers"]["X-Api-Key"] == MASK and request["headers"]["x-till"] == MASK
    for name in ("content-type", "user-agent", "webhook-id", "webhook-timestamp"):
        assert request["headers"][name] == sent.headers[name], name
    assert request["headers"]["webhook-signature"] == "v1,… (computed when sent)"
    assert "k-123" not in json.dumps(shown) and "s3cr3t" not in json.dumps(shown)


async def test_a_transform_and_the_extra_signature_as_a_real_attempt_sends_them(shop):
    h, receiver, _ = shop
    # One key a map: the CEL library gives a map's keys in no fixed order, so only then are
    # the bytes of two evaluations the same.
    await create(
        h,
        receiver.url,
        transform='{"sale": [type, data.amount, {"customer": data.customer}]}',
        extra_signature={"header": "x-hub-signature-256"},
    )
    event_id = await ingest(h, SALE)
    code, shown = await preview(h, "shop", {"event_id": event_id})
    assert code == 200, shown
    await h.step()
    (sent,) = receiver.received
    assert shown["transformed"] is True and shown["transformed_by"] == "transform"
    assert shown["request"]["body_text"].encode() == sent.body
    assert shown["request"]["body"] == {"sale": ["transaction.completed", 55.39, {"customer": "c_1"}]}
    assert {n.lower() for n in shown["request"]["headers"]} == set(sent.headers) - TRANSPORT
    assert sent.headers["x-hub-signature-256"].startswith("sha256=")
    assert shown["request"]["headers"]["x-hub-signature-256"] == "sha256=… (computed when sent)"


async def test_a_new_event_is_built_as_ingest_builds_it(shop):
    h, receiver, path = shop
    await create(h, receiver.url, events=["transaction.*"])
    event = {**SALE, "data": {"big": 123456789012345678901234567890}, "timestamp": "2026-11-22T10:30:00Z"}
    code, shown = await preview(h, "shop", {"event": event})
    assert code == 200, shown
    body = shown["request"]["body"]
    assert body["id"] == shown["event_id"] and shown["event_id"].startswith("msg_")
    assert body["type"] == "transaction.completed" and body["timestamp"] == "2026-11-22T10:30:00Z"
    assert "123456789012345678901234567890" in shown["request"]["body_text"]  # not rounded to a float
    assert shown["request"]["headers"]["webhook-id"] == shown["event_id"]
    # What ingest refuses, the preview refuses in the same words, naming the field in the body.
    code, problem = await preview(h, "shop", {"event": {"type": "no spaces", "data": {}}})
    assert code == 422 and [e["field"] for e in problem["errors"]] == ["event.type"]
    assert "dot-separated" in problem["errors"][0]["message"]
    code, problem = await preview(h, "shop", {"event": {"type": "a", "data": []}})
    assert code == 422 and [e["field"] for e in problem["errors"]] == ["event.data"]
    async with h.session.post(
        h.server.make_url("/v1/endpoints/shop/preview"),
        data=b'{"event": {"type": "a", "data": {"x": 1e400}}}',
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    ) as r:
        assert r.status == 422 and "too large" in (await r.json())["detail"]
    assert counts(path) == {"events": 0, "deliveries": 0, "attempts": 0}


async def test_a_type_it_does_not_take_is_said_in_words_and_still_shown(shop):
    h, receiver, _ = shop
    await create(h, receiver.url, events=["refund.*"])
    code, shown = await preview(h, "shop", {"event": SALE})
    assert code == 200 and shown["subscribed"] is False and shown["request"] is not None
    assert any("refund.*" in n and "transaction.completed" in n and "no delivery" in n for n in shown["notes"])


async def test_a_filter_that_leaves_the_event_out_and_one_that_keeps_it(shop):
    h, receiver, _ = shop
    await create(h, receiver.url, filter="data.amount > 100.0")
    code, shown = await preview(h, "shop", {"event": SALE})
    assert code == 200, shown
    assert shown["filtered_out"] is True and shown["request"] is None and shown["error"] is None
    assert shown["notes"] == []
    code, shown = await preview(h, "shop", {"event": {**SALE, "data": {"amount": 120.0}}})
    assert (
        code == 200
        and shown["filtered_out"] is False
        and json.loads(shown["request"]["body_text"])["data"] == {"amount": 120.0}
    )


@pytest.mark.parametrize(
    ("fields", "failed"),
    [
        ({"filter": "data.missing > 1.0"}, "filter"),
        ({"transform": '{"x": data.missing.deeper}'}, "transform"),
    ],
)
async def test_an_expression_that_fails_is_a_200_with_the_error_in_words(shop, fields, failed):
    h, receiver, _ = shop
    await create(h, receiver.url, **fields)
    code, shown = await preview(h, "shop", {"event": SALE})
    assert code == 200, shown
    assert shown["request"] is None and shown["filtered_out"] is False
    assert isinstance(shown["error"], str) and failed in shown["error"]
    assert shown["notes"]  # what a real event would meet: a delivery that fails until fixed


async def test_a_preset_is_applied_and_a_transform_wins_over_it(shop, monkeypatch):
    h, receiver, _ = shop
    # The presets' own content is tested with them; here only that an endpoint's preset is used.
    monkeypatch.setitem(PRESETS, "slack", '{"text": "got " + type}')
    await create(h, receiver.url, preset="slack")
    code, shown = await preview(h, "shop", {"event": SALE})
    assert code == 200 and shown["transformed_by"] == "preset:slack"
    assert shown["request"]["body"] == {"text": "got transaction.completed"}
    await api(h, "PATCH", "/v1/endpoints/shop", {"transform": '{"mine": true}'})
    code, shown = await preview(h, "shop", {"event": SALE})
    assert shown["transformed_by"] == "transform" and shown["request"]["body"] == {"mine": True}


async def test_bad_bodies_unknown_ids_and_the_wrong_tokens(shop):
    h, receiver, path = shop
    await create(h, receiver.url)
    stored = await ingest(h, SALE)
    for body in ({"event": SALE, "event_id": stored}, {}, {"event": None, "event_id": None}):
        code, problem = await preview(h, "shop", body)
        assert code == 422 and "event_id" in problem["detail"], body
    code, problem = await preview(h, "shop", {"event": SALE, "colour": "red"})
    assert code == 422 and [e["field"] for e in problem["errors"]] == ["colour"]
    code, problem = await preview(h, "shop", {"event_id": "msg_nope"})
    assert code == 404 and "msg_nope" in problem["detail"]
    assert (await preview(h, "nope", {"event": SALE}))[0] == 404
    assert (await preview(h, "shop", [SALE]))[0] == 422
    async with h.session.post(
        h.server.make_url("/v1/endpoints/shop/preview"),
        data=b"{nope",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    ) as r:
        assert r.status == 400
    code, problem = await preview(h, "shop", {"event": SALE}, token=INGEST_TOKEN)
    assert code == 403 and "admin token" in problem["detail"]
    assert (await preview(h, "shop", {"event": SALE}, token=VIEWER_TOKEN))[0] == 200  # it changes nothing
    assert counts(path) == {"events": 1, "deliveries": 1, "attempts": 0}


async def test_a_preview_stores_nothing_sends_nothing_and_has_its_own_sandbox(shop):
    h, receiver, path = shop
    await create(h, receiver.url, filter="data.amount > 1.0", transform='{"t": data.amount}')
    stored = await ingest(h, SALE)
    await h.step()
    before = counts(path)
    assert h.services.preview_sandbox.made is None  # made at the first preview only
    for body in ({"event": SALE}, {"event_id": stored}, {"event": {**SALE, "data": {"amount": 0.5}}}):
        assert (await preview(h, "shop", body))[0] == 200
    assert await h.step(3600) == 0  # nothing became due either
    assert counts(path) == before and len(receiver.received) == 1
    made = h.services.preview_sandbox.made
    assert made is not None and made is not h.services.sandbox and made is not h.services.delivery_sandbox
    _, events = await api(h, "GET", "/v1/events")
    assert [e["id"] for e in events["data"]] == [stored]
