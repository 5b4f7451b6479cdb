"""Filters at fan-out, transforms at each attempt and the extra signature header (CONTRACT 5),
against the real app on loopback with real receivers, stepped with a fake clock."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.integration.conftest import INGEST_TOKEN, Harness, make_config
from tests.integration.test_admin_api import api
from tests.support import FakeClock, Receiver
from tillhook.rules import new_secret


async def post(h: Harness, data: dict[str, Any], event_type: str = "transaction.completed") -> dict[str, Any]:
    code, reply, _ = await h.post_events({"type": event_type, "data": data})
    assert code == 202, reply
    return reply


async def attempts_of(h: Harness, delivery_id: int) -> list[dict[str, Any]]:
    code, detail = await api(h, "GET", f"/v1/deliveries/{delivery_id}")
    assert code == 200, detail
    return detail["attempt_log"]


async def only_delivery(h: Harness, event_id: str) -> dict[str, Any]:
    code, detail = await api(h, "GET", f"/v1/events/{event_id}")
    assert code == 200, detail
    (delivery,) = detail["deliveries"]
    return delivery


@pytest.fixture
async def secret() -> str:
    return new_secret()


async def test_a_filter_makes_no_delivery_for_the_events_it_leaves_out(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    big: Receiver = await receivers(secret=secret)
    every: Receiver = await receivers(secret=secret)
    config = make_config(
        tmp_path,
        [
            {"name": "big-sales", "url": big.url, "secret": secret, "filter": "data.amount >= 100.0"},
            {"name": "everything", "url": every.url, "secret": secret},
        ],
    )
    h = await make_harness(config, clock=clock)
    replies = [await post(h, {"amount": amount}) for amount in (50, 150.5, 99.99, 100, 250)]
    assert [r["deliveries"] for r in replies] == [1, 2, 1, 2, 2]
    await h.step()
    assert sorted(json.loads(r.body)["data"]["amount"] for r in big.received) == [100, 150.5, 250]
    assert len(every.received) == 5

    code, small = await api(h, "GET", f"/v1/events/{replies[0]['id']}")
    assert code == 200
    assert small["filtered_out"] == [{"endpoint_id": h.endpoint_id("big-sales"), "endpoint": "big-sales"}]
    assert [d["endpoint"] for d in small["deliveries"]] == ["everything"]
    code, kept = await api(h, "GET", f"/v1/events/{replies[1]['id']}")
    assert kept["filtered_out"] == []


async def test_a_filter_that_fails_keeps_the_delivery_and_retries_it_until_fixed(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    receiver: Receiver = await receivers(secret=secret)
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    code, created = await api(
        h,
        "POST",
        "/v1/endpoints",
        {
            "name": "big-sales",
            "url": receiver.url,
            "secret": secret,
            "filter": "data.amount >= 100.0",
        },
    )
    assert code == 201, created
    # No amount at all: the filter cannot say, so nothing is dropped.
    unsure = await post(h, {"customer_id": "c_1"})
    small = await post(h, {"customer_id": "c_2", "amount": 5})
    assert unsure["deliveries"] == 1 and small["deliveries"] == 0
    await h.step()
    assert receiver.received == []
    delivery = await only_delivery(h, unsure["id"])
    assert delivery["state"] == "pending" and delivery["attempts"] == 1
    (attempt,) = await attempts_of(h, delivery["id"])
    assert attempt["outcome"] == "retry" and attempt["status"] is None
    assert "amount" in attempt["error"] and "has(" in attempt["error"], attempt["error"]

    code, _ = await api(h, "PATCH", "/v1/endpoints/big-sales", {"filter": "has(data.amount) && data.amount >= 100.0"})
    assert code == 200
    await h.step(12)  # the retry is due 10s ± 20% after the first attempt
    delivery = await only_delivery(h, unsure["id"])
    assert delivery["state"] == "cancelled", delivery
    attempts = await attempts_of(h, delivery["id"])
    assert attempts[-1]["outcome"] == "filtered_out"
    assert "filter leaves this event out" in attempts[-1]["error"]
    assert receiver.received == []
    code, body = await api(h, "GET", "/v1/status")
    (shown,) = body["endpoints"]
    # Neither the failed filter nor the filtered-out check taught anything about the receiver.
    assert shown["consecutive_failures"] == 0 and shown["state"] == "healthy", shown
    with sqlite3.connect(tmp_path / "tillhook.db") as conn:
        hours = conn.execute("SELECT sum(delivered), sum(failed) FROM attempt_hours").fetchone()
    assert hours == (None, None) or hours == (0, 1), hours  # the filter's failure only; nothing sent


async def test_a_filter_failing_on_many_events_does_not_back_off_a_healthy_receiver(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    receiver: Receiver = await receivers(secret=secret)
    h = await make_harness(
        make_config(
            tmp_path,
            [
                {"name": "big-sales", "url": receiver.url, "secret": secret, "filter": "data.amount >= 100.0"},
            ],
        ),
        clock=clock,
    )
    for i in range(6):
        await post(h, {"customer_id": f"c_{i}"})  # no amount: the filter fails on each
    await h.step()
    good = await post(h, {"amount": 500})
    await h.step()
    assert [r.event_id for r in receiver.received] == [good["id"]]
    assert not h.gate("big-sales").backing_off


async def test_a_big_batch_is_filtered_in_parts_each_within_the_time_bound(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    receiver: Receiver = await receivers(secret=secret)
    h = await make_harness(
        make_config(
            tmp_path,
            [
                {"name": "big-sales", "url": receiver.url, "secret": secret, "filter": "data.amount >= 100.0"},
            ],
            server={"max_body_bytes": 8 * 2**20},
        ),
        clock=clock,
    )
    items = [{"sku": f"A{i}", "qty": i} for i in range(50)]
    batch = [
        {"type": "transaction.completed", "data": {"amount": 50 + i % 2 * 100, "items": items}} for i in range(1000)
    ]
    async with h.session.post(  # a stream: aiohttp warns of big bodies given as bytes
        h.server.make_url("/v1/events"),
        data=io.BytesIO(json.dumps(batch).encode()),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {INGEST_TOKEN}"},
    ) as response:
        assert response.status == 202, await response.text()
        replies = await response.json()
    assert [r["deliveries"] for r in replies] == [i % 2 for i in range(1000)]  # each one judged, none unsure


async def test_an_endpoint_changed_while_its_filter_runs_does_not_fail_the_ingest(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    receiver: Receiver = await receivers(secret=secret)
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    for name in ("a", "b"):
        code, _ = await api(
            h,
            "POST",
            "/v1/endpoints",
            {
                "name": name,
                "url": receiver.url,
                "secret": secret,
                "filter": "data.amount >= 100.0",
            },
        )
        assert code == 201
    sandbox = h.services.sandbox
    real_filter = sandbox.filter
    b = h.endpoint_id("b")

    async def filter_then_delete_b(source: str, events: Any) -> Any:
        verdicts = await real_filter(source, events)
        h.services.registry.remove(b)  # as a DELETE arriving meanwhile would
        return verdicts

    sandbox.filter = filter_then_delete_b  # type: ignore[method-assign]
    reply = await post(h, {"amount": 500})
    assert reply["deliveries"] == 2  # judged with the endpoints as they were when it came in


async def test_a_transform_is_the_body_signed_sent_and_logged(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    receiver: Receiver = await receivers(secret=secret)
    config = make_config(
        tmp_path,
        [
            {
                "name": "crm",
                "url": receiver.url,
                "secret": secret,
                "transform": '{"text": "Sale: " + string(data.amount), "customer": data.customer_id, "event": id}',
            }
        ],
    )
    h = await make_harness(config, clock=clock)
    reply = await post(h, {"amount": 55.39, "customer_id": "c_1"})
    await h.step()
    (got,) = receiver.received
    assert json.loads(got.body) == {"text": "Sale: 55.39", "customer": "c_1", "event": reply["id"]}
    assert got.headers["webhook-id"] == reply["id"]
    Webhook(secret).verify(got.body, got.headers)  # the independent library, on the bytes received
    assert got.verified
    delivery = await only_delivery(h, reply["id"])
    (attempt,) = await attempts_of(h, delivery["id"])
    assert attempt["body_sent"] == got.body.decode()
    code, event = await api(h, "GET", f"/v1/events/{reply['id']}")
    assert code == 200
    assert event["payload"]["data"] == {"amount": 55.39, "customer_id": "c_1"}  # the event itself is kept


async def test_a_transform_that_fails_is_a_failed_attempt_and_others_still_get_theirs(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    broken: Receiver = await receivers(secret=secret)
    plain: Receiver = await receivers(secret=secret)
    config = make_config(
        tmp_path,
        [
            {"name": "broken", "url": broken.url, "secret": secret, "transform": '{"text": "Sale: " + data.amount}'},
            {"name": "plain", "url": plain.url, "secret": secret},
        ],
    )
    h = await make_harness(config, clock=clock)
    reply = await post(h, {"amount": 55.39})
    await h.step()
    assert broken.received == [] and len(plain.received) == 1
    code, event = await api(h, "GET", f"/v1/events/{reply['id']}")
    assert code == 200
    failed = next(d for d in event["deliveries"] if d["endpoint"] == "broken")
    assert failed["state"] == "pending" and failed["attempts"] == 1
    assert "transform" in failed["last_error"], failed["last_error"]


async def test_the_extra_signature_is_a_hex_hmac_of_the_body_with_the_current_secret(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    receiver: Receiver = await receivers(secret=secret)
    config = make_config(
        tmp_path,
        [
            {
                "name": "aura",
                "url": receiver.url,
                "secret": secret,
                "extra_signature": {"header": "x-hub-signature-256"},
            }
        ],
    )
    h = await make_harness(config, clock=clock)
    await post(h, {"amount": 1})
    await h.step()
    (got,) = receiver.received
    expected = "sha256=" + hmac.new(secret.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-hub-signature-256"] == expected
    assert got.verified  # the Standard Webhooks headers are still there

    code, refused = await api(h, "POST", "/v1/endpoints/aura/rotate-secret", {"grace": "1h"})
    assert code == 409, refused  # pinned in the config file: rotate through an API-made endpoint instead
    new = new_secret()
    code, created = await api(
        h,
        "POST",
        "/v1/endpoints",
        {
            "name": "aura2",
            "url": receiver.url,
            "secret": secret,
            "extra_signature": {"header": "X-Signature"},
        },
    )
    assert code == 201, created
    code, _ = await api(h, "POST", "/v1/endpoints/aura2/rotate-secret", {"grace": "1h", "secret": new})
    assert code == 200
    await post(h, {"amount": 2})
    await h.step()
    to_second = [r for r in receiver.received if "x-signature" in r.headers]
    (latest,) = to_second
    assert latest.headers["x-signature"] == "sha256=" + hmac.new(new.encode(), latest.body, hashlib.sha256).hexdigest()
    assert len(latest.headers["webhook-signature"].split()) == 2  # both secrets sign the Standard Webhooks header


async def test_a_replay_under_a_filter_checks_it_before_sending(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    receiver: Receiver = await receivers(secret=secret)
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    small = await post(h, {"amount": 5})
    big = await post(h, {"amount": 500})
    code, _ = await api(
        h,
        "POST",
        "/v1/endpoints",
        {
            "name": "late",
            "url": receiver.url,
            "secret": secret,
            "filter": "data.amount >= 100.0",
        },
    )
    assert code == 201
    code, replayed = await api(h, "POST", "/v1/endpoints/late/replay", {"since": "1h", "only_failed": False})
    assert code == 202 and replayed["deliveries"] == 2, replayed
    await h.step()
    assert [r.event_id for r in receiver.received] == [big["id"]]
    code, event = await api(h, "GET", f"/v1/events/{small['id']}")
    assert [d["state"] for d in event["deliveries"]] == ["cancelled"]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("filter", "data.amount >", "filter"),
        ("transform", '{"text": }', "transform"),
        ("preset", "slak", "slack, discord, teams, google-chat"),
    ],
)
async def test_a_bad_expression_or_preset_is_refused_with_the_field_and_changes_nothing(
    tmp_path: Path, make_harness: Any, field: str, value: str, words: str
) -> None:
    h = await make_harness(make_config(tmp_path, []), run_dispatcher=False)
    code, problem = await api(h, "POST", "/v1/endpoints", {"name": "x", "url": "http://127.0.0.1:9/h", field: value})
    assert code == 422, problem
    (error,) = problem["errors"]
    assert error["field"] == field and words in error["message"] + field, error
    code, page = await api(h, "GET", "/v1/endpoints")
    assert page["data"] == []


async def test_an_extra_signature_header_may_not_be_one_tillhook_sets_or_a_static_one(
    tmp_path: Path, make_harness: Any
) -> None:
    h = await make_harness(make_config(tmp_path, []), run_dispatcher=False)
    base = {"name": "x", "url": "http://127.0.0.1:9/h"}
    code, problem = await api(h, "POST", "/v1/endpoints", {**base, "extra_signature": {"header": "webhook-signature"}})
    assert code == 422 and "set by tillhook" in json.dumps(problem), problem
    code, problem = await api(
        h,
        "POST",
        "/v1/endpoints",
        {
            **base,
            "headers": {"X-Sig": "1"},
            "extra_signature": {"header": "x-sig"},
        },
    )
    assert code == 422 and "also one of the endpoint's headers" in json.dumps(problem), problem
    code, _ = await api(h, "POST", "/v1/endpoints", {**base, "extra_signature": {"header": "X-Sig"}})
    assert code == 201
    code, problem = await api(h, "PATCH", "/v1/endpoints/x", {"headers": {"x-sig": "2"}})
    assert code == 422, problem
    code, cleared = await api(h, "PATCH", "/v1/endpoints/x", {"extra_signature": None, "headers": {"x-sig": "2"}})
    assert code == 200 and cleared["extra_signature"] is None, cleared


async def test_the_fields_survive_a_restart(tmp_path: Path, make_harness: Any) -> None:
    h = await make_harness(make_config(tmp_path, []), run_dispatcher=False)
    spec = {
        "name": "x",
        "url": "http://127.0.0.1:9/h",
        "filter": "data.amount > 1.0",
        "transform": '{"a": 1}',
        "preset": "slack",
        "extra_signature": {"header": "X-Sig", "scheme": "sha256-hex"},
    }
    code, created = await api(h, "POST", "/v1/endpoints", spec)
    assert code == 201, created
    await h.session.close()
    await h.server.close()
    h = await make_harness(make_config(tmp_path, []), run_dispatcher=False)
    code, shown = await api(h, "GET", "/v1/endpoints/x")
    assert {k: shown[k] for k in spec if k not in ("name", "url")} == {
        k: v for k, v in spec.items() if k not in ("name", "url")
    }
    with sqlite3.connect(tmp_path / "tillhook.db") as conn:
        (stored,) = conn.execute("SELECT filter FROM endpoints WHERE name = 'x'").fetchone()
    assert stored == "data.amount > 1.0"


async def test_after_a_stop_at_its_bound_a_transform_waits_before_it_is_evaluated_again(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    receiver: Receiver = await receivers(secret=secret)
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    code, _ = await api(
        h,
        "POST",
        "/v1/endpoints",
        {
            "name": "slow",
            "url": receiver.url,
            "secret": secret,
            "max_in_flight": 3,
            "transform": "lists.range(100000).map(x, lists.range(100000).map(y, x * y))",
        },
    )
    assert code == 201
    ids = [(await post(h, {"n": i}))["id"] for i in range(3)]
    await h.step()
    errors = sorted([(await only_delivery(h, event_id))["last_error"] for event_id in ids])
    # Stopped on two events, it is the transform that is the trouble: the third waits.
    assert errors[1:] == ["the transform was stopped after 250 ms, its time bound"] * 2, errors
    assert errors[0].startswith("not evaluated: at an earlier attempt the transform was stopped"), errors

    # Changed, it is evaluated at once: no waiting out a stop of the old one.
    code, _ = await api(h, "PATCH", "/v1/endpoints/slow", {"transform": '{"n": data.n}'})
    assert code == 200
    await h.step(12)
    assert sorted(json.loads(r.body)["n"] for r in receiver.received) == [0, 1, 2]


async def test_a_filter_stopped_at_its_bound_stops_holding_up_ingest(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    """A runaway filter costs the first batch its time bound; the next batches are taken at
    once, their deliveries made to be checked before each attempt (nothing is dropped)."""
    receiver: Receiver = await receivers(secret=secret)
    runaway = "size(lists.range(100000).map(x, lists.range(100000).map(y, x * y))) > 0"
    h = await make_harness(
        make_config(
            tmp_path,
            [
                {"name": "slow", "url": receiver.url, "secret": secret, "filter": runaway},
            ],
        ),
        clock=clock,
    )
    first = await post(h, {"n": 0})
    assert first["deliveries"] == 1
    assert h.services.sandbox.pid is None  # the child was stopped at the bound
    second = await post(h, {"n": 1})
    assert second["deliveries"] == 1
    assert h.services.sandbox.pid is None  # and not started again for this filter
    code, _ = await api(h, "PATCH", "/v1/endpoints/slow", {"filter": "data.n >= 1"})
    assert code == 409  # config-managed; an API-made endpoint is changed the same way below
    code, _ = await api(
        h,
        "POST",
        "/v1/endpoints",
        {
            "name": "api-made",
            "url": receiver.url,
            "secret": secret,
            "filter": runaway,
        },
    )
    await post(h, {"n": 2})
    code, _ = await api(h, "PATCH", "/v1/endpoints/api-made", {"filter": "data.n >= 3"})
    assert code == 200
    third = await post(h, {"n": 3})
    assert third["deliveries"] == 2  # the changed filter is evaluated at once
    assert h.services.sandbox.pid is not None


async def test_one_event_too_big_for_a_transform_holds_up_only_itself(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: FakeClock, secret: str
) -> None:
    receiver: Receiver = await receivers(secret=secret)
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    code, _ = await api(
        h,
        "POST",
        "/v1/endpoints",
        {
            "name": "chat",
            "url": receiver.url,
            "secret": secret,
            "max_in_flight": 1,
            "transform": '{"n": size(lists.range(data.n).map(x, x))}',  # quadratic in data.n
        },
    )
    assert code == 201
    huge = await post(h, {"n": 100_000})
    await h.step()
    assert (await only_delivery(h, huge["id"]))[
        "last_error"
    ] == "the transform was stopped after 250 ms, its time bound"
    small = [await post(h, {"n": n}) for n in (1, 2)]
    await h.step()
    assert [json.loads(r.body) for r in receiver.received] == [{"n": 1}, {"n": 2}]
    await h.step(12)  # the huge one's retry, within its 30 s: not evaluated again yet
    assert (await only_delivery(h, huge["id"]))["last_error"].startswith("not evaluated: at an earlier attempt")
    for reply in small:
        assert (await only_delivery(h, reply["id"]))["state"] == "delivered"
