"""READY, WATCHDOG and STOPPING reach a real notify socket, as systemd would receive them."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import write_config


async def test_ready_watchdog_and_stopping_datagrams(tmp_path: Path, daemons: Any, monkeypatch: Any) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # pings every second
    try:
        daemon = await daemons(write_config(tmp_path / "tillhook.toml", [])).start()
        messages: list[str] = []

        async def until(wanted: str) -> None:
            while not any(wanted in m for m in messages):
                messages.append((await loop.sock_recv(sock, 4096)).decode())

        await asyncio.wait_for(until("READY=1"), 30)
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=" in ready
        await asyncio.wait_for(until("WATCHDOG=1"), 30)
        assert daemon.process is not None
        daemon.process.terminate()
        await asyncio.wait_for(until("STOPPING=1"), 30)
        assert await daemon.wait_exit() == 0
    finally:
        sock.close()
