"""The real daemon keeps the credentials of an endpoint's URL out of its log and its attempt
log, and refuses to start on a config endpoint it could never deliver to."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import ADMIN_TOKEN, write_config

SECRETS = ("secret-pass", "secret-token", "other-pass", "other-token")


async def test_credentials_in_urls_are_in_neither_the_log_nor_the_attempt_log(
    tmp_path: Path, daemons: Any, http: aiohttp.ClientSession, closed_port: int, not_http: int
) -> None:
    endpoints = [
        {"name": "closed", "url": f"http://user:secret-pass@127.0.0.1:{closed_port}/h?token=secret-token"},
        {"name": "garbled", "url": f"http://someone:other-pass@127.0.0.1:{not_http}/h?token=other-token"},
    ]
    config = write_config(tmp_path / "tillhook.toml", endpoints, log={"level": "debug"})
    daemon = await daemons(config).start()
    async with http.post(
        f"{daemon.url}/v1/events", json={"type": "sale.completed", "data": {}}, headers=daemon.headers()
    ) as response:
        assert response.status == 202
    failed: set[str] = set()
    since = 0
    while failed != {"closed", "garbled"}:  # one retry line per endpoint; each wait is bounded
        line = await daemon.wait_log("delivery_retry_scheduled", since=since)
        since = daemon.log.index(line) + 1
        failed.add(line["endpoint"])
        assert "127.0.0.1" in line["error"]

    admin = daemon.headers(ADMIN_TOKEN)
    async with http.get(f"{daemon.url}/v1/deliveries", headers=admin) as response:
        listed = (await response.json())["data"]
    stored = []
    for row in listed:
        async with http.get(f"{daemon.url}/v1/deliveries/{row['id']}", headers=admin) as response:
            detail = await response.json()
        stored += [detail["last_error"], *(a["error"] for a in detail["attempt_log"])]
    async with http.get(f"{daemon.url}/v1/status", headers=admin) as response:
        stored += [e["last_failure_reason"] for e in (await response.json())["endpoints"]]
    assert all(text and "127.0.0.1" in text for text in stored), stored
    assert any("/h?token=***" in text for text in stored), stored  # aiohttp quoted the URL
    await daemon.terminate()
    written = json.dumps(daemon.log) + json.dumps(stored)
    for secret in SECRETS:
        assert secret not in written, daemon.log_text()


async def test_serve_refuses_a_config_endpoint_it_could_never_deliver_to(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tillhook.toml", [{"name": "meta", "url": "http://169.254.169.254/latest"}])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tillhook",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "endpoints[0].url: 169.254.169.254 is a link-local address" in err.decode()
    assert "delivery.allow_networks" in err.decode() and "Traceback" not in err.decode()
    assert not (tmp_path / "tillhook.db").exists()  # nothing was created
