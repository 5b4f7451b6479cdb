"""POST /v1/deliveries/retry: every failed delivery the delivery log's filters match, counted
first on a dry run, then made due now; against the real app on loopback, stepped with a fake
clock."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import make_config
from tests.integration.test_admin_api import api, create, post
from tests.support import status


@pytest.fixture
async def failing(tmp_path, receivers, make_harness, clock):
    """Two endpoints whose receivers fail (500 and 404) until told otherwise; four failed
    deliveries (two to each) and one delivered one. Fewer than five failures in a row each, so
    neither backs off."""
    shop, other = await receivers(behaviour=status(500)), await receivers(behaviour=status(404, "no such shop"))
    config = make_config(tmp_path, [], delivery={"retry_schedule": ["1m"], "give_up_after": "10m"})
    h = await make_harness(config, clock=clock)
    await create(h, shop.url, name="shop", events=["sale.*"])
    await create(h, other.url, name="other", events=["customer.*"])
    events = [await post(h, t) for t in ("sale.completed", "sale.refunded", "customer.created", "customer.updated")]
    await h.step()
    await h.step(11 * 60)
    shop.behaviour = status(200)
    delivered = await post(h, "sale.completed", n=3)
    await h.step()
    return h, shop, other, events, delivered


async def states(h, **params: Any) -> list[tuple[str, str]]:
    code, page = await api(h, "GET", "/v1/deliveries", params=params)
    assert code == 200, page
    return [(d["endpoint"], d["state"]) for d in page["data"]]


async def test_a_dry_run_counts_and_changes_nothing(failing):
    h, *_ = failing
    assert sorted(await states(h)) == [*[("other", "failed")] * 2, ("shop", "delivered"), *[("shop", "failed")] * 2]
    for body, matched in (
        ({}, 4),
        ({"endpoint": "shop"}, 2),
        ({"endpoint": "other", "type": "customer.*"}, 2),
        ({"type": "sale.*"}, 2),
        ({"status": 404}, 2),
        ({"status": 500, "type": "sale.refunded"}, 1),
        ({"since": "1h"}, 4),
        ({"until": "2026-01-01T00:00:00Z"}, 0),
    ):
        code, reply = await api(h, "POST", "/v1/deliveries/retry", {**body, "dry_run": True})
        assert code == 200 and reply == {"matched": matched, "retried": 0}, body
    assert len(await states(h, state="failed")) == 4
    assert await h.step() == 0


async def test_retry_makes_only_the_matching_failed_ones_due_now(failing):
    h, shop, _, events, delivered = failing
    code, reply = await api(h, "POST", "/v1/deliveries/retry", {"endpoint": "shop", "type": "sale.*", "status": 500})
    assert code == 200 and reply == {"matched": 2, "retried": 2}
    assert sorted(await states(h, state="pending")) == [("shop", "pending")] * 2
    shop.received.clear()
    assert await h.step() == 2
    assert sorted(shop.event_ids()) == sorted(events[:2])  # the same webhook-ids as the first time
    assert await states(h, state="failed") == [("other", "failed")] * 2
    # The delivered ones are not sent again, and a second call finds only what is left.
    code, reply = await api(h, "POST", "/v1/deliveries/retry", {})
    assert reply == {"matched": 2, "retried": 2}
    shop.received.clear()
    assert await h.step() == 2 and shop.received == []
    # Its receiver still says 404; the retry gave them a fresh give_up_after window.
    assert await states(h, endpoint="other") == [("other", "pending")] * 2
    code, page = await api(h, "GET", "/v1/deliveries", params={"status": 200})
    assert len(page["data"]) == 3 and delivered in {d["event_id"] for d in page["data"]}
    code, page = await api(h, "GET", "/v1/deliveries", params={"status": 404, "endpoint": "other"})
    assert len(page["data"]) == 2


async def test_a_disabled_endpoints_failed_deliveries_are_counted_but_stay_failed(failing):
    h, *_ = failing
    assert (await api(h, "POST", "/v1/endpoints/other/disable"))[0] == 200
    _, reply = await api(h, "POST", "/v1/deliveries/retry", {})
    assert reply == {"matched": 4, "retried": 2}
    assert await states(h, endpoint="other") == [("other", "failed")] * 2


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"state": "delivered"}, 422, "state"),
        ({"state": "pending"}, 422, "state"),
        ({"type": "a b"}, 422, "type"),
        ({"since": "tuesday"}, 422, "since"),
        ({"status": 42}, 422, "status"),
        ({"colour": "red"}, 422, "colour"),
        ({"endpoint": "nope"}, 404, None),
    ],
)
async def test_bad_filters_are_refused_and_change_nothing(failing, body, code, field):
    h, *_ = failing
    got, problem = await api(h, "POST", "/v1/deliveries/retry", body)
    assert got == code, problem
    if field is not None:
        assert [e["field"] for e in problem["errors"]] == [field]
    assert len(await states(h, state="failed")) == 4


async def test_the_route_is_documented(failing):
    h, *_ = failing
    async with h.session.get(h.server.make_url("/openapi.json")) as response:
        document = await response.json()
    operation = document["paths"]["/v1/deliveries/retry"]["post"]
    assert "200" in operation["responses"] and "requestBody" in operation
