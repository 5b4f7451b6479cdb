"""POST /v1/events through a real app on loopback: statuses of CONTRACT section 4."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from tests.integration.conftest import ADMIN_TOKEN, make_config
from tests.support import deliveries_of, on_writer

PROBLEM = "application/problem+json"


@pytest.fixture
async def h(tmp_path, make_harness, clock):
    config = make_config(
        tmp_path,
        [
            {"name": "sales", "url": "http://127.0.0.1:9/a", "events": ["transaction.*"]},
            {"name": "all", "url": "http://127.0.0.1:9/b"},
        ],
        server={"max_body_bytes": 4096},
    )
    return await make_harness(config, clock=clock)


async def counts(h) -> dict[str, int]:
    return await h.services.store.count_by_state()


async def test_single_event_is_accepted_with_its_deliveries(h):
    code, reply, response = await h.post_events({"type": "transaction.completed", "data": {"amount": 50.0}})
    assert code == 202
    assert reply["id"].startswith("msg_") and len(reply["id"]) == 30
    assert reply == {"id": reply["id"], "type": "transaction.completed", "deliveries": 2, "duplicate": False}
    assert await counts(h) == {"pending": 2}
    code, reply, _ = await h.post_events({"type": "customer.created", "data": {}})
    assert reply["deliveries"] == 1


async def test_batch_is_accepted_as_an_array(h):
    batch = [{"type": "transaction.completed", "data": {"n": i}} for i in range(10)]
    code, reply, _ = await h.post_events(batch)
    assert code == 202 and len(reply) == 10
    assert len({r["id"] for r in reply}) == 10
    assert await counts(h) == {"pending": 20}


async def test_idempotency_key_in_body_and_header(h):
    first = await h.post_events({"type": "customer.created", "data": {}, "id": "pos-1"})
    again = await h.post_events({"type": "customer.created", "data": {}, "id": "pos-1"})
    assert first[0] == again[0] == 202
    assert again[1] == {**first[1], "duplicate": True}
    by_header = await h.post_events({"type": "customer.created", "data": {}}, headers={"Idempotency-Key": "pos-2"})
    header_again = await h.post_events({"type": "customer.created", "data": {}}, headers={"Idempotency-Key": "pos-2"})
    assert header_again[1]["id"] == by_header[1]["id"] and header_again[1]["duplicate"] is True
    # Same key twice within one batch: the second is the duplicate of the first.
    code, reply, _ = await h.post_events(
        [{"type": "a.b", "data": {}, "id": "pos-3"}, {"type": "a.b", "data": {}, "id": "pos-3"}]
    )
    assert [r["duplicate"] for r in reply] == [False, True] and reply[0]["id"] == reply[1]["id"]
    assert await counts(h) == {"pending": 3}


async def test_timestamp_is_kept_in_utc_and_defaults_to_receipt(h):
    code, reply, _ = await h.post_events({"type": "a.b", "data": {}, "timestamp": "2026-11-22T11:30:00+01:00"})
    assert code == 202
    deliveries = await deliveries_of(h.services.store, reply["id"])
    assert len(deliveries) == 1


@pytest.mark.parametrize(
    ("token", "path", "status", "slug"),
    [
        (None, "/v1/events", 401, "unauthorized"),
        ("not-a-token", "/v1/events", 401, "unauthorized"),
        ("ingest-token-for-tests-0001", "/v1/endpoints", 403, "forbidden"),
    ],
)
async def test_auth(h, token, path, status, slug):
    code, reply, response = await h.post_events({"type": "a", "data": {}}, token=token, path=path)
    assert code == status
    assert response.content_type == PROBLEM
    assert reply["type"].endswith(slug) and reply["detail"]
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_admin_token_may_post_events(h):
    code, _, _ = await h.post_events({"type": "a", "data": {}}, token=ADMIN_TOKEN)
    assert code == 202


@pytest.mark.parametrize(
    ("raw", "headers", "status", "detail_part"),
    [
        (b'{"type": "a", "data": {}', {}, 400, "not valid JSON"),
        (b'{"type": "a", "data": {"x": NaN}}', {}, 400, "NaN"),
        (b'{"type": "a", "data": {"x": "\xff"}}', {}, 400, "UTF-8"),
        (b'{"type": "a", "data": {}}', {"Content-Type": "text/plain"}, 415, "application/json"),
        (b"x" * 5000, {}, 413, "max_body_bytes"),
        (b'{"data": {}}', {}, 422, "type: is required"),
        (b'{"type": "bad type!", "data": {}}', {}, 422, "type"),
        (b'{"type": "a", "data": []}', {}, 422, "data"),
        (b'{"type": "a", "data": {}, "colour": 1}', {}, 422, "unknown field"),
        (b'{"type": "a", "data": {}, "timestamp": "yesterday"}', {}, 422, "RFC 3339"),
        (b'{"type": "a", "data": ' + b'{"x": ' * 40 + b"1" + b"}" * 41, {}, 422, "deeper than 32"),
        (b"[]", {}, 422, "1 to 1000"),
        (b'"hello"', {}, 422, "one event"),
        (b'[{"type": "a", "data": {}}]', {"Idempotency-Key": "k"}, 422, "Idempotency-Key"),
        (b'{"type": "a", "data": {"x": 1e-999999}}', {}, 422, "the number 1e-999999 is too small to deliver exactly"),
        (b'{"type": "a", "data": {"x": 1e999999}}', {}, 422, "too large to deliver exactly"),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(h, raw, headers, status, detail_part):
    code, reply, response = await h.post_events(raw=raw, headers=headers)
    assert code == status, reply
    assert response.content_type == PROBLEM
    assert reply["status"] == status and detail_part in reply["detail"]
    assert await counts(h) == {}


async def test_an_integer_beyond_the_digit_limit_is_422_not_malformed(tmp_path, make_harness, clock):
    h = await make_harness(make_config(tmp_path, [{"name": "all", "url": "http://127.0.0.1:9/b"}]), clock=clock)
    digits = sys.get_int_max_str_digits()
    code, reply, _ = await h.post_events(raw=b'{"type": "a", "data": {"n": %s}}' % (b"9" * (digits + 1)))
    assert code == 422 and reply["type"] == "urn:tillhook:problem:invalid-event"
    assert f"integers of more than {digits} digits are not accepted" in reply["detail"]
    code, reply, _ = await h.post_events(raw=b'{"type": "a", "data": {"n": %s}}' % (b"9" * digits))
    assert code == 202 and reply["deliveries"] == 1


async def test_a_batch_with_one_bad_event_stores_nothing(h):
    batch = [{"type": "a", "data": {}} for _ in range(5)]
    batch[3] = {"type": "a"}
    code, reply, _ = await h.post_events(batch)
    assert code == 422
    assert reply["errors"] == [{"field": "[3].data", "message": "is required"}]
    assert await counts(h) == {}


async def test_concurrent_requests_share_commits(h):
    before, _ = h.services.store.commit_stats
    replies = await asyncio.gather(*(h.post_events({"type": "a.b", "data": {"n": i}}) for i in range(200)))
    assert all(code == 202 for code, _, _ in replies)
    after, _ = h.services.store.commit_stats
    assert await counts(h) == {"pending": 200}
    # Group commit: 200 acknowledged requests needed far fewer than 200 transactions.
    assert after - before < 100


async def test_storage_full_is_503_and_recovers(h):
    store = h.services.store

    def cap(conn, pages=None):
        (count,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages or count}")

    await on_writer(store, cap)  # the database may not grow: SQLite answers "database or disk is full"
    big = {"type": "a.b", "data": {"blob": "x" * 3000}}
    replies = [await h.post_events(big) for _ in range(5)]
    refused = [reply for code, reply, _ in replies if code == 503]
    assert refused, "a full database must refuse ingest with 503"
    assert "full" in refused[0]["detail"] and "nothing was stored" in refused[0]["detail"]
    accepted_while_full = sum(1 for code, _, _ in replies if code == 202)
    await on_writer(store, lambda conn: cap(conn, pages=1_000_000))
    code, _, _ = await h.post_events(big)
    assert code == 202
    assert await counts(h) == {"pending": accepted_while_full + 1}  # "a.b" matches one endpoint


async def test_unknown_route_is_a_problem(h):
    async with h.session.get(h.server.make_url("/nope"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        assert r.status == 404 and r.content_type == PROBLEM
        assert "no route" in json.loads(await r.text())["detail"]


async def test_healthz_needs_no_token(tmp_path, make_harness):
    config = make_config(tmp_path, [])
    live = await make_harness(config)  # real clock, dispatcher running
    async with live.session.get(live.server.make_url("/healthz")) as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_healthz_is_503_when_the_loop_stops_ticking(tmp_path, make_harness, clock):
    h = await make_harness(make_config(tmp_path, []), clock=clock)  # the loop never runs
    async with h.session.get(h.server.make_url("/healthz")) as response:
        assert response.status == 200
    clock.advance(11)
    async with h.session.get(h.server.make_url("/healthz")) as response:
        assert response.status == 503
        assert "has not ticked" in (await response.json(content_type=None))["detail"]


async def test_a_read_only_database_gives_503s_with_a_clear_detail_and_recovers(tmp_path, make_harness):
    h = await make_harness(make_config(tmp_path, []))
    store = h.services.store

    def query_only(conn, on: bool = True):
        conn.execute(f"PRAGMA query_only = {int(on)}")

    await on_writer(store, query_only)
    code, problem, response = await h.post_events({"type": "sale.completed", "data": {}})
    assert code == 503 and "read-only" in problem["detail"] and response.headers["Retry-After"]
    async with h.session.get(h.server.make_url("/healthz")) as r:
        assert r.status == 503 and "read-only" in (await r.json(content_type=None))["detail"]
    await on_writer(store, lambda conn: query_only(conn, False))
    code, _, _ = await h.post_events({"type": "sale.completed", "data": {}})
    assert code == 202
    import sqlite3

    with sqlite3.connect(tmp_path / "tillhook.db") as conn:  # only the accepted one is stored
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1


@pytest.mark.parametrize(
    "event_type",
    ["tillhook.endpoint.failing", "tillhook.ping", "tillhook", "Tillhook.endpoint.failing", "TILLHOOK.ping"],
)
async def test_tillhooks_own_types_are_refused_from_the_pos(h, event_type: str) -> None:
    """An alert goes to the shop's chat: nobody posting events may make one up."""
    code, problem, _ = await h.post_events([{"type": "sale.completed", "data": {}}, {"type": event_type, "data": {}}])
    assert code == 422, problem
    (error,) = problem["errors"]
    assert error["field"] == "[1].type" and "tillhook's own" in error["message"], error
    assert sum((await counts(h)).values()) == 0  # all or nothing: the valid one was not stored either
    code, problem, _ = await h.post_events({"type": "tillhooks.sale", "data": {}})
    assert code == 202, problem  # only the segment tillhook itself is reserved
