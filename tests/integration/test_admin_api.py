"""The admin API route by route, against the real app on loopback, stepped with a fake clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import ADMIN_TOKEN, make_config
from tests.support import status
from tillhook.rules import new_secret


async def api(
    h,
    method: str,
    path: str,
    body: Any = None,
    *,
    params: dict[str, Any] | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    data = None
    if raw is not None or body is not None:
        headers["Content-Type"] = content_type
        data = raw if raw is not None else json.dumps(body).encode()
    async with h.session.request(method, h.server.make_url(path), data=data, headers=headers, params=params) as r:
        text = await r.text()
        if r.status >= 400:
            assert r.content_type == "application/problem+json", text
        return r.status, (json.loads(text) if text else None)


async def post(h, event_type: str = "sale.completed", **data: Any) -> str:
    code, reply, _ = await h.post_events({"type": event_type, "data": data})
    assert code == 202, reply
    return reply["id"]


@pytest.fixture
async def admin(tmp_path, receivers, make_harness, clock):
    """A daemon with one config-managed endpoint and a receiver for endpoints made by the API."""
    receiver = await receivers()
    config = make_config(
        tmp_path,
        [{"name": "from-file", "url": receiver.url, "events": ["config.*"]}],
        delivery={"retry_schedule": ["1m"], "give_up_after": "10m"},
    )
    h = await make_harness(config, clock=clock)
    return h, receiver


async def create(h, url: str, name: str = "shop", **fields: Any) -> dict[str, Any]:
    code, body = await api(h, "POST", "/v1/endpoints", {"name": name, "url": url, **fields})
    assert code == 201, body
    return body


async def test_create_shows_the_secret_once_then_lists_and_finds_by_id_or_name(admin):
    h, receiver = admin
    created = await create(h, receiver.url, events=["sale.*"], max_in_flight=2, headers={"x-shop": "7"})
    assert created["secret"].startswith("whsec_") and created["state"] == "healthy"
    for ref in (created["id"], "shop"):
        code, shown = await api(h, "GET", f"/v1/endpoints/{ref}")
        assert code == 200 and shown["id"] == created["id"] and "secret" not in shown
        assert shown["events"] == ["sale.*"] and shown["max_in_flight"] == 2 and shown["headers"] == {"x-shop": "7"}
    code, listed = await api(h, "GET", "/v1/endpoints")
    assert [e["name"] for e in listed["data"]] == ["from-file", "shop"]
    assert listed["data"][0]["config_managed"] is True and listed["data"][1]["config_managed"] is False
    # It takes deliveries at once, signed with the secret shown.
    receiver.secret = created["secret"]
    event_id = await post(h)
    await h.step()
    assert [r.event_id for r in receiver.received if r.verified] == [event_id]
    assert receiver.received[0].headers["x-shop"] == "7"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "bad name", "url": "https://x.example"}, ["name"]),
        ({"name": "ok", "url": "ftp://x.example"}, ["url"]),
        ({"name": "ok", "url": "https://x.example", "events": ["no spaces"]}, ["events"]),
        ({"name": "ok", "url": "https://x.example", "secret": "plain"}, ["secret"]),
        ({"name": "ok", "url": "https://x.example", "headers": {"webhook-id": "x"}}, ["headers"]),
        ({"name": "ok", "url": "https://x.example", "max_in_flight": 0, "colour": "red"}, ["max_in_flight", "colour"]),
        ({"url": "https://x.example"}, ["name"]),
    ],
)
async def test_create_names_each_bad_field(admin, body, fields):
    h, _ = admin
    code, problem = await api(h, "POST", "/v1/endpoints", body)
    assert code == 422
    assert sorted(e["field"] for e in problem["errors"]) == sorted(fields)
    assert (await api(h, "GET", "/v1/endpoints"))[1]["data"][-1]["name"] == "from-file"  # nothing created


async def test_bad_bodies_and_unknown_ids(admin):
    h, receiver = admin
    assert (await api(h, "POST", "/v1/endpoints", raw=b"{nope"))[0] == 400
    assert (await api(h, "POST", "/v1/endpoints", raw=b"name=x", content_type="text/plain"))[0] == 415
    assert (await api(h, "POST", "/v1/endpoints", [1, 2]))[0] == 422
    await create(h, receiver.url)
    code, problem = await api(h, "POST", "/v1/endpoints", {"name": "shop", "url": receiver.url})
    assert code == 409 and "shop" in problem["detail"]
    for method, path in [
        ("GET", "/v1/endpoints/nope"),
        ("PATCH", "/v1/endpoints/nope"),
        ("DELETE", "/v1/endpoints/nope"),
        ("POST", "/v1/endpoints/nope/enable"),
        ("GET", "/v1/deliveries/999"),
        ("GET", "/v1/deliveries/abc"),
        ("POST", "/v1/deliveries/999/retry"),
        # Digits to str.isdigit() but not to int(): an id is ASCII digits.
        ("GET", "/v1/deliveries/%C2%B2"),
        ("POST", "/v1/deliveries/%C2%B2/retry"),
        ("GET", "/v1/events/msg_nope"),
    ]:
        code, problem = await api(h, method, path, {} if method == "PATCH" else None)
        assert code == 404, (method, path, problem)


async def test_update_changes_fields_and_refuses_conflicts_and_config_endpoints(admin):
    h, receiver = admin
    created = await create(h, receiver.url)
    await create(h, receiver.url, name="other", events=["other.*"])
    code, updated = await api(
        h, "PATCH", "/v1/endpoints/shop", {"events": ["customer.*"], "rate_limit": 5, "name": "shop2"}
    )
    assert code == 200 and updated["events"] == ["customer.*"] and updated["rate_limit"] == 5
    assert updated["name"] == "shop2" and updated["id"] == created["id"]
    assert (await api(h, "PATCH", "/v1/endpoints/shop2", {"name": "other"}))[0] == 409
    assert (await api(h, "PATCH", "/v1/endpoints/shop2", {"url": "nope"}))[0] == 422
    assert (await api(h, "PATCH", "/v1/endpoints/shop2", {"secret": new_secret()}))[0] == 422
    for method, path, body in [
        ("PATCH", "/v1/endpoints/from-file", {"url": receiver.url}),
        ("DELETE", "/v1/endpoints/from-file", None),
    ]:
        code, problem = await api(h, method, path, body)
        assert code == 409 and problem["type"].endswith("config-managed") and "config file" in problem["detail"]
    # The change is live: customer events now go to it, sale events no longer do.
    await post(h, "sale.completed")
    customer = await post(h, "customer.created")
    await h.step()
    assert [r.event_id for r in receiver.received] == [customer]


async def test_delete_cancels_pending_deliveries_and_keeps_them_in_the_log(admin):
    h, receiver = admin
    receiver.behaviour = status(500)
    created = await create(h, receiver.url)
    first = await post(h)
    await h.step()  # one failed attempt: pending, due later
    await post(h)
    code, _ = await api(h, "DELETE", "/v1/endpoints/shop")
    assert code == 204
    assert (await api(h, "GET", "/v1/endpoints/shop"))[0] == 404
    code, log = await api(h, "GET", "/v1/deliveries", params={"endpoint": created["id"]})
    assert [d["state"] for d in log["data"]] == ["cancelled", "cancelled"]
    assert log["data"][1]["event_id"] == first and log["data"][1]["attempts"] == 1
    assert "deleted" in log["data"][1]["endpoint"]
    assert await h.step(3600) == 0  # nothing is tried again
    await create(h, receiver.url)  # the name is free again


async def test_disable_holds_and_enable_resumes(admin):
    h, receiver = admin
    await create(h, receiver.url, max_in_flight=1)
    waiting = await post(h)
    code, disabled = await api(h, "POST", "/v1/endpoints/shop/disable")
    assert code == 200 and disabled["state"] == "disabled" and disabled["enabled"] is False
    code, reply, _ = await h.post_events({"type": "sale.completed", "data": {}})
    assert reply["deliveries"] == 1  # held while disabled, not dropped
    assert await h.step() == 0 and receiver.received == []
    assert (await api(h, "POST", "/v1/endpoints/shop/test"))[0] == 409
    code, enabled = await api(h, "POST", "/v1/endpoints/shop/enable")
    assert code == 200 and enabled["state"] == "healthy" and enabled["disabled_reason"] is None
    assert await h.step() == 2
    assert receiver.event_ids() == [waiting, reply["id"]]


async def test_rotation_signs_with_both_secrets_during_the_grace_period_only(admin, receivers):
    h, receiver = admin
    created = await create(h, receiver.url)
    old_secret = created["secret"]
    code, rotated = await api(h, "POST", "/v1/endpoints/shop/rotate-secret", {"grace": "30s"})
    assert code == 200 and rotated["secret"] != old_secret and rotated["previous_secret_expires_at"]
    new_secret_value = rotated["secret"]
    old_side = await receivers(secret=old_secret)
    new_side = await receivers(secret=new_secret_value)

    async def deliver_to(verifier) -> dict[str, str]:
        receiver.received.clear()
        await post(h)
        await h.step()
        (got,) = receiver.received
        verifier.received.clear()
        # Replay the exact request to a receiver that knows only one of the secrets.
        async with h.session.post(
            verifier.url,
            data=got.body,
            headers={
                k: got.headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type")
            },
        ) as response:
            assert response.status == 200
        return {"signatures": got.headers["webhook-signature"], "verified": verifier.received[0].verified}

    during_old, during_new = await deliver_to(old_side), await deliver_to(new_side)
    assert len(during_old["signatures"].split(" ")) == 2
    assert during_old["verified"] and during_new["verified"]
    h.clock.advance(31)
    after_old, after_new = await deliver_to(old_side), await deliver_to(new_side)
    assert len(after_old["signatures"].split(" ")) == 1
    assert not after_old["verified"] and after_new["verified"]
    assert (await api(h, "GET", "/v1/endpoints/shop"))[1]["previous_secret_expires_at"] is None


async def test_rotation_validates_its_body(admin):
    h, receiver = admin
    await create(h, receiver.url)
    assert (await api(h, "POST", "/v1/endpoints/shop/rotate-secret", {"grace": "forever"}))[0] == 422
    assert (await api(h, "POST", "/v1/endpoints/shop/rotate-secret", {"secret": "x"}))[0] == 422
    code, body = await api(h, "POST", "/v1/endpoints/shop/rotate-secret", {"grace": "0s"})
    assert code == 200 and body["previous_secret_expires_at"] is None


async def test_test_sends_a_ping_to_that_endpoint_only(admin, receivers):
    h, receiver = admin
    bystander = await receivers()
    await create(h, receiver.url, events=["sale.*"])
    await create(h, bystander.url, name="bystander")
    code, ping = await api(h, "POST", "/v1/endpoints/shop/test")
    assert code == 202
    await h.step()
    (got,) = receiver.received
    assert got.event_id == ping["event_id"] and json.loads(got.body)["type"] == "tillhook.ping"
    assert bystander.received == []
    code, delivery = await api(h, "GET", f"/v1/deliveries/{ping['delivery_id']}")
    assert delivery["state"] == "delivered" and delivery["event_type"] == "tillhook.ping"


async def test_replay_of_failed_events_and_of_all(admin):
    h, receiver = admin
    receiver.behaviour = status(500)
    await create(h, receiver.url)
    failed = await post(h, n=1)
    await h.step()
    await h.step(11 * 60)  # past give_up_after: failed
    code, log = await api(h, "GET", "/v1/deliveries", params={"state": "failed"})
    assert [d["event_id"] for d in log["data"]] == [failed]
    receiver.behaviour = status(200)
    ok = await post(h, n=2)
    await h.step()

    code, replayed = await api(h, "POST", "/v1/endpoints/shop/replay", {"since": "1h"})
    assert code == 202 and replayed["deliveries"] == 1  # only_failed is the default
    receiver.received.clear()
    await h.step()
    assert receiver.event_ids() == [failed]
    code, replayed = await api(h, "POST", "/v1/endpoints/shop/replay", {"since": "1h", "only_failed": False})
    assert replayed["deliveries"] == 2
    receiver.received.clear()
    await h.step()
    assert sorted(receiver.event_ids()) == sorted([failed, ok])  # the same webhook-id as the first time
    code, problem = await api(h, "POST", "/v1/endpoints/shop/replay", {"since": "1h", "until": "2h"})
    assert code == 422 and problem["errors"][0]["field"] == "until"
    assert (await api(h, "POST", "/v1/endpoints/shop/replay", {"since": "yesterday"}))[0] == 422


async def test_retry_makes_a_failed_delivery_pending_and_sends_it_now(admin):
    h, receiver = admin
    receiver.behaviour = status(500)
    await create(h, receiver.url)
    await post(h)
    await h.step()
    await h.step(11 * 60)
    (delivery,) = (await api(h, "GET", "/v1/deliveries"))[1]["data"]
    assert delivery["state"] == "failed"
    receiver.behaviour = status(200)
    code, retried = await api(h, "POST", f"/v1/deliveries/{delivery['id']}/retry")
    assert code == 202 and retried["state"] == "pending"
    assert await h.step() == 1
    code, detail = await api(h, "GET", f"/v1/deliveries/{delivery['id']}")
    assert detail["state"] == "delivered"
    assert [a["status"] for a in detail["attempt_log"]] == [500, 500, 200]
    assert detail["attempt_log"][0]["outcome"] == "retry" and detail["attempt_log"][0]["duration_ms"] >= 0


async def test_delivery_detail_shows_every_attempt(admin):
    h, receiver = admin
    receiver.behaviour = status(503, "busy, come back later")
    await create(h, receiver.url)
    event_id = await post(h)
    await h.step()
    (delivery,) = (await api(h, "GET", "/v1/deliveries", params={"event": event_id}))[1]["data"]
    code, detail = await api(h, "GET", f"/v1/deliveries/{delivery['id']}")
    assert code == 200 and detail["state"] == "pending" and detail["next_attempt_at"]
    (attempt,) = detail["attempt_log"]
    assert attempt["status"] == 503 and attempt["response_excerpt"] == "busy, come back later"
    assert attempt["number"] == 1 and attempt["started_at"].endswith("Z")


async def test_lists_filter_and_page_newest_first(admin):
    h, receiver = admin
    await create(h, receiver.url, events=["*"])
    ids = [await post(h, "sale.completed" if i % 2 else "customer.created", n=i) for i in range(7)]
    while await h.step():  # four at a time: endpoint_max_in_flight
        pass
    code, page = await api(h, "GET", "/v1/events", params={"limit": 3})
    assert [e["id"] for e in page["data"]] == ids[::-1][:3] and page["next_cursor"]
    seen = [e["id"] for e in page["data"]]
    while page["next_cursor"]:
        code, page = await api(h, "GET", "/v1/events", params={"limit": 3, "cursor": page["next_cursor"]})
        seen += [e["id"] for e in page["data"]]
    assert seen == ids[::-1]
    code, sales = await api(h, "GET", "/v1/events", params={"type": "sale.*"})
    assert [e["id"] for e in sales["data"]] == [i for n, i in enumerate(ids) if n % 2][::-1]
    code, exact = await api(h, "GET", "/v1/deliveries", params={"type": "customer.created", "state": "delivered"})
    assert len(exact["data"]) == 4 and all(d["event_type"] == "customer.created" for d in exact["data"])
    code, none = await api(
        h, "GET", "/v1/deliveries", params={"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}
    )
    assert none["data"] == [] and none["next_cursor"] is None
    code, event = await api(h, "GET", f"/v1/events/{ids[0]}")
    assert event["payload"]["data"] == {"n": 0} and event["payload"]["id"] == ids[0]
    assert [d["endpoint"] for d in event["deliveries"]] == ["shop"]
    for params in (
        {"limit": 0},
        {"limit": 501},
        {"state": "lost"},
        {"cursor": "abc"},
        {"type": "a b"},
        {"since": "tuesday"},
        {"colour": "red"},
    ):
        code, problem = await api(h, "GET", "/v1/deliveries", params=params)
        assert code == 422 and problem["errors"], params


async def test_status_reports_backlog_and_endpoint_health(admin):
    h, receiver = admin
    receiver.behaviour = status(500)
    await create(h, receiver.url)
    await post(h)
    await post(h)
    await h.step()
    code, body = await api(h, "GET", "/v1/status")
    assert code == 200
    assert body["version"] and body["uptime_s"] >= 0 and body["database"]["size_bytes"] > 0
    assert body["deliveries"]["pending"] == 2 and body["backlog"] == 2 and body["oldest_pending_age_s"] >= 0
    shop = next(e for e in body["endpoints"] if e["name"] == "shop")
    assert shop["pending"] == 2 and shop["state"] == "healthy" and shop["consecutive_failures"] == 2
    assert shop["last_failure_reason"] == "HTTP 500" and shop["last_success_at"] is None
    assert shop["attempts_last_hour"] == 2 and shop["success_rate_last_hour"] == 0.0
    receiver.behaviour = status(200)
    await h.step(120)
    code, body = await api(h, "GET", "/v1/status")
    shop = next(e for e in body["endpoints"] if e["name"] == "shop")
    assert shop["pending"] == 0 and shop["last_success_at"] and shop["success_rate_last_hour"] == 0.5
    assert body["backlog"] == 0 and body["oldest_pending_age_s"] is None


async def test_openapi_describes_every_route_and_is_valid(admin):
    from openapi_spec_validator import validate

    h, _ = admin
    code, document = await api(h, "GET", "/openapi.json")
    assert code == 200 and document["openapi"].startswith("3.1")
    validate(document)
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in h.app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        # The dashboard's own pages (sign-in, static files, …) are for browsers; `/` is described.
        and not route.resource.canonical.startswith("/ui/")
    }
    described = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert registered == described


async def test_openapi_needs_no_token_and_says_so(admin):
    # 404 details point people at it, so it must open without a token; it holds no data.
    h, _ = admin
    async with h.session.get(h.server.make_url("/openapi.json")) as r:
        assert r.status == 200
        document = await r.json()
    get = document["paths"]["/openapi.json"]["get"]
    assert get["security"] == [] and "401" not in get["responses"]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert document["security"] == [{"bearer": []}]  # every other route still needs one
    async with h.session.get(h.server.make_url("/v1/status")) as r:
        assert r.status == 401
