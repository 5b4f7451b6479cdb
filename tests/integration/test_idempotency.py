"""Idempotency keys through the real app (CONTRACT section 4): a repeat with the same content
gets the original event back; the key reused with other content is refused and stores nothing."""

from __future__ import annotations

import pytest

from tests.integration.conftest import make_config

PROBLEM = "application/problem+json"
REUSED = "urn:tillhook:problem:idempotency-key-reused"


@pytest.fixture
async def h(tmp_path, make_harness, clock):
    config = make_config(tmp_path, [{"name": "all", "url": "http://127.0.0.1:9/b"}])
    return await make_harness(config, clock=clock)


async def stored(h) -> int:
    return sum((await h.services.store.count_by_state()).values())


ORIGINAL = {"type": "sale.completed", "data": {"amount": 50.0, "lines": [1, 2]}, "timestamp": "2026-11-22T10:30:00Z"}


@pytest.mark.parametrize(
    "repeat",
    [
        ORIGINAL,
        # The same content, written otherwise: keys in another order, the time in another zone.
        {"timestamp": "2026-11-22T11:30:00+01:00", "data": {"lines": [1, 2], "amount": 50.0}, "type": "sale.completed"},
    ],
)
async def test_a_repeat_with_the_same_content_returns_the_original(h, repeat):
    code, first, _ = await h.post_events({**ORIGINAL, "id": "pos-1"})
    assert code == 202
    code, again, _ = await h.post_events({**repeat, "id": "pos-1"})
    assert code == 202 and again == {**first, "duplicate": True}
    assert await stored(h) == 1


@pytest.mark.parametrize(
    "other",
    [
        {**ORIGINAL, "data": {"amount": 51.0, "lines": [1, 2]}},
        {**ORIGINAL, "data": {"amount": 50, "lines": [1, 2]}},  # 50 is not 50.0 to a receiver's parser
        {**ORIGINAL, "type": "sale.refunded"},
        {**ORIGINAL, "timestamp": "2026-11-22T10:30:01Z"},
        {"type": ORIGINAL["type"], "data": ORIGINAL["data"]},  # the original gave a timestamp, this does not
    ],
)
async def test_the_key_reused_with_other_content_is_422_and_stores_nothing(h, other):
    code, first, _ = await h.post_events({**ORIGINAL, "id": "pos-1"})
    assert code == 202
    code, problem, response = await h.post_events({**other, "id": "pos-1"})
    assert code == 422 and response.content_type == PROBLEM
    assert problem["type"] == REUSED and problem["status"] == 422
    assert "'pos-1'" in problem["detail"] and first["id"] in problem["detail"] and "new key" in problem["detail"]
    assert "nothing was stored" in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == ["id"]
    assert await stored(h) == 1


async def test_a_timestamp_given_on_the_repeat_only_is_other_content(h):
    await h.post_events({"type": "a.b", "data": {}, "id": "pos-1"})
    code, problem, _ = await h.post_events(
        {"type": "a.b", "data": {}, "id": "pos-1", "timestamp": "2026-11-22T10:30:00Z"}
    )
    assert code == 422 and problem["type"] == REUSED


async def test_the_idempotency_header_is_held_to_the_same_rule(h):
    headers = {"Idempotency-Key": "till-7"}
    code, first, _ = await h.post_events({"type": "a.b", "data": {"n": 1}}, headers=headers)
    assert (await h.post_events({"type": "a.b", "data": {"n": 1}}, headers=headers))[1]["duplicate"] is True
    code, problem, _ = await h.post_events({"type": "a.b", "data": {"n": 2}}, headers=headers)
    assert code == 422 and problem["type"] == REUSED and first["id"] in problem["detail"]


async def test_a_batch_holding_a_reused_key_is_refused_whole_naming_its_index(h):
    code, first, _ = await h.post_events({"type": "a.b", "data": {"n": 0}, "id": "k-0"})
    batch = [{"type": "a.b", "data": {"n": i}, "id": f"new-{i}"} for i in range(5)]
    batch[3] = {"type": "a.b", "data": {"n": 99}, "id": "k-0"}
    code, problem, _ = await h.post_events(batch)
    assert code == 422 and problem["type"] == REUSED
    assert [e["field"] for e in problem["errors"]] == ["[3].id"]
    assert first["id"] in problem["errors"][0]["message"]
    assert await stored(h) == 1  # all or nothing: none of the four new events either
    # The batch's new keys were not used up by the refusal: sent again without the reuse, they go in.
    del batch[3]
    code, reply, _ = await h.post_events(batch)
    assert code == 202 and [r["duplicate"] for r in reply] == [False] * 4
    assert await stored(h) == 5


async def test_one_key_with_two_contents_in_one_batch_is_refused(h):
    batch = [
        {"type": "a.b", "data": {"n": 1}, "id": "twice"},
        {"type": "a.b", "data": {}},
        {"type": "a.b", "data": {"n": 2}, "id": "twice"},
    ]
    code, problem, _ = await h.post_events(batch)
    assert code == 422 and problem["type"] == REUSED
    assert problem["errors"][0]["field"] == "[2].id" and "[0]" in problem["errors"][0]["message"]
    assert await stored(h) == 0
