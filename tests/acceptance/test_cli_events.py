"""`tillhook events list|show`, and any command's output piped into a reader that stops early."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import write_config
from tests.acceptance.test_cli_admin import Ok, run_cli


async def post(http: aiohttp.ClientSession, daemon: Any, body: Any) -> Any:
    async with http.post(f"{daemon.url}/v1/events", json=body, headers=daemon.headers()) as response:
        assert response.status == 202
        return await response.json()


async def test_events_list_and_show(tmp_path: Path, receivers: Any, daemons: Any, http: aiohttp.ClientSession) -> None:
    behaviour = Ok()
    receiver = await receivers(behaviour=behaviour)
    config = write_config(tmp_path / "tillhook.toml", [{"name": "shop", "url": receiver.url, "events": ["sale.*"]}])
    daemon = await daemons(config).start()
    base = ("--config", str(config), "--daemon", daemon.url)
    sale = await post(http, daemon, {"type": "sale.completed", "data": {"total": 9}, "id": "pos-1"})
    refund = await post(http, daemon, {"type": "refund.issued", "data": {"total": 3}})
    await behaviour.wait_for_all({sale["id"]}, timeout_s=30)

    code, out, err = await run_cli("events", "list", *base)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "IDEMPOTENCY_KEY", "RECEIVED_AT"]
    assert [line.split()[0] for line in lines[1:]] == [refund["id"], sale["id"]]  # newest first

    code, out, err = await run_cli("events", "list", "--type", "sale.*", "--since", "1h", "--json", *base)
    assert code == 0, err
    assert [e["id"] for e in json.loads(out)["data"]] == [sale["id"]]
    code, out, err = await run_cli("events", "list", "--until", "1h", "--json", *base)
    assert code == 0 and json.loads(out)["data"] == [], err

    code, out, err = await run_cli("events", "list", "--limit", "1", *base)
    assert code == 0 and refund["id"] in out and sale["id"] not in out
    cursor = err.split("--cursor", 1)[1].split()[0]
    code, out, err = await run_cli("events", "list", "--limit", "1", "--cursor", cursor, *base)
    assert code == 0 and sale["id"] in out and refund["id"] not in out, err

    code, out, err = await run_cli("events", "show", sale["id"], *base)
    assert code == 0, err
    assert any(line.split() == ["idempotency_key", "pos-1"] for line in out.splitlines())
    payload = out.split("payload:\n", 1)[1].split("\n\ndeliveries:", 1)[0]
    assert json.loads(payload)["data"] == {"total": 9}
    deliveries = out.split("deliveries:\n", 1)[1].splitlines()
    assert deliveries[0].split()[:3] == ["ID", "STATE", "ENDPOINT"] and deliveries[1].split()[1:3] == [
        "delivered",
        "shop",
    ]
    code, out, err = await run_cli("events", "show", sale["id"], "--json", *base)
    assert code == 0 and json.loads(out)["deliveries"][0]["endpoint"] == "shop", err

    code, _, err = await run_cli("events", "show", "msg_nope", *base)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1


async def run_into_closed_pipe(*args: str) -> tuple[int, str]:
    """The command's stdout is a pipe whose reader is already gone: every write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tillhook", *args, stdout=write_end, stderr=asyncio.subprocess.PIPE
        )
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_output_into_a_pipe_closed_early_exits_quietly(
    tmp_path: Path, daemons: Any, http: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    base = ("--config", str(config), "--daemon", daemon.url)
    await post(http, daemon, [{"type": "sale.completed", "data": {"n": n, "note": "x" * 100}} for n in range(1000)])

    # Small output fails at the last flush, large output in the middle of printing.
    for args in (("status",), ("events", "list", "--limit", "500", "--json")):
        code, err = await run_into_closed_pipe(*args, *base)
        assert (code, err) == (1, ""), args

    # As a person would: `tillhook events list --json | head -n 1` (500 events is more than
    # a pipe holds, so the command is still writing when head exits).
    read_end, write_end = os.pipe()
    try:
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tillhook",
            "events",
            "list",
            "--limit",
            "500",
            "--json",
            *base,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
        head = await asyncio.create_subprocess_exec("head", "-n", "1", stdin=read_end, stdout=asyncio.subprocess.PIPE)
    finally:
        os.close(read_end)
        os.close(write_end)
    first, _ = await asyncio.wait_for(head.communicate(), 60)
    _, err = await asyncio.wait_for(cli.communicate(), 60)
    assert first.decode() == "{\n"
    assert "Traceback" not in err.decode() and "BrokenPipe" not in err.decode() and cli.returncode == 1
