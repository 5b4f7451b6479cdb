"""The real `tillhook serve` as a subprocess, on a config written into tmp_path."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

INGEST_TOKEN = "ingest-token-acceptance-0001"
ADMIN_TOKEN = "admin-token-acceptance-00001"
VIEWER_TOKEN = "viewer-token-acceptance-0001"
START_TIMEOUT_S = 30.0


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def write_config(
    path: Path, endpoints: list[dict[str, Any]], *, tokens: bool = True, **sections: dict[str, Any]
) -> Path:
    raw: dict[str, dict[str, Any]] = {
        "server": {"listen": "127.0.0.1:0", "shutdown_grace": "5s"},
        "storage": {"path": str(path.parent / "tillhook.db")},
        "delivery": {
            "allow_http": True,
            "allow_networks": ["127.0.0.0/8"],
            "timeout": "5s",
            "retry_schedule": ["200ms", "500ms", "1s"],
        },
    }
    if tokens:
        raw["auth"] = {"ingest_token": INGEST_TOKEN, "admin_token": ADMIN_TOKEN, "viewer_token": VIEWER_TOKEN}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    if "url" in raw["storage"]:
        del raw["storage"]["path"]  # a PostgreSQL outbox instead of the SQLite file
    lines = []
    for name, values in raw.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    for endpoint in endpoints:
        lines.append("[[endpoints]]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in endpoint.items())
    path.write_text("\n".join(lines) + "\n")
    return path


class Daemon:
    """One `tillhook serve` process; start() again after a stop or kill reuses the same database."""

    def __init__(self, config_path: Path, *, open_files: int | None = None) -> None:
        self.config_path = config_path
        self.open_files = open_files  # soft and hard RLIMIT_NOFILE of the process; None: inherited
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""
        self.log: list[dict[str, Any]] = []
        self._drain: asyncio.Task[None] | None = None
        self._seen = asyncio.Condition()

    async def start(self) -> Daemon:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tillhook",
            "serve",
            "--config",
            str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=self._limit_open_files if self.open_files is not None else None,
        )
        mark = len(self.log)
        self._drain = asyncio.create_task(self._read_log(self.process))
        started = await self.wait_log("serve_started", START_TIMEOUT_S, since=mark)
        self.url = f"http://{started['listen']}"
        return self

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        # Read to the end so the daemon never blocks on a full pipe.
        assert process.stderr is not None
        async for line in process.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"event": "unparsed", "text": line.decode(errors="replace").rstrip()}
            async with self._seen:
                self.log.append(entry)
                self._seen.notify_all()

    async def wait_log(self, event: str, timeout_s: float = 30.0, since: int = 0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.log[since:] if e.get("event") == event), None)

        async def until() -> None:
            async with self._seen:
                await self._seen.wait_for(lambda: found() is not None or self._ended())

        try:
            await asyncio.wait_for(until(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"no {event!r} in the daemon's log within {timeout_s}s:\n{self.log_text()}") from None
        entry = found()
        if entry is None:
            raise AssertionError(f"the daemon ended before logging {event!r}:\n{self.log_text()}")
        return entry

    def _ended(self) -> bool:
        return self._drain is not None and self._drain.done()

    def log_text(self) -> str:
        return "\n".join(json.dumps(e) for e in self.log[-40:])

    def headers(self, token: str = INGEST_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def kill(self) -> None:
        """kill -9: no chance to drain or write anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.wait_exit()

    async def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await self.wait_exit()

    async def wait_exit(self, timeout_s: float = 30.0) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout_s)
        if self._drain is not None:
            await asyncio.wait_for(self._drain, timeout_s)
        return code


@pytest.fixture
async def daemons() -> AsyncIterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(config_path: Path, **options: Any) -> Daemon:
        daemon = Daemon(config_path, **options)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.process is not None and daemon.process.returncode is None:
            daemon.process.kill()
            await daemon.wait_exit()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


class Accepting:
    """Receiver behaviour base: keeps the webhook-id of every delivery it answered 200, and
    lets a test wait on that list."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self._changed = asyncio.Condition()

    async def accept(self, event_id: str) -> None:
        async with self._changed:
            self.accepted.append(event_id)
            self._changed.notify_all()

    async def wait_for_all(self, ids: set[str], timeout_s: float) -> None:
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: set(self.accepted) >= ids)

        try:
            await asyncio.wait_for(until(), timeout_s)
        except TimeoutError:
            missing = ids - set(self.accepted)
            raise AssertionError(f"{len(missing)} of {len(ids)} events not delivered in {timeout_s}s") from None
