"""One daemon per database: a second `tillhook serve` on the same database, however it is
pointed there (the same config, another port, another config file with a relative path), is
refused before it touches anything; the first daemon's deliveries in flight are not sent
twice and its endpoints stay as they are."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import ADMIN_TOKEN, write_config
from tests.support import Receiver, hang_until_released

EVENTS = 40
IN_FLIGHT = 8


async def serve_once(config: Path, cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tillhook",
        "serve",
        "--config",
        str(config),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"the second `serve` on {config.name} kept running beside the first") from None
    assert process.returncode is not None
    return process.returncode, err.decode()


async def admin_get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_a_second_serve_on_the_same_database_is_refused_and_changes_nothing(
    tmp_path: Path, daemons: Any, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()
    receiver = await Receiver(behaviour=hang_until_released(release)).start()
    try:
        hook = {"name": "hook", "url": receiver.url, "max_in_flight": IN_FLIGHT}
        # Attempts stay held for as long as the test needs, never timed out and retried.
        first_config = write_config(tmp_path / "first.toml", [hook], delivery={"timeout": "60s"})
        first = await daemons(first_config).start()
        assert first.process is not None
        acked = []
        for n in range(EVENTS):
            body = {"type": "sale.completed", "data": {"n": n}}
            async with http.post(f"{first.url}/v1/events", json=body, headers=first.headers()) as response:
                assert response.status == 202
                acked.append((await response.json())["id"])
        await receiver.wait_count(IN_FLIGHT)  # held by the receiver: in flight
        in_flight = await admin_get(http, f"{first.url}/v1/deliveries?state=delivering")
        assert len(in_flight["data"]) == IN_FLIGHT

        listen = first.url.removeprefix("http://")
        same_port = write_config(tmp_path / "same-port.toml", [], server={"listen": listen})
        # No endpoints: had it run, it would have disabled the first one's.
        relative = write_config(tmp_path / "relative.toml", [], storage={"path": "tillhook.db"})
        for config in (first_config, same_port, relative):
            code, err = await serve_once(config, cwd=tmp_path)
            assert code == 1, err
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert f"pid {first.process.pid}" in err and f"listening on {listen}" in err, err
            assert "in use by another tillhook" in err, err

        # Nothing changed: the attempts in flight were not put back to pending, the endpoint
        # is still enabled, and the first daemon still takes events.
        still = await admin_get(http, f"{first.url}/v1/deliveries?state=delivering")
        assert {d["id"] for d in still["data"]} == {d["id"] for d in in_flight["data"]}
        (endpoint,) = (await admin_get(http, f"{first.url}/v1/endpoints"))["data"]
        assert endpoint["name"] == "hook" and endpoint["enabled"] is True
        assert len(receiver.received) == IN_FLIGHT  # nothing re-sent meanwhile

        release.set()
        await receiver.wait_for(lambda got: {r.event_id for r in got} >= set(acked), timeout_s=60)
        assert await first.terminate() == 0
        counts = Counter(receiver.event_ids())
        assert set(counts) == set(acked) and max(counts.values()) == 1, counts.most_common(3)
    finally:
        await receiver.stop()


async def test_the_database_is_free_again_once_its_daemon_has_stopped(tmp_path: Path, daemons: Any) -> None:
    config = write_config(tmp_path / "tillhook.toml", [])
    first = await daemons(config).start()
    assert await first.terminate() == 0
    second = await daemons(config).start()  # the lock went with the first process
    assert await second.terminate() == 0
    first = await daemons(config).start()
    await first.kill()  # a kill -9 releases it too
    assert await daemons(config).start()
