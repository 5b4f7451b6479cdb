"""The configs in examples/: each passes `tillhook check-config`, catalogues its vendor's event
types, and runs: a real `tillhook serve` on a copy of it delivers a typed test of every type
with an example to a loopback receiver, signed, with the example as data and "test": true, and
its own endpoints keep the marker through their transforms and presets."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.acceptance.conftest import ADMIN_TOKEN, INGEST_TOKEN, VIEWER_TOKEN, toml_value
from tests.acceptance.test_cli_admin import run_cli
from tillhook.config import validate_config
from tillhook.models import AttemptResult
from tillhook.retry import RetryPolicy, Verdict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Each vendor's event types, as its webhook documentation lists them.
VENDORS = {
    "cockato.toml": {"transaction.completed", "punchcard.completed", "customer.created", "reward.redeemed"},
    "nopos.toml": {
        "inventory.updated",
        "inventory.low_stock",
        "product.created",
        "product.updated",
        "transaction.created",
        "transaction.completed",
        "transaction.refunded",
        "payment.succeeded",
        "payment.failed",
        "customer.created",
        "customer.updated",
        "loyalty.points_earned",
        "loyalty.reward_redeemed",
    },
    "aurapos.toml": {
        "ticket.created",
        "ticket.cancelled",
        "client.created",
        "client.updated",
        "produit.updated",
        "promotion.created",
        "promotion.updated",
    },
}

# The keys of the vendor's own envelope, which each example's transform rebuilds for a
# receiver written for that vendor, and the key that carries the event's data in it.
VENDOR_ENVELOPES = {
    "loyalty-sync": (["data", "event", "timestamp"], "data"),
    "online-shop": (["created_at", "data", "id", "type"], "data"),
    "erp": (["created_at", "delivery_id", "event", "payload"], "payload"),
}


def write_toml(path: Path, raw: dict[str, Any]) -> Path:
    """A config as tables and arrays of tables, every value inline."""
    lines = []
    for name, value in raw.items():
        tables = value if isinstance(value, list) else [value]
        for table in tables:
            lines.append(f"[[{name}]]" if isinstance(value, list) else f"[{name}]")
            lines.extend(f"{json.dumps(key)} = {toml_value(item)}" for key, item in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def runnable_copy(example: Path, directory: Path, receiver: str) -> Path:
    """The example as it is, but on a free loopback port, with its own database and tokens,
    allowed to deliver to a receiver on 127.0.0.1 over http, and each of its endpoints sending
    there (at `receiver`/its name) instead of to the vendor's or chat service's URL."""
    raw = tomllib.loads(example.read_text(encoding="utf-8"))
    raw["endpoints"] = [own | {"url": f"{receiver}/{own['name']}"} for own in raw["endpoints"]]
    raw["server"] |= {"listen": "127.0.0.1:0", "shutdown_grace": "5s"}
    raw["auth"] = {"ingest_token": INGEST_TOKEN, "admin_token": ADMIN_TOKEN, "viewer_token": VIEWER_TOKEN}
    raw["storage"] |= {"path": str(directory / "tillhook.db")}
    raw["delivery"] |= {"allow_http": True, "allow_networks": ["127.0.0.0/8"], "retry_schedule": ["200ms", "1s"]}
    return write_toml(directory / example.name, raw)


def test_the_examples_are_the_three_vendors() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == sorted(VENDORS)
    listed = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for name, types in VENDORS.items():
        assert name in listed
        for event_type in types:
            assert f"`{event_type}`" in listed, (name, event_type)


@pytest.mark.parametrize("name", sorted(VENDORS))
async def test_each_example_passes_check_config_and_catalogues_its_vendors_types(name: str) -> None:
    path = EXAMPLES / name
    code, out, err = await run_cli("check-config", str(path))
    assert code == 0, err
    assert out.startswith(f"{path}: ok")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    catalogue = raw["event_types"]
    assert [t["name"] for t in catalogue if t["name"] in VENDORS[name]] == [t["name"] for t in catalogue]
    assert {t["name"] for t in catalogue} == VENDORS[name]
    for spec in catalogue:
        assert spec["description"] and spec["strict"] is False, spec["name"]
        assert ("example" in spec) <= ("schema" in spec), spec["name"]  # an example is checked against a schema
    assert any("example" in t for t in catalogue)  # each vendor documents at least one payload
    assert raw["endpoints"]


@pytest.mark.parametrize("name", sorted(VENDORS))
async def test_a_typed_test_of_every_example_type_arrives_signed_with_its_example(
    name: str, tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    example = EXAMPLES / name
    catalogue = tomllib.loads(example.read_text(encoding="utf-8"))
    receiver, theirs = await receivers(), await receivers()
    config = runnable_copy(example, tmp_path, theirs.url.rsplit("/", 1)[0])
    daemon = await daemons(config).start()
    admin = daemon.headers(ADMIN_TOKEN)
    # Subscribed to nothing the vendor sends: a test goes to its endpoint whatever it subscribes to.
    endpoint = {"name": "test-receiver", "url": receiver.url, "events": ["not.subscribed"]}
    async with http.post(f"{daemon.url}/v1/endpoints", json=endpoint, headers=admin) as response:
        assert response.status == 201, await response.text()
        receiver.secret = (await response.json())["secret"]

    examples = {t["name"]: t["example"] for t in catalogue["event_types"] if "example" in t}
    cli = ("--config", str(config), "--daemon", daemon.url)
    sent: dict[str, str] = {}
    for event_type in sorted(examples):
        code, out, err = await run_cli("endpoints", "test", "test-receiver", "--type", event_type, "--json", *cli)
        assert code == 0, err
        reply = json.loads(out)
        assert reply["event_type"] == event_type
        sent[reply["event_id"]] = event_type
    await receiver.wait_count(len(sent))
    assert sorted(r.event_id for r in receiver.received) == sorted(sent)
    for got in receiver.received:
        assert got.verified, got.headers  # by the standardwebhooks package, with the secret the API gave
        envelope = json.loads(got.body)
        event_type = sent[got.event_id]
        assert envelope["type"] == event_type and envelope["test"] is True
        assert envelope["data"] == examples[event_type]

    # A type whose vendor shows no payload has no example: said in one sentence, exit 2.
    bare = sorted(t["name"] for t in catalogue["event_types"] if "example" not in t)[0]
    code, _, err = await run_cli("endpoints", "test", "test-receiver", "--type", bare, *cli)
    assert code == 2 and f"{bare} has no example in the catalogue" in err and "Traceback" not in err

    # The example's own endpoints make a request of every example (their transforms run), and
    # those written for the vendor's receivers get the vendor's envelope around the data.
    for own in catalogue["endpoints"]:
        for event_type, data in examples.items():
            body = {"event": {"type": event_type, "data": data}}
            async with http.post(
                f"{daemon.url}/v1/endpoints/{own['name']}/preview", json=body, headers=admin
            ) as response:
                assert response.status == 200, await response.text()
                preview = await response.json()
            assert preview["error"] is None and preview["request"] is not None, preview
            if own["name"] in VENDOR_ENVELOPES:
                keys, data_key = VENDOR_ENVELOPES[own["name"]]
                assert sorted(preview["request"]["body"]) == keys
                assert preview["request"]["body"][data_key] == data
    assert {e["name"] for e in catalogue["endpoints"]} & set(VENDOR_ENVELOPES)

    # A typed test through each of them keeps its marker: beside the vendor's envelope, which
    # an event from the POS gets as it is, or in a chat message's title.
    first = sorted(examples)[0]
    for own in catalogue["endpoints"]:
        code, _, err = await run_cli("endpoints", "test", own["name"], "--type", first, *cli)
        assert code == 0, err
    await theirs.wait_count(len(catalogue["endpoints"]))
    got = {r.path.removeprefix("/"): json.loads(r.body) for r in theirs.received}
    assert sorted(got) == sorted(e["name"] for e in catalogue["endpoints"])
    for own in catalogue["endpoints"]:
        body = got[own["name"]]
        if own["name"] in VENDOR_ENVELOPES:
            keys, data_key = VENDOR_ENVELOPES[own["name"]]
            assert sorted(body) == sorted([*keys, "test"]) and body["test"] is True, body
            assert body[data_key] == examples[first]
        else:
            assert own.get("preset") == "slack"  # the only other kind the examples have
            assert body["blocks"][0]["text"]["text"].startswith("[test] "), body


def test_the_nopos_example_says_how_to_retry_as_nopos_did_and_no_longer() -> None:
    """NoPOS tries once and retries after 5m, 30m, 2h and 12h (14h35m in all), then stops:
    the advice in the example's [delivery] comment, applied, does that, within tillhook's
    jitter and one last try at its end, and retries nothing after 15h."""
    text = (EXAMPLES / "nopos.toml").read_text(encoding="utf-8")
    block = text.split("[delivery]", 1)[1].split("\n\n", 1)[0]
    advice = " ".join(line.removeprefix("#").strip() for line in block.splitlines() if line.startswith("#"))
    schedule = re.search(r"retry_schedule = (\[[^]]*\])", advice)
    give_up = re.search(r'give_up_after = ("[^"]*")', advice)
    assert schedule and give_up, advice
    raw = tomllib.loads(text)
    raw["delivery"] |= tomllib.loads(f"retry_schedule = {schedule[1]}\ngive_up_after = {give_up[1]}")
    delivery = validate_config(raw, "nopos.toml").delivery
    policy = RetryPolicy(tuple(delivery.retry_schedule), delivery.give_up_after)
    for draw in (0.0, 0.5, 1.0):  # each delay at its shortest, as written, at its longest
        attempts, now = [0.0], 0.0
        while True:
            decision = policy.decide(AttemptResult(now, 5.0, status=500), len(attempts), 0.0, now, lambda d=draw: d)
            if decision.verdict is Verdict.FAILED:
                break
            assert decision.verdict is Verdict.RETRY and decision.next_attempt_at is not None
            now = decision.next_attempt_at
            attempts.append(now)
        assert 5 <= len(attempts) <= 6 and attempts[-1] <= 15 * 3600, (draw, attempts)
        written = [0.0, 300.0, 2100.0, 9300.0, 52500.0]  # NoPOS's own times, without jitter
        assert all(abs(a - w) <= 0.2 * w for a, w in zip(attempts, written, strict=False)), (draw, attempts)
