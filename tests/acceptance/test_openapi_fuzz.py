"""Property-based fuzzing of every route in /openapi.json against the real daemon: no 500s,
and every response matches the document."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.acceptance.conftest import ADMIN_TOKEN, write_config

RUNNER = Path(__file__).with_name("fuzz_in_netns.py")


@pytest.mark.timeout(300)
async def test_schemathesis_finds_no_server_errors(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tillhook.toml", [{"name": "fixed", "url": "http://127.0.0.1:9/hook"}])
    process = await asyncio.create_subprocess_exec(
        "unshare",
        "--net",
        "--map-root-user",
        sys.executable,
        str(RUNNER),
        str(config),
        ADMIN_TOKEN,
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    out, err = await asyncio.wait_for(process.communicate(), 240)
    assert process.returncode == 0, f"{out.decode()}\n{err.decode()}"
    assert "passed" in out.decode()
