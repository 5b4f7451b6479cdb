"""Each outcome of CONTRACT section 5 against a real loopback receiver, stepped with a fake clock."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from tests.integration.conftest import make_config
from tests.support import FakeClock, deliveries_of, reset_connection, self_signed_cert, server_tls, status
from tillhook.errors import ConfigError
from tillhook.models import Endpoint, SigningSecret
from tillhook.rules import new_secret
from tillhook.store.port import DeliveryRow


async def one_event(h, event_type: str = "transaction.completed") -> str:
    code, reply, _ = await h.post_events({"type": event_type, "data": {"amount": 5}})
    assert code == 202, reply
    return reply["id"]


async def delivery_of(h, event_id: str) -> DeliveryRow:
    (row,) = await deliveries_of(h.services.store, event_id)
    return row


@pytest.fixture
async def setup(tmp_path, receivers, make_harness, clock: FakeClock):
    async def build(behaviour, **delivery):
        secret = new_secret()
        receiver = await receivers(secret=secret, behaviour=behaviour)
        config = make_config(
            tmp_path,
            [{"name": "shop", "url": receiver.url, "secret": secret}],
            delivery={"response_body_limit": 16, **delivery},
        )
        return receiver, await make_harness(config, clock=clock)

    return build


async def test_2xx_is_delivered_with_a_valid_signature(setup):
    receiver, h = await setup(status(204))
    event_id = await one_event(h)
    assert await h.step() == 1
    (got,) = receiver.received
    assert got.verified and got.event_id == event_id
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("tillhook/")
    body = json.loads(got.body)
    assert body["id"] == event_id and body["type"] == "transaction.completed" and body["data"] == {"amount": 5}
    row = await delivery_of(h, event_id)
    assert row.state == "delivered" and row.attempts == 1 and row.last_status == 204


async def test_500_retries_after_the_schedule_and_keeps_the_excerpt(setup):
    receiver, h = await setup(status(500, "database exploded, please hold"))
    event_id = await one_event(h)
    await h.step()
    row = await delivery_of(h, event_id)
    assert row.state == "pending" and row.last_status == 500
    delay = row.next_attempt_at - h.clock.now()
    assert 8.0 <= delay <= 12.0  # 10s ±20 %
    (attempt,) = await h.services.store.attempts_of_delivery(row.id)
    assert attempt.response_excerpt == "database explode"  # response_body_limit = 16
    assert await h.step(advance_s=5) == 0  # not due yet
    assert await h.step(advance_s=8) == 1
    assert len(receiver.received) == 2
    assert receiver.received[0].body == receiver.received[1].body  # same bytes on every attempt
    assert receiver.received[0].event_id == receiver.received[1].event_id


async def test_a_receiver_that_hangs_times_out(setup):
    receiver, h = await setup(None, timeout="300ms")
    receiver.behaviour = _hang(receiver)
    event_id = await one_event(h)
    await h.step()
    row = await delivery_of(h, event_id)
    assert row.state == "pending" and row.last_status is None
    assert "timed out after 0.3s" in row.last_error


def _hang(receiver):
    async def hang(request, n):
        await receiver.release.wait()
        return web.Response()

    return hang


async def test_429_with_retry_after_waits_that_long(setup):
    receiver, h = await setup(status(429, headers={"Retry-After": "120"}))
    event_id = await one_event(h)
    await h.step()
    row = await delivery_of(h, event_id)
    assert row.next_attempt_at == pytest.approx(h.clock.now() + 120)
    assert await h.step(advance_s=119) == 0
    assert await h.step(advance_s=1) == 1


async def test_503_retry_after_is_capped_at_an_hour(setup):
    receiver, h = await setup(status(503, headers={"Retry-After": "86400"}))
    event_id = await one_event(h)
    await h.step()
    row = await delivery_of(h, event_id)
    assert row.next_attempt_at == pytest.approx(h.clock.now() + 3600)


async def test_410_disables_the_endpoint_and_keeps_its_deliveries(setup):
    receiver, h = await setup(status(410))
    first = await one_event(h)
    await h.step()
    endpoint = h.services.registry.get(h.endpoint_id("shop"))
    assert endpoint is not None and not endpoint.enabled and "410" in (endpoint.disabled_reason or "")
    (stored,) = await h.services.store.list_endpoints()
    assert not stored.enabled  # survives a restart
    row = await delivery_of(h, first)
    assert row.state == "pending"
    # A disabled endpoint still gets a delivery for each new event; all of them wait.
    code, reply, _ = await h.post_events({"type": "transaction.completed", "data": {}})
    assert code == 202 and reply["deliveries"] == 1
    assert await h.step(advance_s=3600) == 0
    assert len(receiver.received) == 1


async def test_redirects_are_not_followed(setup):
    receiver, h = await setup(status(302, headers={"Location": "/elsewhere"}))
    event_id = await one_event(h)
    await h.step()
    assert [r.path for r in receiver.received] == ["/hook"]
    row = await delivery_of(h, event_id)
    assert row.state == "pending" and row.last_status == 302


async def test_a_reset_connection_is_retried(setup):
    receiver, h = await setup(reset_connection)
    event_id = await one_event(h)
    await h.step()
    row = await delivery_of(h, event_id)
    assert row.state == "pending" and row.last_status is None and row.last_error
    receiver.behaviour = status(200)
    await h.step(advance_s=13)
    assert (await delivery_of(h, event_id)).state == "delivered"


async def test_a_delivery_failing_past_give_up_after_becomes_failed(setup):
    receiver, h = await setup(status(500), give_up_after="1h", retry_schedule=["20m"])
    event_id = await one_event(h)
    for _ in range(10):
        await h.step(advance_s=25 * 60)
        if (await delivery_of(h, event_id)).state == "failed":
            break
    row = await delivery_of(h, event_id)
    assert row.state == "failed"
    # 0m, ~20m, ~40m, then the last try lands on the 1h deadline itself.
    assert row.attempts == 4


async def test_connection_refused_is_retried(tmp_path, make_harness, clock):
    config = make_config(tmp_path, [{"name": "down", "url": "http://127.0.0.1:9/hook"}])
    h = await make_harness(config, clock=clock)
    event_id = await one_event(h)
    await h.step()
    row = await delivery_of(h, event_id)
    assert row.state == "pending" and "cannot connect" in row.last_error


async def test_loopback_targets_are_refused_unless_allowed(tmp_path, receivers, make_harness, clock):
    receiver = await receivers()
    by_ip = receiver.url
    by_name = receiver.url.replace("127.0.0.1", "localhost")
    endpoints = [{"name": "ip", "url": by_ip}, {"name": "name", "url": by_name}]
    with pytest.raises(ConfigError):  # refused up front since; stored ones are refused at each attempt
        make_config(tmp_path, endpoints, delivery={"allow_networks": ["10.0.0.0/8"]})
    h = await make_harness(make_config(tmp_path, [], delivery={"allow_networks": ["10.0.0.0/8"]}), clock=clock)
    for spec in endpoints:
        stored = Endpoint(
            id="", name=spec["name"], url=spec["url"], events=("*",), secrets=(SigningSecret(new_secret()),)
        )
        h.services.registry.put(await h.services.store.create_endpoint(stored, clock.now()))
    event_id = await one_event(h)
    await h.step()
    assert receiver.received == []
    rows = await deliveries_of(h.services.store, event_id)
    assert len(rows) == 2
    for row in rows:
        assert row.state == "pending"
        assert "loopback" in row.last_error and "allow_networks" in row.last_error


async def test_extra_endpoint_headers_are_sent(tmp_path, receivers, make_harness, clock):
    receiver = await receivers()
    config = make_config(tmp_path, [{"name": "k", "url": receiver.url, "headers": {"x-api-key": "k-123"}}])
    h = await make_harness(config, clock=clock)
    await one_event(h)
    await h.step()
    assert receiver.received[0].headers["x-api-key"] == "k-123"


async def test_an_untrusted_tls_certificate_is_refused(tmp_path, receivers, make_harness, clock):
    cert, key = self_signed_cert(tmp_path)
    receiver = await receivers(ssl_context=server_tls(cert, key))
    assert receiver.url.startswith("https://")
    config = make_config(tmp_path, [{"name": "tls", "url": receiver.url}], delivery={"allow_http": False})
    h = await make_harness(config, clock=clock)
    event_id = await one_event(h)
    await h.step()
    assert receiver.received == []
    row = await delivery_of(h, event_id)
    assert row.state == "pending" and "certificate" in row.last_error
