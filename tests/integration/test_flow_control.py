"""Ordered delivery and rate limits, stepped with a fake clock: what the status says, the
endpoint-wide pause on Retry-After, the head that finally fails, and changes through the API."""

from __future__ import annotations

import json

from aiohttp import web

from tests.integration.conftest import ADMIN_TOKEN, make_config
from tests.support import PeakInFlight, deliveries_of


async def get(h, path: str):
    async with h.session.get(h.server.make_url(path), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        return await r.json()


async def patch(h, path: str, body):
    async with h.session.patch(
        h.server.make_url(path),
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    ) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def post_many(h, n: int) -> list[str]:
    code, reply, _ = await h.post_events([{"type": "sale.completed", "data": {"n": i}} for i in range(n)])
    assert code == 202
    return [r["id"] for r in reply]


def failing(event_index_of, bad: int, times: int):
    """Answers 500 for the `bad`-th event (0-based) the first `times` times it arrives."""
    seen: dict[str, int] = {}

    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        event_id = request.headers["webhook-id"]
        seen[event_id] = seen.get(event_id, 0) + 1
        if event_index_of(event_id) == bad and seen[event_id] <= times:
            return web.Response(status=500, text="ledger locked")
        return web.Response(text="ok")

    return answer


async def test_status_names_the_event_holding_an_ordered_endpoint_back(tmp_path, receivers, make_harness, clock):
    ids: list[str] = []
    receiver = await receivers()
    receiver.behaviour = failing(lambda i: ids.index(i), bad=2, times=2)
    config = make_config(tmp_path, [{"name": "ledger", "url": receiver.url, "ordered": True}])
    h = await make_harness(config, clock=clock)
    ids += await post_many(h, 6)
    for _ in range(3):
        await h.step()
    (ledger,) = (await get(h, "/v1/status"))["endpoints"]
    assert ledger["ordered"] is True and ledger["blocked_by"] == ids[2] and ledger["blocked_reason"] == "HTTP 500"
    assert ledger["pending"] == 4  # the head and the three behind it
    for _ in range(10):
        await h.step(advance_s=70)
    assert [r.event_id for r in receiver.received] == [ids[0], ids[1], ids[2], ids[2], *ids[2:]]
    (ledger,) = (await get(h, "/v1/status"))["endpoints"]
    assert ledger["blocked_by"] is None and ledger["pending"] == 0


async def test_when_the_head_finally_fails_the_next_one_goes(tmp_path, receivers, make_harness, clock):
    ids: list[str] = []
    receiver = await receivers()
    receiver.behaviour = failing(lambda i: ids.index(i), bad=0, times=1000)
    config = make_config(
        tmp_path,
        [{"name": "ledger", "url": receiver.url, "ordered": True}],
        delivery={"retry_schedule": ["1m"], "give_up_after": "5m"},
    )
    h = await make_harness(config, clock=clock)
    ids += await post_many(h, 3)
    for _ in range(12):
        await h.step(advance_s=61)
    delivered = [r.event_id for r in receiver.received if r.event_id != ids[0]]
    assert delivered == ids[1:]
    (row,) = await deliveries_of(h.services.store, ids[0])
    assert row.state == "failed"


async def test_retry_after_pauses_the_whole_endpoint(tmp_path, receivers, make_harness, clock):
    receiver = await receivers()

    async def first_says_wait(request: web.Request, n: int) -> web.StreamResponse:
        if n == 1:
            return web.Response(status=429, headers={"Retry-After": "30"})
        return web.Response(text="ok")

    receiver.behaviour = first_says_wait
    other = await receivers()
    config = make_config(
        tmp_path, [{"name": "busy", "url": receiver.url, "max_in_flight": 1}, {"name": "other", "url": other.url}]
    )
    h = await make_harness(config, clock=clock)
    await post_many(h, 4)
    assert await h.step() == 1 + 4  # busy answers its one with 429 Retry-After: 30
    busy = next(e for e in (await get(h, "/v1/status"))["endpoints"] if e["name"] == "busy")
    assert busy["paused_until"] is not None
    while await h.step():  # the other endpoint goes on; busy sends nothing
        pass
    assert len(receiver.received) == 1 and len(other.received) == 4
    assert await h.step(advance_s=29) == 0
    await h.step(advance_s=2)
    while await h.step():
        pass
    assert len(receiver.received) == 5  # the paused one again, and the three that waited


async def test_rate_limit_and_ordered_can_be_changed_through_the_api(tmp_path, receivers, make_harness, clock):
    receiver = await receivers()
    config = make_config(tmp_path, [])
    h = await make_harness(config, clock=clock)
    async with h.session.post(
        h.server.make_url("/v1/endpoints"),
        data=json.dumps({"name": "pos", "url": receiver.url, "rate_limit": 3, "max_in_flight": 50}),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 201
    ids = await post_many(h, 20)
    assert await h.step() == 3  # a burst of three
    await patch(h, "/v1/endpoints/pos", {"rate_limit": 10})
    assert await h.step(advance_s=1.0) == 10
    await patch(h, "/v1/endpoints/pos", {"ordered": True})
    receiver.behaviour = peak = PeakInFlight(h.gates)
    assert await h.step(advance_s=1.0) == 7  # the rest, one after the other
    assert peak.peak == 1
    assert receiver.event_ids()[-7:] == ids[-7:]  # in order
    assert (await get(h, "/v1/endpoints/pos"))["ordered"] is True
