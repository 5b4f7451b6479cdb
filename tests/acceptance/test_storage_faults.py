"""Storage faults with the real process: a full disk answers 503 and loses nothing, and
recovers by itself; a corrupt or newer database is refused at start with what to do; the
files are the service user's alone."""

from __future__ import annotations

import resource
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.acceptance.conftest import write_config

FSIZE_LIMIT = 2 * 1024 * 1024  # bytes any one file of the daemon may reach while "the disk is full"


async def post(http: aiohttp.ClientSession, daemon: Any, n: int) -> tuple[int, dict[str, Any]]:
    body = {"type": "sale.completed", "data": {"n": n, "filler": "x" * 8000}}
    async with http.post(f"{daemon.url}/v1/events", json=body, headers=daemon.headers()) as response:
        return response.status, await response.json(content_type=None)


async def test_a_full_disk_gives_503s_loses_nothing_and_recovers(
    tmp_path: Path, daemons: Any, http: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    assert daemon.process is not None
    # RLIMIT_FSIZE set on the running daemon: writes past it fail as on a full disk.
    resource.prlimit(daemon.process.pid, resource.RLIMIT_FSIZE, (FSIZE_LIMIT, resource.RLIM_INFINITY))
    acked: list[str] = []
    refused = None
    for n in range(2000):  # bounded: the limit is hit after a few hundred events
        code, body = await post(http, daemon, n)
        if code == 202:
            acked.append(body["id"])
            continue
        refused = (code, body)
        break
    assert refused is not None, "the write limit was never reached"
    code, problem = refused
    assert code == 503 and problem["type"] == "urn:tillhook:problem:storage-unavailable"
    assert "nothing was stored" in problem["detail"]
    # Still refusing while the disk is full, and still alive.
    assert (await post(http, daemon, -1))[0] == 503

    # Space returns: the very next request is accepted, without a restart.
    resource.prlimit(daemon.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    code, body = await post(http, daemon, 10_000)
    assert code == 202
    acked.append(body["id"])
    async with http.get(f"{daemon.url}/healthz") as response:
        assert response.status == 200
    assert await daemon.terminate() == 0
    with sqlite3.connect(tmp_path / "tillhook.db") as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM events")}
    assert set(acked) <= stored and len(stored) == len(acked)


async def serve_once(config: Path) -> tuple[int, str]:
    import asyncio

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tillhook",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, err.decode()


@pytest.mark.parametrize(
    ("spoil", "said"),
    [
        (lambda db: db.write_bytes(b"this is not a database at all" * 100), "corrupt"),
        (lambda db: sqlite3.connect(db).execute("PRAGMA user_version = 99").connection.close(), "upgrade tillhook"),
    ],
    ids=["corrupt", "newer-schema"],
)
async def test_a_bad_database_is_refused_at_start_with_what_to_do(tmp_path: Path, spoil: Any, said: str) -> None:
    config = write_config(tmp_path / "tillhook.toml", [])
    spoil(tmp_path / "tillhook.db")
    code, err = await serve_once(config)
    assert code != 0 and said in err and "Traceback" not in err, err


async def test_database_files_are_the_owners_alone(tmp_path: Path, daemons: Any, http: aiohttp.ClientSession) -> None:
    config = write_config(tmp_path / "tillhook.toml", [{"name": "x", "url": "http://127.0.0.1:9/"}], tokens=False)
    daemon = await daemons(config).start()
    async with http.get(f"{daemon.url}/healthz") as response:  # a write, so the WAL exists
        assert response.status == 200
    for name in ("tillhook.db", "tillhook.db-wal", "tillhook.db-shm"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
    assert await daemon.terminate() == 0
