"""`tillhook backup` under load: the copy opens, passes an integrity check, and holds every
event acknowledged before the backup began."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import write_config


async def test_backup_under_load_holds_everything_acknowledged_before_it(
    tmp_path: Path, daemons: Any, http: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    acked: list[str] = []
    stop, enough = asyncio.Event(), asyncio.Event()

    async def poster() -> None:
        for n in range(3000):  # bounded even if the backup never finishes
            if stop.is_set():
                return
            async with http.post(
                f"{daemon.url}/v1/events", json={"type": "sale.completed", "data": {"n": n}}, headers=daemon.headers()
            ) as response:
                assert response.status == 202
                acked.append((await response.json())["id"])
                if len(acked) >= 300:
                    enough.set()

    load = [asyncio.create_task(poster()) for _ in range(8)]
    await asyncio.wait_for(enough.wait(), 60)
    before = set(acked)
    target = tmp_path / "copy.db"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tillhook",
        "backup",
        str(target),
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    stop.set()
    await asyncio.gather(*load)
    assert process.returncode == 0, err.decode()
    assert "backed up" in out.decode()

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute("SELECT id FROM events")}
    assert before <= stored
    assert len(stored) <= len(acked) + 8  # nothing invented; at most the requests mid-commit
    # A second backup to the same name is refused rather than overwriting it.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tillhook",
        "backup",
        str(target),
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1 and "exists" in err.decode()
    assert await daemon.terminate() == 0
