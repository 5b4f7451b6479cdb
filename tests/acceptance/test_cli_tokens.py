"""`tillhook tokens` and `tillhook status` read the daemon's database without ever creating one:
run where there is none, they say where they looked and how to point them at the daemon's."""

from __future__ import annotations

import asyncio
import os
import sqlite3
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
        sys.executable,
        "-m",
        "tillhook",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
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


def printed(out: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


async def test_tokens_beside_the_running_daemon_are_the_ones_it_takes(
    tmp_path: Path, daemons: Any, http: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path / "tillhook.toml", [], tokens=False)  # generated, kept in the database
    daemon = await daemons(config).start()
    code, out, err = await run_cli("tokens", "--config", str(config), cwd=tmp_path)
    assert code == 0, err
    tokens = {role: token.strip() for role, token in printed(out).items()}
    assert list(tokens) == ["ingest", "admin", "viewer"], out
    assert [t[:4] for t in tokens.values()] == ["ing_", "adm_", "vwr_"], out

    def auth(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}

    body = {"type": "sale.completed", "data": {}}
    async with http.post(f"{daemon.url}/v1/events", json=body, headers=auth("ingest")) as r:
        assert r.status == 202
    async with http.get(f"{daemon.url}/v1/events", headers=auth("viewer")) as r:
        assert r.status == 200 and len((await r.json())["data"]) == 1
    async with http.post(f"{daemon.url}/v1/events", json=body, headers=auth("viewer")) as r:
        assert r.status == 403
    async with http.get(f"{daemon.url}/v1/status", headers=auth("admin")) as r:
        assert r.status == 200
    assert await daemon.terminate() == 0


async def test_a_database_from_before_the_viewer_token_gets_one_at_the_next_start(tmp_path: Path, daemons: Any) -> None:
    config = write_config(tmp_path / "tillhook.toml", [], tokens=False)
    daemon = await daemons(config).start()
    assert await daemon.terminate() == 0
    with sqlite3.connect(tmp_path / "tillhook.db") as conn:  # as the daemon before the viewer token left it
        conn.execute("DELETE FROM meta WHERE key = 'viewer_token'")
    conn.close()
    code, out, err = await run_cli("tokens", "--config", str(config), cwd=tmp_path)
    assert code == 0, err
    assert list(printed(out)) == ["ingest", "admin"], out
    assert err == "the viewer token appears after the next start of the daemon\n", err
    daemon = await daemons(config).start()
    code, again, err = await run_cli("tokens", "--config", str(config), cwd=tmp_path)
    assert code == 0 and err == "", err
    assert again.startswith(out) and printed(again)["viewer"].strip().startswith("vwr_"), again
    assert await daemon.terminate() == 0
