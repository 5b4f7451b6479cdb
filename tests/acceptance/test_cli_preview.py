"""`tillhook endpoints preview` and the filter, transform, preset and extra signature options of
`endpoints add|update`, as a user runs them against the real daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import write_config
from tests.acceptance.test_cli_admin import run_cli

TRANSPORT = {"host", "content-length", "accept", "accept-encoding"}
SALE = {"type": "sale.completed", "data": {"amount": 55.39}}


def _request(out: str) -> tuple[str, dict[str, str], Any]:
    """The printed request: its first line, its headers, its body."""
    head, blank, body = out.partition("\n\n")
    assert blank, out
    first, *lines = head.splitlines()
    return first, dict(line.split(": ", 1) for line in lines), json.loads(body)


async def test_preview_prints_the_request_a_real_delivery_makes(
    tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession
) -> None:
    receiver = await receivers()
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    base = ("--config", str(config), "--daemon", daemon.url)

    async def cli(*args: str, expect: int = 0) -> tuple[str, str]:
        code, out, err = await run_cli(*args, *base)
        assert code == expect, f"{args}: {code} {out} {err}"
        assert "Traceback" not in err
        return out, err

    out, _ = await cli(
        "endpoints",
        "add",
        "shop",
        receiver.url,
        "--header",
        "x-key=abc",
        "--transform",
        '{"total": data.amount}',
        "--extra-signature",
        "x-sig",
        "--filter",
        "data.amount > 10.0",
        "--json",
    )
    created = json.loads(out)
    assert (created["filter"], created["transform"], created["extra_signature"]) == (
        "data.amount > 10.0",
        '{"total": data.amount}',
        {"header": "x-sig", "scheme": "sha256-hex"},
    )
    async with http.post(f"{daemon.url}/v1/events", json=SALE, headers=daemon.headers()) as response:
        event_id = (await response.json())["id"]
    await receiver.wait_count(1)
    (sent,) = receiver.received

    out, err = await cli("endpoints", "preview", "shop", "--event-id", event_id)
    first, headers, body = _request(out)
    assert first == f"POST {receiver.url}" and err == ""
    assert {name.lower() for name in headers} == set(sent.headers) - TRANSPORT
    assert headers["x-key"] == "***" and "abc" not in out
    assert headers["webhook-signature"] == "v1,… (computed when sent)"
    assert headers["x-sig"] == "sha256=… (computed when sent)"
    assert headers["webhook-id"] == event_id and body == json.loads(sent.body) == {"total": 55.39}
    out, _ = await cli("endpoints", "preview", "shop", "--event-id", event_id, "--json")
    assert json.loads(out)["request"]["body_text"].encode() == sent.body

    # A new event, whole or as --type and --data; the filter's verdict in words.
    out, _ = await cli("endpoints", "preview", "shop", "--event", json.dumps({**SALE, "data": {"amount": 12.5}}))
    assert _request(out)[2] == {"total": 12.5}
    out, _ = await cli("endpoints", "preview", "shop", "--type", "sale.completed", "--data", '{"amount": 1.5}')
    assert out.strip() == "the filter of shop leaves this event out: no delivery, nothing sent"
    out, _ = await cli(
        "endpoints", "preview", "shop", "--type", "sale.completed", "--data", '{"amount": 1.5}', "--json"
    )
    assert json.loads(out)["filtered_out"] is True and json.loads(out)["request"] is None
    # A type its events do not take: said on stderr, the request still shown.
    await cli("endpoints", "update", "shop", "--events", "refund.*")
    out, err = await cli("endpoints", "preview", "shop", "--event-id", event_id)
    assert "note:" in err and "refund.*" in err and _request(out)[2] == {"total": 55.39}

    # A filter that fails on the event: the error, and exit 1.
    await cli("endpoints", "update", "shop", "--filter", "data.missing > 1.0", "--events", "*")
    out, err = await cli("endpoints", "preview", "shop", "--event-id", event_id, expect=1)
    assert out == "" and "filter" in err
    out, _ = await cli("endpoints", "preview", "shop", "--event-id", event_id, "--json", expect=1)
    assert "filter" in json.loads(out)["error"]

    # Mistakes are one sentence and exit 2.
    for args, words in [
        (("--event", "{nope"), "--event is not valid JSON"),
        (("--type", "sale.completed", "--data", "[1,"), "--data is not valid JSON"),
        (("--event", "{}", "--event-id", event_id), "not allowed with"),
        (("--event-id", "msg_nope"), "msg_nope"),
        (("--event", '{"type": "sale completed", "data": {}}'), "event.type"),
    ]:
        code, _, err = await run_cli("endpoints", "preview", "shop", *args, *base)
        assert code == 2 and words in err and "Traceback" not in err, (args, err)
    code, _, err = await run_cli("endpoints", "preview", "shop", *base)
    assert code == 2 and "--event-id" in err
    (listed,) = json.loads((await cli("events", "list", "--json"))[0])["data"]
    assert listed["id"] == event_id  # previews stored no event
    assert len(receiver.received) == 1  # and sent nothing


async def test_add_and_update_set_show_and_clear_each_field(tmp_path: Path, receivers: Any, daemons: Any) -> None:
    receiver = await receivers()
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    base = ("--config", str(config), "--daemon", daemon.url)

    async def cli(*args: str) -> str:
        code, out, err = await run_cli(*args, *base)
        assert code == 0, f"{args}: {err}"
        return out

    await cli(
        "endpoints",
        "add",
        "chat",
        receiver.url,
        "--preset",
        "slack",
        "--filter",
        "data.amount > 100.0 && type.startsWith('sale.')",
    )
    table = await cli("endpoints", "list")
    header, row = table.splitlines()
    columns = header.split()
    assert columns[columns.index("FILTER") :][:3] == ["FILTER", "BODY", "EXTRA_SIGNATURE"]
    assert "data.amount > 100.0 && type.startsWith(…" in row and "preset:slack" in row
    shown = await cli("endpoints", "show", "chat")
    assert any(
        line.split(None, 1) == ["filter", "data.amount > 100.0 && type.startsWith('sale.')"]
        for line in shown.splitlines()
    )
    assert any(line.split() == ["preset", "slack"] for line in shown.splitlines())

    updated = json.loads(
        await cli(
            "endpoints",
            "update",
            "chat",
            "--transform",
            '{"t": type}',
            "--extra-signature",
            "X-Hub-Signature-256",
            "--json",
        )
    )
    assert updated["transform"] == '{"t": type}' and updated["extra_signature"]["header"] == "X-Hub-Signature-256"
    assert "transform" in (await cli("endpoints", "list")).splitlines()[1]
    cleared = json.loads(
        await cli(
            "endpoints",
            "update",
            "chat",
            "--filter",
            "off",
            "--transform",
            "off",
            "--preset",
            "off",
            "--extra-signature",
            "off",
            "--json",
        )
    )
    assert [cleared[k] for k in ("filter", "transform", "preset", "extra_signature")] == [None] * 4

    for args, words in [
        (("--preset", "myspace"), "preset"),
        (("--filter", "data.amount >"), "filter"),
        (("--extra-signature", "webhook-signature"), "extra_signature.header"),
    ]:
        code, _, err = await run_cli("endpoints", "update", "chat", *args, *base)
        assert code == 2 and words in err and "Traceback" not in err, (args, err)
