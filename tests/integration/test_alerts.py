"""Alerts (CONTRACT 7): tillhook's own events, stored and delivered like any other, only to the
endpoints that name tillhook in their patterns and never to the one an alert is about. The real
app on loopback with real receivers, stepped with a fake clock."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from structlog.testing import capture_logs

from tests.integration.conftest import VIEWER_TOKEN, Harness, make_config
from tests.integration.test_admin_api import api
from tests.integration.test_auth import call
from tests.integration.test_metrics import scrape
from tests.support import FakeClock, Received, Receiver, json_of, ok, status
from tillhook.redact import origin
from tillhook.rules import new_secret

FAILING = "tillhook.endpoint.failing"
RECOVERED = "tillhook.endpoint.recovered"
DISABLED = "tillhook.endpoint.disabled"
DELIVERY_FAILED = "tillhook.delivery.failed"
BACKLOG_HIGH = "tillhook.backlog.high"
H = 3600.0


async def settle(h: Harness) -> None:
    """Store the alerts raised so far and run the deliveries due now (theirs among them), until
    that raises no more."""
    for _ in range(20):
        await h.services.alerts.wait_idle()
        started = await h.dispatcher.run_once()
        await h.dispatcher.wait_idle()
        if not started and not h.services.alerts.storing:
            return
    raise AssertionError("alerts kept raising alerts")


async def step(h: Harness, advance_s: float = 0.0) -> int:
    started = await h.step(advance_s)
    await settle(h)
    return started


async def check(h: Harness, advance_s: float = 0.0) -> None:
    """The alerts' periodic look (the backlog, give-up counts whose hour is over), then
    whatever that made due."""
    assert h.clock is not None
    h.clock.advance(advance_s)
    await h.services.alerts.check()
    await settle(h)
    await step(h)


def alerts_in(receiver: Receiver) -> list[dict[str, Any]]:
    return [body for body in map(json_of, receiver.received) if body["type"].startswith("tillhook.")]


def signed(received: Received, secret: str) -> bool:
    """Checked with the standardwebhooks package's own signing, at the attempt's timestamp
    (its verify() also wants that within 5 minutes of the real clock, which a fake clock
    moved hours on is not)."""
    at = datetime.fromtimestamp(int(received.headers["webhook-timestamp"]), UTC)
    expected = Webhook(secret).sign(received.event_id, at, received.body.decode())
    return expected in received.headers["webhook-signature"].split(" ")


async def post(h: Harness, n: int = 1, event_type: str = "sale.completed") -> list[str]:
    code, reply, _ = await h.post_events([{"type": event_type, "data": {"n": i}} for i in range(n)])
    assert code == 202, reply
    return [r["id"] for r in reply]


async def stored_alerts(h: Harness, event_type: str = "tillhook.**") -> list[dict[str, Any]]:
    code, page = await api(h, "GET", "/v1/events", params={"type": event_type, "limit": 500})
    assert code == 200, page
    return page["data"]


@pytest.fixture
async def shop(tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock):
    """`loyalty` fails and subscribes to alerts too; `watch` takes only alerts; `everything`
    takes ["*"]."""
    secrets = {name: new_secret() for name in ("loyalty", "watch", "everything")}
    got = {name: await receivers(secret=secret) for name, secret in secrets.items()}
    got["loyalty"].behaviour = status(500)
    config = make_config(
        tmp_path,
        [
            {
                "name": "loyalty",
                "url": got["loyalty"].url,
                "secret": secrets["loyalty"],
                "events": ["sale.*", "tillhook.**"],
            },
            {"name": "watch", "url": got["watch"].url, "secret": secrets["watch"], "events": ["tillhook.**"]},
            {"name": "everything", "url": got["everything"].url, "secret": secrets["everything"], "events": ["*"]},
        ],
        delivery={"retry_schedule": ["10s", "20s"]},
    )
    return got, secrets, await make_harness(config, clock=clock)


async def test_back_off_and_recovery_alert_the_subscribers_once_each_signed(shop):
    got, _, h = shop
    await post(h, 12)
    # Four at once; the fifth failure in a row starts the back-off.
    await step(h)
    assert h.gate("loyalty").backing_off
    (failing,) = alerts_in(got["watch"])
    assert failing["type"] == FAILING and failing["id"].startswith("msg_")
    assert got["watch"].received[-1].verified  # the standardwebhooks package's verify()
    data = failing["data"]
    loyalty_url = origin(got["loyalty"].url)  # where it goes, not the path (a chat webhook's token)
    assert data["endpoint"] == {"id": h.endpoint_id("loyalty"), "name": "loyalty", "url": loyalty_url}
    assert data["summary"] == (
        "Endpoint loyalty is failing: 5 attempts in a row failed, so it is tried once at a time until it answers."
    )
    assert data["check"] == f"Is {loyalty_url} up? Last error: HTTP 500"
    assert data["consecutive_failures"] == 5 and data["last_error"] == "HTTP 500"

    # More failed probes: still one alert.
    await step(h, advance_s=10)
    await step(h, advance_s=20)
    assert [a["type"] for a in alerts_in(got["watch"])] == [FAILING]

    got["loyalty"].behaviour = ok
    await step(h, advance_s=20)  # the probe succeeds and releases the backlog
    await step(h)
    assert not h.gate("loyalty").backing_off
    failing_again, recovered = alerts_in(got["watch"])
    assert failing_again == failing and recovered["type"] == RECOVERED
    assert got["watch"].received[-1].verified
    assert recovered["data"]["endpoint"]["name"] == "loyalty"
    assert recovered["data"]["consecutive_failures"] >= 5
    assert set(recovered["data"]) >= {"summary", "check"}
    assert recovered["data"]["summary"].startswith("Endpoint loyalty is answering again after ")

    # Never to the endpoint the alert is about, though it subscribes tillhook.**; never to ["*"].
    assert alerts_in(got["loyalty"]) == []
    assert alerts_in(got["everything"]) == [] and len(got["everything"].received) == 12
    # Real events: in the event log, with their deliveries.
    logged = await stored_alerts(h)
    assert sorted(e["type"] for e in logged) == [FAILING, RECOVERED]
    code, event = await api(h, "GET", f"/v1/events/{failing['id']}")
    assert code == 200 and [d["endpoint"] for d in event["deliveries"]] == ["watch"]
    assert event["deliveries"][0]["state"] == "delivered"
    m = await scrape(h)
    assert m[("tillhook_alerts_emitted_total", (("type", FAILING),))] == 1
    assert m[("tillhook_alerts_emitted_total", (("type", RECOVERED),))] == 1


async def test_a_flapping_endpoint_is_said_to_fail_at_most_once_an_hour(shop):
    got, _, h = shop
    loyalty = got["loyalty"]

    def endpoint_alerts(receiver: Receiver) -> list[dict[str, Any]]:
        return [a for a in alerts_in(receiver) if a["type"] in (FAILING, RECOVERED)]

    def said(receiver: Receiver) -> list[str]:
        return [a["type"] for a in endpoint_alerts(receiver)]

    await post(h, 12)
    await step(h)
    loyalty.behaviour = ok
    await step(h, advance_s=10)  # the probe answers: recovered, the backlog goes out
    assert said(got["watch"]) == [FAILING, RECOVERED]
    for _ in range(3):  # fails into back-off again, answers a probe again, ...
        loyalty.behaviour = status(500)
        await post(h, 12)
        await step(h)
        assert h.gate("loyalty").backing_off
        loyalty.behaviour = ok
        await step(h, advance_s=10)
    assert said(got["watch"]) == [FAILING, RECOVERED]
    # Failing again, and still when the hour since the last one said is over: said then.
    loyalty.behaviour = status(500)
    await post(h, 12)
    await step(h)
    await check(h, advance_s=H - 100)
    assert len(said(got["watch"])) == 2
    await check(h, advance_s=100)
    assert said(got["watch"]) == [FAILING, RECOVERED, FAILING]
    assert endpoint_alerts(got["watch"])[-1]["data"]["consecutive_failures"] > 5
    loyalty.behaviour = ok
    await step(h, advance_s=300)
    assert said(got["watch"]) == [FAILING, RECOVERED, FAILING, RECOVERED]


async def test_a_410_and_an_admin_disable_say_why_and_a_disabled_subscriber_holds_its_alert(
    tmp_path, receivers, make_harness, clock
):
    gone, watch, sleepy = await receivers(behaviour=status(410)), await receivers(), await receivers()
    config = make_config(
        tmp_path,
        [
            {"name": "gone", "url": gone.url, "events": ["sale.*"]},
            {"name": "watch", "url": watch.url, "events": ["tillhook.endpoint.*"]},
            {"name": "sleepy", "url": sleepy.url, "events": ["tillhook.**"]},
        ],
    )
    h = await make_harness(config, clock=clock)
    code, _ = await api(h, "POST", "/v1/endpoints/sleepy/disable")
    assert code == 200
    await settle(h)
    (about_sleepy,) = alerts_in(watch)
    assert about_sleepy["type"] == DISABLED and about_sleepy["data"]["endpoint"]["name"] == "sleepy"
    assert about_sleepy["data"]["reason"] == "disabled through the admin API"
    assert about_sleepy["data"]["disabled_by"] == "admin"
    assert about_sleepy["data"]["summary"] == (
        "Endpoint sleepy is disabled (disabled through the admin API): its deliveries are held, none dropped,"
        " until it is enabled again."
    )
    assert "tillhook endpoints enable sleepy" in about_sleepy["data"]["check"]
    # Disabling it again changes nothing and says nothing.
    code, _ = await api(h, "POST", "/v1/endpoints/sleepy/disable")
    assert code == 200
    await settle(h)
    assert len(alerts_in(watch)) == 1

    await post(h, 2)
    await step(h)
    await step(h)
    about_gone = [a for a in alerts_in(watch) if a["data"]["endpoint"]["name"] == "gone"]
    assert len(about_gone) == 1  # two deliveries answered 410 or were held: one alert
    (alert,) = about_gone
    assert alert["type"] == DISABLED and alert["data"]["disabled_by"] == "receiver"
    assert alert["data"]["reason"] == "the receiver answered 410 Gone at attempt 1"
    assert "asked not to be sent anything more" in alert["data"]["check"]
    # sleepy is disabled: its copy of the alert is held, like any event, until it is enabled.
    assert sleepy.received == []
    code, event = await api(h, "GET", f"/v1/events/{alert['id']}")
    assert sorted((d["endpoint"], d["state"]) for d in event["deliveries"]) == [
        ("sleepy", "pending"),
        ("watch", "delivered"),
    ]
    code, _ = await api(h, "POST", "/v1/endpoints/sleepy/enable")
    await step(h)
    assert [a["id"] for a in alerts_in(sleepy)] == [alert["id"]]  # not the one about itself


async def test_give_ups_alert_once_and_then_at_most_hourly_with_a_count(tmp_path, receivers, make_harness, clock):
    failing, watch = await receivers(behaviour=status(503)), await receivers()
    config = make_config(
        tmp_path,
        [
            {"name": "crm", "url": failing.url, "events": ["sale.*"]},
            {"name": "watch", "url": watch.url, "events": ["tillhook.delivery.failed"]},
        ],
        delivery={"retry_schedule": ["2m"], "give_up_after": "10m"},
        alerts={"backlog_age": "1d"},
    )
    h = await make_harness(config, clock=clock)

    async def until_failed(n: int) -> None:
        for _ in range(100):
            if (await h.services.store.count_by_state()).get("failed", 0) >= n:
                return
            await step(h, advance_s=60)
            await h.services.alerts.check()
        raise AssertionError(f"not {n} failed yet")

    (first,) = await post(h)
    await until_failed(1)
    (alert,) = alerts_in(watch)
    first_at = clock.now()
    assert alert["type"] == DELIVERY_FAILED and alert["data"]["count"] == 1
    assert alert["data"]["event_id"] == first and alert["data"]["endpoint"]["name"] == "crm"
    assert alert["data"]["last_error"] == "HTTP 503"
    assert alert["data"]["summary"].startswith("A delivery to endpoint crm gave up")
    assert "tillhook deliveries list --endpoint crm --state failed" in alert["data"]["check"]

    await post(h, 3)
    await until_failed(4)
    assert len(alerts_in(watch)) == 1  # counted, not sent: within the hour of the first
    await check(h, advance_s=first_at + H - 1 - clock.now())
    assert len(alerts_in(watch)) == 1
    await check(h, advance_s=1)
    _, summary = alerts_in(watch)
    assert summary["type"] == DELIVERY_FAILED and summary["data"]["count"] == 3
    assert summary["data"]["summary"].startswith("3 more deliveries to endpoint crm gave up in the last hour")
    # An hour with no give-ups after that: the next one is said at once.
    await check(h, advance_s=H)
    await post(h)
    await until_failed(5)
    assert [a["data"]["count"] for a in alerts_in(watch)] == [1, 3, 1]


async def test_an_old_backlog_alerts_once_per_crossing_and_hourly_while_it_lasts(
    tmp_path, receivers, make_harness, clock
):
    slow_secret = new_secret()
    slow, watch = await receivers(behaviour=status(500), secret=slow_secret), await receivers()
    config = make_config(
        tmp_path,
        [
            {"name": "slow", "url": slow.url, "secret": slow_secret, "events": ["sale.*", "tillhook.**"]},
            {"name": "watch", "url": watch.url, "events": ["tillhook.backlog.high"]},
        ],
        delivery={"retry_schedule": ["3h"], "give_up_after": "3d"},
        alerts={"backlog_age": "15m"},
    )
    h = await make_harness(config, clock=clock)
    await post(h)
    await step(h)  # fails; next try in about 3 h
    await check(h, advance_s=900)
    assert alerts_in(watch) == []  # 15 min exactly is not older than 15 min
    await check(h, advance_s=60)
    (alert,) = alerts_in(watch)
    assert alert["type"] == BACKLOG_HIGH and "endpoint" not in alert["data"]
    data = alert["data"]
    assert data["backlog"] == 1 and data["oldest_pending_age_s"] == pytest.approx(960, abs=1)
    assert data["backlog_age_s"] == 900
    assert data["oldest_pending_endpoint"]["name"] == "slow"
    assert data["summary"] == (
        "Deliveries wait too long: the oldest pending one has waited 16 min, more than alerts.backlog_age"
        " (15 min); 1 delivery is pending."
    )
    assert data["check"].startswith(f"Endpoint slow holds the oldest: is {origin(slow.url)} up?")
    for _ in range(3):
        await check(h, advance_s=30)
    assert len(alerts_in(watch)) == 1
    await check(h, advance_s=H)
    assert [a["type"] for a in alerts_in(watch)] == [BACKLOG_HIGH] * 2  # still high: hourly
    # The endpoint holding the oldest does not get it (it is what the alert is about).
    assert alerts_in(slow) == []

    slow.behaviour = ok
    await step(h, advance_s=3 * H)  # past its retry (3 h ± 20 % after the first try): delivered
    await check(h)
    await check(h, advance_s=H)
    assert len(alerts_in(watch)) == 2  # under again: armed, silent
    slow.behaviour = status(500)
    await post(h)
    await step(h)
    await check(h, advance_s=901)
    assert len(alerts_in(watch)) == 3  # a new crossing
    assert all(signed(r, slow_secret) for r in slow.received)


async def test_a_disabled_endpoints_held_deliveries_are_not_a_backlog(tmp_path, receivers, make_harness, clock):
    held, watch = await receivers(), await receivers()
    config = make_config(
        tmp_path,
        [
            {"name": "held", "url": held.url, "events": ["sale.*"]},
            {"name": "watch", "url": watch.url, "events": ["tillhook.backlog.*"]},
        ],
    )
    h = await make_harness(config, clock=clock)
    code, _ = await api(h, "POST", "/v1/endpoints/held/disable")
    assert code == 200
    await post(h, 3)
    await check(h, advance_s=2 * H)
    code, body = await api(h, "GET", "/v1/status")
    assert body["oldest_pending_age_s"] >= 2 * H  # it waits, by design
    assert alerts_in(watch) == []


async def test_two_alert_endpoints_failing_at_each_other_raise_a_bounded_number_of_alerts(
    tmp_path, receivers, make_harness, clock
):
    a, b = await receivers(behaviour=status(500)), await receivers(behaviour=status(500))
    config = make_config(
        tmp_path,
        [
            {"name": "a", "url": a.url, "events": ["sale.*", "tillhook.**"]},
            {"name": "b", "url": b.url, "events": ["sale.*", "tillhook.**"]},
        ],
        delivery={"retry_schedule": ["1m", "5m"], "give_up_after": "30m"},
        alerts={"backlog_age": "10m"},
    )
    h = await make_harness(config, clock=clock)
    await post(h, 10)
    hours = 6
    counts = []
    for _ in range(hours):
        for _ in range(12):  # every 5 minutes
            await step(h, advance_s=300)
            await h.services.alerts.check()
            await settle(h)
        counts.append(len(await stored_alerts(h)))
    # Per endpoint: one failing (it never recovers), and at most one delivery.failed and one
    # backlog.high an hour, the first of each at once.
    bound = 2 * (1 + hours + 1) + (hours + 1)
    assert counts[-1] <= bound, counts
    sent: defaultdict[tuple[str, str | None], list[float]] = defaultdict(list)
    for event in await stored_alerts(h):
        _, detail = await api(h, "GET", f"/v1/events/{event['id']}")
        about = detail["payload"]["data"].get("endpoint", {}).get("name")
        sent[(event["type"], about)].append(datetime.fromisoformat(event["received_at"]).timestamp())
    assert set(sent) == {
        (FAILING, "a"),
        (FAILING, "b"),
        (DELIVERY_FAILED, "a"),
        (DELIVERY_FAILED, "b"),
        (BACKLOG_HIGH, None),
    }
    assert len(sent[(FAILING, "a")]) == len(sent[(FAILING, "b")]) == 1
    # (backlog.high may also come again sooner, after the backlog went under its age: a new crossing)
    for endpoint in ("a", "b"):
        times = sorted(sent[(DELIVERY_FAILED, endpoint)])
        assert all(later - earlier >= H for earlier, later in pairwise(times)), times


async def test_a_store_refusing_an_alert_is_logged_never_raised_into_the_caller(shop):
    _, _, h = shop
    await post(h, 1)
    h.services.store.refuse_writes("the disk holding the database is full; free some space and retry")
    with capture_logs() as logs:
        # The hook returns at once (the storing is a task of its own), and that task does not fail.
        h.services.alerts.disabled(h.services.registry.by_name("loyalty"), "a test of the refusal", "admin")
        await h.services.alerts.wait_idle()
    assert not [e for e in logs if e["event"] == "alert_crashed"]
    (refused,) = [e for e in logs if e["event"] == "alert_not_stored"]
    assert refused["type"] == DISABLED and refused["endpoint"] == "loyalty" and "disk" in refused["error"]
    assert refused["log_level"] == "error"
    assert not [e for e in logs if e["event"] == "alert_emitted"]


async def test_each_alert_emitted_is_logged(shop):
    got, _, h = shop
    with capture_logs() as logs:
        await post(h, 12)
        await step(h)
    (emitted,) = [e for e in logs if e["event"] == "alert_emitted"]
    assert emitted["type"] == FAILING and emitted["endpoint"] == "loyalty" and emitted["deliveries"] == 1
    assert emitted["log_level"] == "info"
    assert json.loads(got["watch"].received[0].body)["id"] == emitted["event_id"]


async def test_an_alert_never_carries_the_credentials_in_an_endpoints_url(tmp_path, receivers, make_harness, clock):
    gone, watch = await receivers(behaviour=status(410)), await receivers()
    url = gone.url.replace("http://", "http://shop:pa55word-42@") + "?token=s3cr3t-token&v=2"
    config = make_config(
        tmp_path,
        [
            {"name": "gone", "url": url, "events": ["sale.*"]},
            {"name": "watch", "url": watch.url, "events": ["tillhook.**"]},
        ],
    )
    h = await make_harness(config, clock=clock)
    await post(h)
    await step(h)
    (alert,) = alerts_in(watch)
    assert alert["data"]["endpoint"]["url"] == origin(gone.url)  # scheme, host and port, then "/…"
    assert alert["data"]["endpoint"]["url"].endswith("/…")
    body = watch.received[0].body.decode()
    assert "pa55word-42" not in body and "s3cr3t-token" not in body and "shop:" not in body


async def test_an_alert_never_carries_the_path_of_an_endpoints_url_however_the_error_quotes_it(
    tmp_path, receivers, make_harness, clock, not_http
):
    # aiohttp quotes the URL normalised ("/a/../" gone), so it is not the endpoint's url as written.
    token = "sl4ckT0kenXXXXXXXXXXXXX"
    url = f"http://127.0.0.1:{not_http}/a/../services/T0SLACK01/B0SLACK02/{token}"
    watch = await receivers()
    config = make_config(
        tmp_path,
        [
            {"name": "chat", "url": url, "events": ["sale.*"]},
            {"name": "watch", "url": watch.url, "events": ["tillhook.**"]},
        ],
    )
    h = await make_harness(config, clock=clock)
    await post(h, 12)
    await step(h)
    (alert,) = alerts_in(watch)
    assert alert["type"] == FAILING
    assert f"url='http://127.0.0.1:{not_http}/…'" in alert["data"]["last_error"], alert["data"]["last_error"]
    for text in (watch.received[0].body.decode(), json.dumps(alert)):
        assert token not in text and "T0SLACK01" not in text, text
    code, event = await call(h, VIEWER_TOKEN, "GET", f"/v1/events/{alert['id']}")
    assert code == 200 and token not in json.dumps(event)
