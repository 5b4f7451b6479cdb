"""`tillhook tokens` and `tillhook status` read the daemon's database without ever creating one:
run where there is none, they say where they looked and how to point them at the daemon's."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.acceptance.conftest import write_config

_DAEMON_ENV = ("TILLHOOK_CONFIG", "STATE_DIRECTORY", "TILLHOOK_URL", "TILLHOOK_ADMIN_TOKEN", "TILLHOOK_TOKEN")


async def run_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DAEMON_ENV}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tillhook", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("command", ["tokens", "status"])
async def test_from_a_directory_without_a_database_nothing_is_created_and_the_path_is_named(
    tmp_path: Path, command: str
) -> None:
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    code, out, err = await run_cli(command, cwd=empty)
    assert code == 2, (out, err)
    assert list(empty.iterdir()) == []
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"no tillhook database at {empty / 'tillhook.db'}" in err and "built-in default" in err, err
    assert "--config" in err and "$TILLHOOK_CONFIG" in err, err


async def test_a_config_pointing_where_there_is_no_database_is_named_too(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tillhook.toml", [], tokens=False, storage={"path": str(tmp_path / "none.db")})
    code, _, err = await run_cli("tokens", "--config", str(config), cwd=tmp_path)
    assert code == 2 and f"{tmp_path / 'none.db'} (storage.path of {config})" in err, err
    assert not (tmp_path / "none.db").exists()


async def test_tokens_beside_the_running_daemon_are_the_ones_it_takes(
    tmp_path: Path, daemons: Any, http: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path / "tillhook.toml", [], tokens=False)  # generated, kept in the database
    daemon = await daemons(config).start()
    code, out, err = await run_cli("tokens", "--config", str(config), cwd=tmp_path)
    assert code == 0, err
    ingest = next(line.split()[1] for line in out.splitlines() if line.startswith("ingest:"))
    body = {"type": "sale.completed", "data": {}}
    async with http.post(f"{daemon.url}/v1/events", json=body, headers={"Authorization": f"Bearer {ingest}"}) as r:
        assert r.status == 202
    assert await daemon.terminate() == 0
