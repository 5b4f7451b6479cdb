"""Nothing is dropped while an endpoint is off (CONTRACT 5): disabled by an admin, by a 410,
or taken out of the config file, it holds its deliveries, and they go out in order once it is
on again. Against the real app on loopback with a real receiver, stepped with a fake clock."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Harness, make_config
from tests.integration.test_admin_api import api
from tests.support import FakeClock, Receiver, status
from tillhook.models import Endpoint, SigningSecret
from tillhook.rules import new_secret
from tillhook.store import endpoints_sql
from tillhook.store.schema import MIGRATIONS, migrate


async def post_each(h: Harness, n: int, event_type: str = "sale.completed") -> list[str]:
    ids = []
    for i in range(n):
        code, reply, _ = await h.post_events({"type": event_type, "data": {"n": i}})
        assert code == 202 and reply["deliveries"] == 1, reply
        ids.append(reply["id"])
    return ids


async def deliveries_of(h: Harness, endpoint: str) -> list[dict[str, Any]]:
    code, page = await api(h, "GET", "/v1/deliveries", params={"endpoint": endpoint})
    assert code == 200, page
    return list(reversed(page["data"]))  # oldest first


async def status_of(h: Harness, name: str) -> dict[str, Any]:
    code, body = await api(h, "GET", "/v1/status")
    assert code == 200, body
    return next(e for e in body["endpoints"] if e["name"] == name)


async def restart(h: Harness, make_harness: Any, config: Any, clock: FakeClock) -> Harness:
    await h.session.close()
    await h.server.close()  # runs the app's cleanup: the dispatcher stops, the store closes
    return await make_harness(config, clock=clock)


@pytest.fixture
async def shop(tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock):
    """One endpoint that takes one delivery at a time, so arrival order is acceptance order."""
    secret = new_secret()
    receiver = await receivers(secret=secret)
    config = make_config(
        tmp_path,
        [{"name": "loyalty", "url": receiver.url, "secret": secret, "max_in_flight": 1}],
        delivery={"retry_schedule": ["1m"], "give_up_after": "1h"},
    )
    return receiver, await make_harness(config, clock=clock)


async def test_admin_disable_holds_every_event_and_enable_sends_them_in_order(shop):
    receiver, h = shop
    (before,) = await post_each(h, 1)
    assert await h.step() == 1
    code, _ = await api(h, "POST", "/v1/endpoints/loyalty/disable")
    assert code == 200
    held = await post_each(h, 4)
    assert await h.step(advance_s=120) == 0  # long past any retry; within the receiver's timestamp tolerance
    assert receiver.event_ids() == [before]

    log = await deliveries_of(h, "loyalty")
    assert [d["state"] for d in log] == ["delivered", "pending", "pending", "pending", "pending"]
    reason = "endpoint loyalty is disabled: disabled through the admin API"
    assert [d["held_reason"] for d in log] == [None, reason, reason, reason, reason]
    code, one = await api(h, "GET", f"/v1/deliveries/{log[1]['id']}")
    assert code == 200 and one["held_reason"] == reason
    code, event = await api(h, "GET", f"/v1/events/{held[0]}")
    assert code == 200 and event["deliveries"][0]["held_reason"] == reason
    shown = await status_of(h, "loyalty")
    assert shown["state"] == "disabled" and shown["held"] == 4 and shown["pending"] == 4
    assert shown["disabled_reason"] == "disabled through the admin API"

    code, _ = await api(h, "POST", "/v1/endpoints/loyalty/enable")
    assert code == 200
    assert await h.step() == 4
    assert receiver.event_ids() == [before, *held]
    assert all(r.verified for r in receiver.received)
    assert [d["held_reason"] for d in await deliveries_of(h, "loyalty")] == [None] * 5
    assert (await status_of(h, "loyalty"))["held"] == 0


async def test_a_410_holds_that_delivery_and_the_later_ones_until_enabled(shop):
    receiver, h = shop
    receiver.behaviour = lambda request, n: status(410 if n == 1 else 200)(request, n)
    (gone,) = await post_each(h, 1)
    assert await h.step() == 1
    later = await post_each(h, 3)
    assert await h.step(advance_s=3600) == 0

    reason = "endpoint loyalty is disabled: the receiver answered 410 Gone at attempt 1"
    log = await deliveries_of(h, "loyalty")
    assert [(d["state"], d["held_reason"]) for d in log] == [("pending", reason)] * 4
    shown = await status_of(h, "loyalty")
    assert shown["state"] == "disabled" and shown["held"] == 4
    assert shown["disabled_reason"] == "the receiver answered 410 Gone at attempt 1"

    code, _ = await api(h, "POST", "/v1/endpoints/loyalty/enable")
    assert code == 200
    assert await h.step() == 4
    assert receiver.event_ids() == [gone, gone, *later]
    assert [d["state"] for d in await deliveries_of(h, "loyalty")] == ["delivered"] * 4


async def test_a_retry_due_later_does_not_let_newer_held_ones_overtake_it(shop):
    receiver, h = shop
    receiver.behaviour = lambda request, n: status(500 if n == 1 else 200)(request, n)
    (first,) = await post_each(h, 1)
    assert await h.step() == 1  # failed: its retry is due in a minute
    await api(h, "POST", "/v1/endpoints/loyalty/disable")
    later = await post_each(h, 2)
    await api(h, "POST", "/v1/endpoints/loyalty/enable")
    assert await h.step() == 3  # at once, not a minute later, and the oldest first
    assert receiver.event_ids() == [first, first, *later]


async def test_enable_wakes_the_loop(tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock):
    # The loop runs, but the fake clock never ticks it: only a wake makes it look again.
    receiver: Receiver = await receivers()
    config = make_config(tmp_path, [{"name": "loyalty", "url": receiver.url, "max_in_flight": 1}])
    h = await make_harness(config, clock=clock, run_dispatcher=True)
    await api(h, "POST", "/v1/endpoints/loyalty/disable")
    held = await post_each(h, 3)
    code, _ = await api(h, "POST", "/v1/endpoints/loyalty/enable")
    assert code == 200
    await receiver.wait_count(3)
    assert receiver.event_ids() == held


async def test_admission_never_starts_a_delivery_of_a_disabled_endpoint(shop):
    _, h = shop
    await api(h, "POST", "/v1/endpoints/loyalty/disable")
    endpoint_id = h.endpoint_id("loyalty")
    h.dispatcher.wake([])  # nothing known due: admission would be allowed for an enabled one
    assert h.dispatcher.admits(endpoint_id) is None
    admitted = h.dispatcher.admitted
    await post_each(h, 2)
    assert h.dispatcher.admitted == admitted and h.gates.in_flight == 0


async def test_an_endpoint_out_of_the_config_file_holds_and_comes_back(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock
):
    receiver = await receivers(behaviour=status(500))
    spec = {"name": "loyalty", "url": receiver.url, "max_in_flight": 1}
    other = {"name": "other", "url": receiver.url, "events": ["other.*"]}
    with_it = make_config(tmp_path, [spec, other], delivery={"retry_schedule": ["1m"]})
    without_it = make_config(tmp_path, [other], delivery={"retry_schedule": ["1m"]})
    h = await make_harness(with_it, clock=clock)
    waiting = await post_each(h, 2)
    assert await h.step() == 2  # both fail (one at a time) and wait for a retry

    h = await restart(h, make_harness, without_it, clock)
    shown = await status_of(h, "loyalty")
    assert shown["state"] == "disabled" and shown["disabled_reason"] == "removed from the config file"
    assert shown["held"] == 2
    code, reply, _ = await h.post_events({"type": "sale.completed", "data": {}})
    assert code == 202 and reply["deliveries"] == 0  # out of the file: no new deliveries
    assert await h.step(advance_s=3600) == 0
    log = await deliveries_of(h, "loyalty")
    assert [d["held_reason"] for d in log] == ["endpoint loyalty is disabled: removed from the config file"] * 2

    receiver.behaviour = status(200)
    h = await restart(h, make_harness, with_it, clock)
    code, endpoint = await api(h, "GET", "/v1/endpoints/loyalty")
    assert endpoint["enabled"] and endpoint["config_managed"] and endpoint["disabled_reason"] is None
    assert await h.step() == 2
    assert receiver.event_ids()[2:] == waiting
    assert (await status_of(h, "loyalty"))["held"] == 0
    # In the file again, it subscribes again.
    assert len(await post_each(h, 1)) == 1


async def test_an_admin_disabled_config_endpoint_stays_disabled(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock
):
    receiver = await receivers()
    spec = {"name": "loyalty", "url": receiver.url}
    with_it = make_config(tmp_path, [spec])
    without_it = make_config(tmp_path, [])
    h = await make_harness(with_it, clock=clock)
    await api(h, "POST", "/v1/endpoints/loyalty/disable")
    await post_each(h, 1)
    h = await restart(h, make_harness, with_it, clock)  # still in the file: still disabled
    assert (await status_of(h, "loyalty"))["disabled_reason"] == "disabled through the admin API"
    h = await restart(h, make_harness, without_it, clock)
    assert (await status_of(h, "loyalty"))["disabled_reason"] == "removed from the config file"
    h = await restart(h, make_harness, with_it, clock)  # back: as it was before it was taken out
    shown = await status_of(h, "loyalty")
    assert shown["state"] == "disabled" and shown["disabled_reason"] == "disabled through the admin API"
    assert shown["held"] == 1
    code, endpoint = await api(h, "GET", "/v1/endpoints/loyalty")
    assert code == 200 and endpoint["config_managed"] is True
    assert await h.step() == 0 and receiver.received == []
    await api(h, "POST", "/v1/endpoints/loyalty/enable")
    assert await h.step() == 1


def test_an_endpoint_taken_out_under_the_earlier_schema_comes_back_too(tmp_path: Path):
    # Before the marker, a removal said so only in its reason: the migration reads it there.
    marker = next(i for i, sql in enumerate(MIGRATIONS) if "removed_from_config_at" in sql)
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    for version in range(marker):
        conn.executescript(f"BEGIN; {MIGRATIONS[version]}; PRAGMA user_version = {version + 1}; COMMIT;")
    for name, reason, managed in (("gone", "removed from the config file", 0), ("kept", None, 1)):
        conn.execute(
            "INSERT INTO endpoints (id, name, url, events, secrets, enabled, disabled_reason, config_managed,"
            " created_at, updated_at) VALUES (?, ?, 'https://x.example/h', '[\"*\"]', ?, ?, ?, ?, 1, 1)",
            (
                "ep_" + name,
                name,
                endpoints_sql.secrets_json([SigningSecret(new_secret())]),
                reason is None,
                reason,
                managed,
            ),
        )
    migrate(conn)
    rows = conn.execute(f"SELECT {endpoints_sql.COLUMNS} FROM endpoints ORDER BY name").fetchall()
    gone, kept = (endpoints_sql.to_endpoint(r) for r in rows)
    assert gone.removed_from_config and not kept.removed_from_config
    spec = Endpoint(id="", name="gone", url="https://x.example/h", events=("*",), secrets=(), config_managed=True)
    applied = endpoints_sql.apply_config(conn, [spec], now=2.0)
    assert applied.restored == (("gone", True, 0),) and applied.removed == ("kept",)
    conn.close()
