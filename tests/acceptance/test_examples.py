"""The configs in examples/: each passes `tillhook check-config`, catalogues its vendor's event
types, and runs: a real `tillhook serve` on a copy of it delivers a typed test of every type
with an example to a loopback receiver, signed, with the example as data and "test": true."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.acceptance.conftest import ADMIN_TOKEN, INGEST_TOKEN, VIEWER_TOKEN, toml_value
from tests.acceptance.test_cli_admin import run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Each vendor's event types, as its webhook documentation lists them.
SEEDS = {
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


def runnable_copy(example: Path, directory: Path) -> Path:
    """The example as it is, but on a free loopback port, with its own database and tokens,
    and allowed to deliver to a receiver on 127.0.0.1 over http."""
    raw = tomllib.loads(example.read_text(encoding="utf-8"))
    raw["server"] |= {"listen": "127.0.0.1:0", "shutdown_grace": "5s"}
    raw["auth"] = {"ingest_token": INGEST_TOKEN, "admin_token": ADMIN_TOKEN, "viewer_token": VIEWER_TOKEN}
    raw["storage"] |= {"path": str(directory / "tillhook.db")}
    raw["delivery"] |= {"allow_http": True, "allow_networks": ["127.0.0.0/8"], "retry_schedule": ["200ms", "1s"]}
    return write_toml(directory / example.name, raw)


def test_the_examples_are_the_three_seeds() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == sorted(SEEDS)
    listed = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for name, types in SEEDS.items():
        assert name in listed
        for event_type in types:
            assert f"`{event_type}`" in listed, (name, event_type)


@pytest.mark.parametrize("name", sorted(SEEDS))
async def test_each_example_passes_check_config_and_catalogues_its_vendors_types(name: str) -> None:
    path = EXAMPLES / name
    code, out, err = await run_cli("check-config", str(path))
    assert code == 0, err
    assert out.startswith(f"{path}: ok")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    catalogue = raw["event_types"]
    assert [t["name"] for t in catalogue if t["name"] in SEEDS[name]] == [t["name"] for t in catalogue]
    assert {t["name"] for t in catalogue} == SEEDS[name]
    for spec in catalogue:
        assert spec["description"] and spec["strict"] is False, spec["name"]
        assert ("example" in spec) <= ("schema" in spec), spec["name"]  # an example is checked against a schema
    assert any("example" in t for t in catalogue)  # each vendor documents at least one payload
    assert raw["endpoints"]


@pytest.mark.parametrize("name", sorted(SEEDS))
async def test_a_typed_test_of_every_example_type_arrives_signed_with_its_example(
    name: str, tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    example = EXAMPLES / name
    catalogue = tomllib.loads(example.read_text(encoding="utf-8"))
    config = runnable_copy(example, tmp_path)
    daemon = await daemons(config).start()
    admin = daemon.headers(ADMIN_TOKEN)
    receiver = await receivers()
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
