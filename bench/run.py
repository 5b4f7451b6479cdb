"""tillhook's benchmarks: the real daemon, as a subprocess, against a ceiling measured in the
same run.

    .venv/bin/python bench/run.py [--runs N] [--quick] [--readme PATH] [--keep] [--postgres URL]

Figures (each the median of N runs, with the spread min-max):
  1. ingest, one event per request, 50 clients: accepted events/s vs a bare aiohttp server
     that answers 202 without storing anything, hit by the same load generator;
  2. ingest, batches of 100: events/s vs plain sqlite3 (WAL, synchronous=FULL) inserting
     similar rows 100 per transaction;
  3. delivery to a fast receiver, 4 endpoints subscribed to everything: deliveries/s vs a
     bare aiohttp client posting the same kind of bodies to the same receiver at the
     daemon's effective concurrency;
  4. end-to-end latency (POS post -> receiver arrival), idle and at a steady 200 events/s
     over 3 endpoints, next to the floor: the same poster posting straight to the receiver;
  5. a backlog of 1,000,000 pending deliveries (written into the daemon's database with
     plain sqlite3): spawn -> first delivery, peak RSS and the claim statement's time vs the
     same on 4,000 pending, and the drain rate vs figure 3 (or a bare client without it);
  6. isolation: deliveries/s to 3 fast endpoints beside one whose receiver never answers, vs
     the same 3 alone;
  7. idle footprint: CPU and RSS of a daemon with nothing to do over 60 s, vs a bare aiohttp
     server (the N runs are N daemons side by side);
  8. the dashboard: each page's p50/p95 render time, signed in, over a database of 1,000,000
     deliveries received over the last 24 h (bench/dashboard.py), against 100 ms;
  9. figure 3 with a filter, a transform or a chat preset on every endpoint: deliveries/s
     and CPU per delivery against plain deliveries in the same run (bench/shaping.py);
 10. the outbox shared on PostgreSQL: figure 1's ingest and a delivery burst to 8 endpoints,
     one daemon on PostgreSQL against one on SQLite and two daemons on one PostgreSQL outbox
     against one, with each process's CPU and PostgreSQL's commits (bench/shared.py), on a
     cluster of its own (.ci/postgres) unless --postgres URL names one;
 11. figure 2 with the event-type catalogue: the posted type described with a schema its data
     matches (strict = false, then true) or breaks in 3 places (strict = false, so every event
     keeps its schema_errors): events/s and server CPU per event against no catalogue in the
     same run (bench/catalogue.py).

--only takes a comma-separated subset of: single, batch, delivery, latency, backlog,
isolation, idle, dashboard, shaping, shared, catalogue. `--only dashboard`, `--only shaping`,
`--only shared`, `--only catalogue` (or several of them) update only their own sections of
bench/README.md and their entries in results.json.

Load generators and receivers are separate processes (bench/worker.py). A full run writes
the table into bench/README.md; --quick is a smoke check that only prints it (unless
--readme is given).
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import itertools
import json
import math
import os
import platform
import queue
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import catalogue  # figure 11, beside this file (the script's directory is on sys.path)
import dashboard  # figure 8
import shaping  # figure 9
import shared  # figure 10

BENCH_DIR = Path(__file__).resolve().parent
WORKER = str(BENCH_DIR / "worker.py")
INGEST_TOKEN = "bench-ingest-token-0123456789abcdef"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DAEMON_CMD = [sys.executable, "-m", "tillhook"]  # what `serve --config PATH` is appended to

_started: list[subprocess.Popen[Any]] = []


def _cleanup() -> None:
    """Stop every process this script started (by its own Popen handle) that still runs."""
    for proc in _started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


atexit.register(_cleanup)


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> dict[str, float | None]:
    """Resident set now (VmRSS) and at its peak (VmHWM), in MB, from /proc."""
    found: dict[str, float | None] = {"rss_mb": None, "hwm_mb": None}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found["rss_mb" if key == "VmRSS" else "hwm_mb"] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return found


def claim_statement(endpoint_ids: list[str], per_endpoint: int, now_s: float) -> tuple[str, list[Any]]:
    """The SQL and parameters of the daemon's own claim (store/ops.py `_claim_some`), taken
    by running that code against a stand-in connection, so a change to it is measured."""
    from tillhook.store.ops import BatchApplier

    captured: list[tuple[str, list[Any]]] = []

    class Capture:
        def execute(self, sql: str, params: Any = ()) -> Capture:
            captured.append((sql, list(params)))
            return self

        def fetchall(self) -> list[Any]:
            return []  # no rows: the body look-up that follows is skipped

    wanted = [(e, per_endpoint) for e in endpoint_ids]
    BatchApplier._claim_some(Capture(), wanted, frozenset(), now_s)  # type: ignore[arg-type]
    if len(captured) != 1 or not captured[0][0].lstrip().upper().startswith("UPDATE"):
        raise RuntimeError(f"the claim code issued {len(captured)} statements, not one UPDATE")
    return captured[0]


def http_json(url: str, method: str = "GET", token: str | None = None, timeout: float = 10) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


# -- helper processes ------------------------------------------------------------------------


def run_worker(role: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run a one-shot worker to completion; its last stdout line is its result."""
    proc = subprocess.Popen(
        [sys.executable, WORKER, role, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    _started.append(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise RuntimeError(f"worker {role} did not finish within {timeout:.0f}s; stderr: {err[-2000:]}") from None
    lines = [line for line in out.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {role} failed (exit {proc.returncode}); stderr: {err[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class Server:
    """A worker that serves (bare-server, receiver) until stopped."""

    def __init__(self, role: str, args: dict[str, Any] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, role, json.dumps(args or {})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
        )
        _started.append(self.proc)
        assert self.proc.stdout is not None
        line = _readline_within(self.proc.stdout, 20)
        if not line:
            self.stop()
            raise RuntimeError(f"{role} did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.listen = json.loads(line)["listen"]
        self.base = f"http://{self.listen}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _readline_within(stream: Any, seconds: float) -> str:
    box: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: box.put(stream.readline()), daemon=True).start()
    try:
        return box.get(timeout=seconds)
    except queue.Empty:
        return ""


class Receiver(Server):
    def __init__(self) -> None:
        super().__init__("receiver", {"lifetime": 1800})

    def reset(self) -> None:
        http_json(f"{self.base}/_reset", "POST")

    def stats(self, latencies: bool = False, at: int = 0) -> dict[str, Any]:
        """`at`: also when the at-th arrival came (as "at")."""
        query = "&".join(q for q in ("latencies=1" if latencies else "", f"at={at}" if at else "") if q)
        result: dict[str, Any] = http_json(f"{self.base}/_stats" + (f"?{query}" if query else ""))
        return result

    def wait_first(self, seconds: float) -> dict[str, Any]:
        """Poll finely until the first arrival or `seconds`."""
        deadline = time.monotonic() + seconds
        stats = self.stats()
        while not stats["count"] and time.monotonic() < deadline:
            time.sleep(0.01)
            stats = self.stats()
        return stats

    def wait_for(self, count: int, seconds: float, quiet_s: float = 0.0) -> dict[str, Any]:
        """Poll until `count` arrivals (then `quiet_s` more, to see late duplicates) or `seconds`."""
        deadline = time.monotonic() + seconds
        stats = self.stats()
        while stats["count"] < count and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = self.stats()
        if quiet_s:
            time.sleep(quiet_s)
            stats = self.stats()
        return stats


class Daemon:
    """The real `tillhook serve`, configured by a TOML file in its own directory."""

    def __init__(
        self,
        workdir: Path,
        endpoints: list[dict[str, Any]] | None = None,
        delivery: dict[str, Any] | None = None,
        server: dict[str, Any] | None = None,
        start_timeout_s: float = 30.0,
        storage: dict[str, Any] | None = None,
        event_types: list[dict[str, Any]] | None = None,
    ) -> None:
        """`storage`: the [storage] keys instead of a SQLite file in `workdir` (a PostgreSQL url);
        `event_types`: the catalogue's `[[event_types]]` tables, each a dict of its keys."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.config_path = workdir / "tillhook.toml"
        self.config_path.write_text(
            self._toml(storage or {"path": str(workdir / "tillhook.db")}, endpoints or [], delivery or {}, server or {})
            + "".join(
                "\n[[event_types]]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in spec.items())
                for spec in event_types or []
            )
        )
        self.lines: list[str] = []
        self.problems: list[str] = []  # log lines at warning level or above, and unparsable ones
        self.counts: dict[str, int] = {}
        self._started_q: queue.Queue[str | None] = queue.Queue()
        self.ready_at: float | None = None  # time.time() when serve_started was read
        self.spawned_at = time.time()
        self.proc = subprocess.Popen(
            [*DAEMON_CMD, "serve", "--config", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
        _started.append(self.proc)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        try:
            listen = self._started_q.get(timeout=start_timeout_s)
        except queue.Empty:
            listen = None
        if listen is None:
            self.stop()
            raise RuntimeError(
                f"the daemon did not log serve_started within {start_timeout_s:.0f}s:\n" + "\n".join(self.lines[-20:])
            )
        self.listen = listen
        self.base = f"http://{listen}"
        self.exit_code: int | None = None

    @staticmethod
    def _toml(
        storage: dict[str, Any], endpoints: list[dict[str, Any]], delivery: dict[str, Any], server: dict[str, Any]
    ) -> str:
        storage_keys = "".join(f"{key} = {json.dumps(value)}\n" for key, value in storage.items())
        text = """
[server]
listen = "127.0.0.1:0"
"""
        for key, value in server.items():  # extra [server] keys, e.g. shutdown_grace
            text += f"{key} = {json.dumps(value)}\n"
        text += f"""
[auth]
ingest_token = "{INGEST_TOKEN}"
admin_token = "{ADMIN_TOKEN}"

[storage]
{storage_keys}
[delivery]
allow_http = true
allow_networks = ["127.0.0.0/8"]
"""
        for key, value in delivery.items():  # extra [delivery] keys, for experiments
            text += f"{key} = {json.dumps(value)}\n"
        text += """
[log]
format = "json"
"""
        for endpoint in endpoints:
            text += f"""
[[endpoints]]
name = "{endpoint["name"]}"
url = "{endpoint["url"]}"
events = {json.dumps(endpoint.get("events", ["*"]))}
"""
            for key in ("filter", "transform", "preset"):  # JSON strings are TOML basic strings
                if key in endpoint:
                    text += f"{key} = {json.dumps(endpoint[key])}\n"
        return text

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        announced = False
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if len(self.lines) < 200:
                self.lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                self.problems.append(line)
                continue
            name = str(record.get("event"))
            self.counts[name] = self.counts.get(name, 0) + 1
            if record.get("level") in ("warning", "error", "critical") and len(self.problems) < 200:
                self.problems.append(line)
            if not announced and name == "serve_started":
                announced = True
                self.ready_at = time.time()
                self._started_q.put(str(record["listen"]))
        if not announced:
            self._started_q.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = http_json(f"{self.base}/v1/status", token=ADMIN_TOKEN)
        return result

    def wait_drained(self, expected_delivered: int, seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        status = self.status()
        while (status["backlog"] or status["deliveries"]["delivered"] < expected_delivered) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
            status = self.status()
        return status

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.problems.append("did not exit within 30s of SIGTERM; killed")
                self.proc.kill()
                self.proc.wait(5)
        self._drain.join(5)
        self.exit_code = self.proc.returncode
        if self.exit_code != 0:
            self.problems.append(f"exit code {self.exit_code}")


def toml_value(value: Any) -> str:
    """A JSON-like value as a TOML value on one line: dicts as inline tables (a JSON object is
    not one), lists as arrays; strings as JSON writes them, which TOML reads as basic strings."""
    if isinstance(value, dict):
        pairs = (f"{json.dumps(str(key))} = {toml_value(inner)}" for key, inner in value.items())
        return "{ " + ", ".join(pairs) + " }" if value else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(inner) for inner in value) + "]"
    if isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
        return json.dumps(value)
    raise TypeError(f"{value!r} has no TOML form")


# -- the figures -----------------------------------------------------------------------------


class Bench:
    def __init__(self, runs: int, quick: bool, tmp: Path) -> None:
        self.runs, self.quick, self.tmp = runs, quick, tmp
        self.observations: list[str] = []  # what the daemon did wrong, verbatim
        self.harness_notes: list[str] = []  # what the measuring side did not do as planned
        self.raw: dict[str, list[dict[str, Any]]] = {}
        from tillhook.config import DeliveryConfig  # the daemon's own defaults

        defaults = DeliveryConfig()
        self.max_in_flight = defaults.max_in_flight
        self.endpoint_max_in_flight = defaults.endpoint_max_in_flight
        self._outbox: dict[str, Any] | None = None  # the prefilled databases of figure 5, built once
        self._dashboard_db: tuple[Path, dict[str, Any]] | None = None  # figure 8's database, built once

    def note(self, text: str) -> None:
        say("  !! " + text)
        self.observations.append(text)

    def harness(self, text: str) -> None:
        say("  (harness) " + text)
        self.harness_notes.append(text)

    def _daemon_done(
        self, daemon: Daemon, label: str, expected: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[str]:
        """Stop the daemon and report its problem lines, but those `expected` says the
        figure provokes on purpose; returns those."""
        daemon.stop()
        problems, provoked = [], []
        for line in daemon.problems:
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            (provoked if expected and isinstance(record, dict) and expected(record) else problems).append(line)
        for line in problems[:10]:
            self.note(f"{label}: daemon said: {line[:400]}")
        if len(problems) > 10:
            self.note(f"{label}: daemon logged {len(problems)} problem lines in all")
        return provoked

    def _problem(self, label: str, text: str) -> None:
        """A daemon problem, or a harness one when the label names a ceiling or floor."""
        (self.harness if "(bare" in label or "(floor" in label else self.note)(text)

    def _check_stored(self, label: str, daemon: Daemon, result: dict[str, Any], per_request: int) -> None:
        """After the daemon has stopped: every event answered 202 must be in its database."""
        acknowledged = result.get("statuses", {}).get("202", 0) * per_request
        conn = sqlite3.connect(f"file:{daemon.workdir / 'tillhook.db'}?mode=ro", uri=True)
        try:
            stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        finally:
            conn.close()
        result["stored"] = stored
        if stored < acknowledged or (stored > acknowledged and not result.get("errors")):
            self.note(f"{label}: {acknowledged} events acknowledged with 202 but {stored} in the database")

    def _check_statuses(self, label: str, result: dict[str, Any], ok: str) -> None:
        bad = {k: v for k, v in result.get("statuses", {}).items() if k != ok}
        if bad or result.get("errors"):
            self._problem(label, f"{label}: non-{ok} replies {bad}, client errors {result.get('errors') or {}}")

    # 1 --------------------------------------------------------------------------------------
    def ingest_single(self, run: int) -> dict[str, Any]:
        warmup, duration = (0.5, 2.0) if self.quick else (1.0, 4.0)
        load = {"concurrency": 50, "warmup": warmup, "duration": duration, "token": INGEST_TOKEN}
        out: dict[str, Any] = {}
        order = ["daemon", "bare"] if run % 2 == 0 else ["bare", "daemon"]
        for which in order:
            if which == "daemon":
                daemon = Daemon(self.tmp / f"single-{run}")
                cpu0 = cpu_seconds(daemon.pid)
                result = run_worker(
                    "loadgen",
                    {**load, "url": f"{daemon.base}/v1/events", "prefix": f"s{run}"},
                    timeout=warmup + duration + 90,
                )
                result["server_cpu_s"] = cpu_seconds(daemon.pid) - cpu0
                self._daemon_done(daemon, "ingest single")
                self._check_stored("ingest single", daemon, result, 1)
                self._check_statuses("ingest single (daemon)", result, "202")
                out["value"], out["daemon"] = result["events_per_s"], result
            else:
                bare = Server("bare-server")
                cpu0 = cpu_seconds(bare.proc.pid)
                result = run_worker(
                    "loadgen", {**load, "url": f"{bare.base}/v1/events"}, timeout=warmup + duration + 90
                )
                result["server_cpu_s"] = cpu_seconds(bare.proc.pid) - cpu0
                bare.stop()
                self._check_statuses("ingest single (bare)", result, "202")
                out["ceiling"], out["bare"] = result["events_per_s"], result
        return out

    # 2 --------------------------------------------------------------------------------------
    def _batches_of_100(
        self, daemon: Daemon, prefix: str, warmup: float, duration: float, label: str
    ) -> dict[str, Any]:
        """Figure 2's load on `daemon`: batches of 100 events from 4 clients, its CPU counted;
        the daemon is stopped and what it stored checked against what it acknowledged."""
        cpu0 = cpu_seconds(daemon.pid)
        result = run_worker(
            "loadgen",
            {
                "concurrency": 4,
                "batch": 100,
                "warmup": warmup,
                "duration": duration,
                "token": INGEST_TOKEN,
                "url": f"{daemon.base}/v1/events",
                "prefix": prefix,
            },
            timeout=warmup + duration + 90,
        )
        result["server_cpu_s"] = cpu_seconds(daemon.pid) - cpu0
        self._daemon_done(daemon, label)
        self._check_stored(label, daemon, result, 100)
        return result

    def ingest_batch(self, run: int) -> dict[str, Any]:
        warmup, duration = (0.5, 2.0) if self.quick else (1.0, 4.0)
        rows = 10_000 if self.quick else 50_000
        out: dict[str, Any] = {}
        order = ["daemon", "sqlite"] if run % 2 == 0 else ["sqlite", "daemon"]
        for which in order:
            if which == "daemon":
                daemon = Daemon(self.tmp / f"batch-{run}")
                result = self._batches_of_100(daemon, f"b{run}", warmup, duration, "ingest batch")
                self._check_statuses("ingest batch (daemon)", result, "202")
                out["value"], out["daemon"] = result["events_per_s"], result
            else:
                path = self.tmp / f"plain-{run}.db"
                result = run_worker(
                    "sqlite",
                    {"path": str(path), "per_txn": 100, "events": rows, "max_seconds": 60, "tag": f"r{run}"},
                    timeout=120,
                )
                out["ceiling"], out["sqlite"] = result["events_per_s"], result
        return out

    # 3 --------------------------------------------------------------------------------------
    def delivery(self, run: int, receiver: Receiver) -> dict[str, Any]:
        events = 1_000 if self.quick else 5_000
        names = [f"d{i}" for i in range(4)]
        deliveries = events * len(names)
        per_endpoint = min(self.endpoint_max_in_flight, self.max_in_flight // len(names))
        out: dict[str, Any] = {"in_flight": per_endpoint * len(names)}
        order = ["daemon", "bare"] if run % 2 == 0 else ["bare", "daemon"]
        for which in order:
            receiver.reset()
            if which == "daemon":
                endpoints = [{"name": n, "url": f"{receiver.base}/hook/{n}", "events": ["*"]} for n in names]
                daemon = Daemon(self.tmp / f"delivery-{run}", endpoints)
                cpu0 = cpu_seconds(daemon.pid)
                posted = run_worker(
                    "post-burst",
                    {
                        "url": f"{daemon.base}/v1/events",
                        "token": INGEST_TOKEN,
                        "events": events,
                        "batch": 100,
                        "concurrency": 4,
                    },
                    timeout=180,
                )
                stats = receiver.wait_for(deliveries, seconds=120, quiet_s=0.3)
                cpu_s = cpu_seconds(daemon.pid) - cpu0
                status = daemon.wait_drained(deliveries, seconds=20)
                self._daemon_done(daemon, "delivery")
                self._check_statuses("delivery (post)", posted, "202")
                if posted["accepted"] != events:
                    self.note(f"delivery run {run}: {posted['accepted']} of {events} events accepted")
                if stats["unique"] != deliveries or stats["duplicates"] or stats["missing_signature"]:
                    self.note(
                        f"delivery run {run}: receiver got {stats['count']} deliveries, {stats['unique']} unique,"
                        f" {stats['duplicates']} duplicates, {stats['missing_signature']} unsigned;"
                        f" expected {deliveries} (per endpoint {stats['by_path']})"
                    )
                states = status["deliveries"]
                if states.get("delivered") != deliveries or status["backlog"]:
                    self.note(f"delivery run {run}: daemon status after the run: {states}, backlog {status['backlog']}")
                window = (stats["last"] or 0) - posted["first_sent"]
                out["value"] = stats["unique"] / window if window > 0 else 0.0
                out["daemon"] = {
                    "received": stats["count"],
                    "unique": stats["unique"],
                    "duplicates": stats["duplicates"],
                    "window_s": window,
                    "ingest_s": posted["last_reply"] - posted["first_sent"],
                    "first_arrival_after_s": (stats["first"] or 0) - posted["first_sent"],
                    "states": states,
                    "daemon_cpu_s": cpu_s,
                    # deliveries/s in each quarter of the deliveries (first arrival to last)
                    "quarter_rates": _quarter_rates(stats),
                }
            else:
                result = run_worker(
                    "bare-client",
                    {
                        "base": receiver.base,
                        "paths": [f"b{i}" for i in range(4)],
                        "per_path": per_endpoint,
                        "count": deliveries,
                    },
                    timeout=300,
                )
                stats = receiver.stats()
                self._check_statuses("delivery (bare client)", result, "200")
                if stats["count"] != result["sent"]:
                    self.harness(f"delivery bare client: receiver counted {stats['count']} of {result['sent']}")
                out["ceiling"], out["bare"] = result["per_s"], result
        return out

    # 4 --------------------------------------------------------------------------------------
    def latency(self, run: int, receiver: Receiver) -> dict[str, Any]:
        idle_count = 50 if self.quick else 200
        steady_s = 3.0 if self.quick else 10.0
        rate = 200.0
        pause = 0.01
        out: dict[str, Any] = {}

        def idle(url: str, event_type: str, path: str) -> dict[str, Any]:
            receiver.reset()
            posted = run_worker(
                "latency-poster",
                {
                    "url": url,
                    "token": INGEST_TOKEN,
                    "type": event_type,
                    "mode": "idle",
                    "count": idle_count,
                    "pause": pause,
                    "max_seconds": 120,
                },
                timeout=180,
            )
            stats = receiver.wait_for(posted["posted"], seconds=10, quiet_s=0.2)
            samples = receiver.stats(latencies=True)["latencies_ms"].get(path, [])
            return {"posted": posted, "stats": stats, "samples": samples}

        def steady(url: str, event_type: str, paths: list[str], seconds: float) -> dict[str, Any]:
            receiver.reset()
            posted = run_worker(
                "latency-poster",
                {
                    "url": url,
                    "token": INGEST_TOKEN,
                    "type": event_type,
                    "mode": "steady",
                    "rate": rate,
                    "duration": seconds,
                    "max_outstanding": 200,
                },
                timeout=seconds + 120,
            )
            stats = receiver.wait_for(posted["posted"] * len(paths), seconds=30, quiet_s=0.2)
            by_path = receiver.stats(latencies=True)["latencies_ms"]
            samples = [x for p in paths for x in by_path.get(p, [])]
            return {"posted": posted, "stats": stats, "samples": samples}

        def summary(label: str, measured: dict[str, Any], expected: int) -> dict[str, Any]:
            samples = measured["samples"]
            self._check_statuses(label, measured["posted"], "202" if "daemon" in label else "200")
            stats = measured["stats"]
            if stats["unique"] != expected or stats["duplicates"]:
                self._problem(
                    label,
                    f"{label} run {run}: receiver got {stats['count']} ({stats['unique']} unique,"
                    f" {stats['duplicates']} duplicates), expected {expected}",
                )
            late = measured["posted"].get("late_sends", 0)
            if late > 0.01 * max(1, measured["posted"]["posted"]):
                self.harness(
                    f"{label} run {run}: the poster sent {late} of {measured['posted']['posted']} events"
                    " more than 5 ms behind schedule (it was short of CPU)"
                )
            return {
                "p50": _pct(samples, 50),
                "p99": _pct(samples, 99),
                "max": max(samples, default=None),
                "n": len(samples),
                "ingest_ms_p50": measured["posted"]["ingest_ms_p50"],
                "ingest_ms_p99": measured["posted"]["ingest_ms_p99"],
                "late_sends": late,
            }

        steady_names = ["s1", "s2", "s3"]
        endpoints = [{"name": "idle", "url": f"{receiver.base}/hook/idle", "events": ["bench.idle"]}]
        endpoints += [{"name": n, "url": f"{receiver.base}/hook/{n}", "events": ["bench.steady"]} for n in steady_names]
        daemon = Daemon(self.tmp / f"latency-{run}", endpoints)
        try:
            url = f"{daemon.base}/v1/events"
            d_idle = idle(url, "bench.idle", "idle")
            out["daemon_idle"] = summary("latency idle (daemon)", d_idle, d_idle["posted"]["posted"])
            cpu0 = cpu_seconds(daemon.pid)
            d_steady = steady(url, "bench.steady", steady_names, steady_s)
            out["daemon_steady_cpu_share"] = (cpu_seconds(daemon.pid) - cpu0) / (steady_s + 0.5)
            out["daemon_steady"] = summary("latency 200/s (daemon)", d_steady, d_steady["posted"]["posted"] * 3)
            status = daemon.wait_drained(0, seconds=10)
            if status["backlog"] or status["deliveries"].get("failed"):
                self.note(f"latency run {run}: daemon status after the run: {status['deliveries']}")
        finally:
            self._daemon_done(daemon, "latency")
        # The floor: the same poster straight to the receiver (one loopback HTTP hop, no store).
        f_idle = idle(f"{receiver.base}/hook/direct", "bench.idle", "direct")
        out["floor_idle"] = summary("latency idle (floor)", f_idle, f_idle["posted"]["posted"])
        f_steady = steady(f"{receiver.base}/hook/direct", "bench.steady", ["direct"], min(steady_s, 5.0))
        out["floor_steady"] = summary("latency 200/s (floor)", f_steady, f_steady["posted"]["posted"])
        return out

    # 5 --------------------------------------------------------------------------------------
    BACKLOG_EVENTS = 250_000  # x 4 endpoints: 1,000,000 pending deliveries
    REFERENCE_EVENTS = 1_000  # the reference outbox: 4,000 pending

    def _seed(self, figure: str, endpoints: list[dict[str, Any]]) -> tuple[Daemon, list[str]]:
        """A daemon started once to make the schema and the endpoint rows of a database that
        plain sqlite3 then fills; the endpoints' ids, by name."""
        seed = Daemon(self.tmp / f"{figure}-seed", endpoints)
        self._daemon_done(seed, f"{figure} (making the schema)")
        conn = sqlite3.connect(f"file:{seed.workdir / 'tillhook.db'}?mode=ro", uri=True)
        try:
            ids = [row[0] for row in conn.execute("SELECT id FROM endpoints ORDER BY name")]
        finally:
            conn.close()
        return seed, ids

    def _outboxes(self, receiver: Receiver) -> dict[str, Any]:
        """Once per harness run: the daemon makes its schema and endpoint rows, then plain
        sqlite3 fills copies of that database; each run then works on a copy of those."""
        if self._outbox is not None:
            return self._outbox
        started = time.monotonic()
        endpoints = [{"name": f"q{i}", "url": f"{receiver.base}/hook/q{i}", "events": ["*"]} for i in range(4)]
        seed, ids = self._seed("backlog", endpoints)
        paths = {"big": self.tmp / "backlog-big.db", "small": self.tmp / "backlog-small.db"}
        built = run_worker(
            "outbox-build",
            {
                "seed": str(seed.workdir / "tillhook.db"),
                "endpoint_ids": ids,
                "now_s": time.time(),
                "targets": {str(paths["big"]): self.BACKLOG_EVENTS, str(paths["small"]): self.REFERENCE_EVENTS},
            },
            timeout=600,
        )
        try:
            sql, params = claim_statement(ids, self.endpoint_max_in_flight, time.time())
        except Exception as exc:  # noqa: BLE001 - the claim code changed shape: measure the rest
            self.harness(f"backlog: could not take the daemon's claim statement ({exc!r}); claim not timed")
            sql, params = None, []
        self._outbox = {
            "endpoints": endpoints,
            "ids": ids,
            "paths": paths,
            "sql": sql,
            "params": params,
            "build": {**built, "total_s": time.monotonic() - started},
        }
        return self._outbox

    def backlog(self, run: int, receiver: Receiver, bare_reference: bool) -> dict[str, Any]:
        started = time.monotonic()
        box = self._outboxes(receiver)
        window = (5_000, 10.0) if self.quick else (20_000, 30.0)
        out: dict[str, Any] = {"build": box["build"], "window": window}
        out["small"] = self._backlog_once(run, "small", receiver, box, (4 * self.REFERENCE_EVENTS - 1, 30.0))
        out["big"] = self._backlog_once(run, "big", receiver, box, window)
        out["value"] = out["big"]["drain_per_s"]
        if bare_reference:  # figure 3 is not in this harness run: a fresh ceiling instead
            receiver.reset()
            bare = run_worker(
                "bare-client",
                {
                    "base": receiver.base,
                    "paths": [f"bb{i}" for i in range(4)],
                    "per_path": self.endpoint_max_in_flight,
                    "count": window[0],
                },
                timeout=300,
            )
            self._check_statuses("backlog (bare client)", bare, "200")
            out["bare"], out["ceiling"] = bare, bare["per_s"]
        out["elapsed_s"] = time.monotonic() - started
        return out

    def _backlog_once(
        self, run: int, which: str, receiver: Receiver, box: dict[str, Any], window: tuple[int, float]
    ) -> dict[str, Any]:
        """One daemon on a fresh copy of an outbox: the claim timed first (own process), then
        spawn -> first arrival, then the drain over a window of deliveries or seconds."""
        workdir = self.tmp / f"backlog-{run}-{which}"
        workdir.mkdir(parents=True)
        shutil.copyfile(box["paths"][which], workdir / "tillhook.db")
        claims = None
        if box["sql"]:
            claims = run_worker(
                "claim-timer",
                {
                    "path": str(workdir / "tillhook.db"),
                    "sql": box["sql"],
                    "params": box["params"],
                    "reps": 200,
                    "max_seconds": 60,
                },
                timeout=120,
            )
        receiver.reset()
        label = f"backlog ({which} outbox)"
        daemon = Daemon(workdir, box["endpoints"], start_timeout_s=60)
        try:
            first = receiver.wait_first(60)
            stats, cpu_s, mem = first, 0.0, memory_mb(daemon.pid)
            if first["count"]:
                cpu0 = cpu_seconds(daemon.pid)
                stats = receiver.wait_for(window[0] + 1, seconds=window[1] - (time.time() - first["first"]))
                cpu_s, mem = cpu_seconds(daemon.pid) - cpu0, memory_mb(daemon.pid)
        finally:
            self._daemon_done(daemon, label)  # the backlog left behind is expected
        result = self._drain_result(label, daemon, receiver, stats, window[0] + 1)
        result.update({"claims": claims, "daemon_cpu_s": cpu_s, **mem, "exit_code": daemon.exit_code})
        shutil.rmtree(workdir, ignore_errors=True)
        return result

    def _drain_result(
        self, label: str, daemon: Daemon, receiver: Receiver, stats: dict[str, Any], wanted: int
    ) -> dict[str, Any]:
        if not stats["count"]:
            self.note(f"{label}: no delivery arrived within 60 s of spawning the daemon")
            return {
                "first_s": None,
                "drain_per_s": None,
                "counted": 0,
                "window_s": None,
                "ready_s": None if daemon.ready_at is None else daemon.ready_at - daemon.spawned_at,
            }
        n = min(wanted, stats["count"])
        at = receiver.stats(at=n)  # also the arrivals during the stop, to check them too
        window_s = at["at"] - at["first"]
        if at["duplicates"] or at["missing_signature"]:
            self.note(
                f"{label}: {at['duplicates']} duplicate and {at['missing_signature']} unsigned deliveries"
                f" among {at['count']}"
            )
        return {
            "ready_s": None if daemon.ready_at is None else daemon.ready_at - daemon.spawned_at,
            "first_s": at["first"] - daemon.spawned_at,
            "counted": n - 1,
            "window_s": window_s,
            "drain_per_s": (n - 1) / window_s if window_s > 0 else None,
            "received": at["count"],
            "by_path": at["by_path"],
        }

    # 6 --------------------------------------------------------------------------------------
    # 8 --------------------------------------------------------------------------------------
    def dashboard(self, run: int, receiver: Receiver) -> dict[str, Any]:
        started = time.monotonic()
        endpoints = [{"name": f"shop{i}", "url": f"{receiver.base}/hook/shop{i}", "events": ["*"]} for i in range(4)]
        if self._dashboard_db is None:
            seed, ids = self._seed("dashboard", endpoints)
            path = self.tmp / "dashboard-1m.db"
            events = 2_500 if self.quick else dashboard.EVENTS
            proc = subprocess.run(
                [
                    sys.executable,
                    str(BENCH_DIR / "dashboard.py"),
                    "build",
                    json.dumps(
                        {
                            "seed": str(seed.workdir / "tillhook.db"),
                            "path": str(path),
                            "endpoint_ids": ids,
                            "now_s": time.time(),
                            "events": events,
                        }
                    ),
                ],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"building the dashboard database failed: {proc.stderr[-2000:]}")
            self._dashboard_db = (path, json.loads(proc.stdout.splitlines()[-1]))
        path, built = self._dashboard_db
        workdir = self.tmp / f"dashboard-{run}"
        workdir.mkdir(parents=True)
        shutil.copyfile(path, workdir / "tillhook.db")
        receiver.reset()
        daemon = Daemon(workdir, endpoints, start_timeout_s=120)
        try:
            timed = dashboard.time_pages(daemon.base, ADMIN_TOKEN, repeats=20 if self.quick else 100)
        finally:
            self._daemon_done(daemon, "dashboard")
        shutil.rmtree(workdir, ignore_errors=True)
        for page in timed["skipped"] if run == 0 else []:
            self.harness(f"dashboard: {page} answered 404 (not in this build); not timed")
        return {**timed, "build": built, "elapsed_s": time.monotonic() - started}

    # 9 --------------------------------------------------------------------------------------
    def shaping(self, run: int, receiver: Receiver) -> dict[str, Any]:
        events = 1_000 if self.quick else 5_000
        names = [f"s{i}" for i in range(4)]
        deliveries = events * len(names)
        variants = list(shaping.VARIANTS)
        shift = run % len(variants)
        out: dict[str, Any] = {}
        for name in variants[shift:] + variants[:shift]:
            receiver.reset()
            endpoints = [
                {"name": n, "url": f"{receiver.base}/hook/{n}", "events": ["*"], **shaping.VARIANTS[name]}
                for n in names
            ]
            daemon = Daemon(self.tmp / f"shaping-{run}-{name}", endpoints)
            tree = shaping.process_tree(daemon.pid)
            cpu0 = sum(cpu_seconds(p) for p in tree)
            posted = run_worker(
                "post-burst",
                {
                    "url": f"{daemon.base}/v1/events",
                    "token": INGEST_TOKEN,
                    "events": events,
                    "batch": 100,
                    "concurrency": 4,
                },
                timeout=180,
            )
            stats = receiver.wait_for(deliveries, seconds=180, quiet_s=0.3)
            tree = shaping.process_tree(daemon.pid)  # the sandboxes start at the first use
            cpu_s = sum(cpu_seconds(p) for p in tree) - cpu0
            daemon.wait_drained(deliveries, seconds=20)
            self._daemon_done(daemon, f"shaping ({name})")
            self._check_statuses(f"shaping {name} (post)", posted, "202")
            if stats["unique"] != deliveries or stats["duplicates"]:
                self.note(
                    f"shaping {name} run {run}: receiver got {stats['unique']} unique of {deliveries},"
                    f" {stats['duplicates']} duplicates"
                )
            window = (stats["last"] or 0) - posted["first_sent"]
            out[name] = {
                "delivered": stats["unique"],
                "window_s": window,
                "per_s": stats["unique"] / window if window > 0 else 0.0,
                "cpu_s": cpu_s,
                "cpu_us": cpu_s / max(stats["unique"], 1) * 1e6,
                "processes": len(tree),
            }
        return out

    # 10 -------------------------------------------------------------------------------------
    def shared_outbox(self, run: int, receiver: Receiver, cluster: shared.Cluster) -> dict[str, Any]:
        kit = shared.Kit(daemon=Daemon, run_worker=run_worker, cpu_seconds=cpu_seconds, token=INGEST_TOKEN)
        result = shared.Figure(self, kit, cluster).run_once(run, receiver)
        result["loadavg"] = _loadavg()
        return result

    # 11 -------------------------------------------------------------------------------------
    def catalogue(self, run: int) -> dict[str, Any]:
        warmup, duration = (0.5, 2.0) if self.quick else (1.0, 4.0)
        variants = list(catalogue.VARIANTS)
        shift = run % len(variants)
        order = variants[shift:] + variants[:shift]
        out: dict[str, Any] = {"order": order, "loadavg": _loadavg()}
        for name in order:
            label = f"catalogue ({name})"
            daemon = Daemon(self.tmp / f"catalogue-{run}-{name}", event_types=catalogue.VARIANTS[name])
            result = self._batches_of_100(daemon, f"c{run}{name}", warmup, duration, label)
            self._check_statuses(label, result, "202")
            counts = catalogue.stored(daemon.workdir / "tillhook.db")
            for problem in catalogue.problems(name, counts):
                self.note(f"{label} run {run}: {problem}")
            result["with_errors"] = counts["with_errors"]
            result["cpu_us"] = result["server_cpu_s"] / max(counts["events"], 1) * 1e6
            out[name] = result
        return out

    def isolation(self, run: int, receiver: Receiver) -> dict[str, Any]:
        started = time.monotonic()
        events = 1_000 if self.quick else 3_000
        out: dict[str, Any] = {"events": events}
        for which in ["dead", "clean"] if run % 2 == 0 else ["clean", "dead"]:
            out[which] = self._isolation_once(run, receiver, events, with_dead=which == "dead")
        out["value"], out["ceiling"] = out["dead"]["per_s"], out["clean"]["per_s"]
        out["elapsed_s"] = time.monotonic() - started
        return out

    def _isolation_once(self, run: int, receiver: Receiver, events: int, with_dead: bool) -> dict[str, Any]:
        """A burst subscribed by three fast endpoints (and, with_dead, by one whose receiver
        holds every request open and never answers); deliveries/s to the fast three."""
        fast = ["f0", "f1", "f2"]
        endpoints = [{"name": n, "url": f"{receiver.base}/hook/{n}", "events": ["*"]} for n in fast]
        if with_dead:
            endpoints.append({"name": "dead", "url": f"{receiver.base}/hang/dead", "events": ["*"]})
        label = f"isolation ({'with' if with_dead else 'without'} the dead endpoint)"
        receiver.reset()
        # A short grace: the attempts hung on the dead endpoint are cancelled at the stop, by design.
        daemon = Daemon(
            self.tmp / f"isolation-{run}-{'dead' if with_dead else 'clean'}", endpoints, server={"shutdown_grace": "1s"}
        )
        try:
            cpu0 = cpu_seconds(daemon.pid)
            posted = run_worker(
                "post-burst",
                {
                    "url": f"{daemon.base}/v1/events",
                    "token": INGEST_TOKEN,
                    "events": events,
                    "batch": 100,
                    "concurrency": 4,
                },
                timeout=180,
            )
            stats = receiver.wait_for(events * len(fast), seconds=120, quiet_s=0.3)
            cpu_s = cpu_seconds(daemon.pid) - cpu0
        finally:
            provoked = self._daemon_done(
                daemon,
                label,
                expected=(lambda r: r.get("endpoint") == "dead" or r.get("event") == "attempts_cancelled")
                if with_dead
                else None,
            )
        self._check_statuses(f"{label} (post)", posted, "202")
        expected = events * len(fast)
        if stats["unique"] != expected or stats["duplicates"] or stats["missing_signature"]:
            self.note(
                f"{label} run {run}: the fast endpoints got {stats['count']} deliveries, {stats['unique']}"
                f" unique, {stats['duplicates']} duplicates, {stats['missing_signature']} unsigned;"
                f" expected {expected} (per endpoint {stats['by_path']})"
            )
        window_s = (stats["last"] or 0) - posted["first_sent"]
        return {
            "per_s": stats["unique"] / window_s if window_s > 0 else 0.0,
            "unique": stats["unique"],
            "window_s": window_s,
            "ingest_s": posted["last_reply"] - posted["first_sent"],
            "hung": stats.get("hung", 0),
            "daemon_cpu_s": cpu_s,
            "provoked": len(provoked),
            "provoked_events": sorted({str(json.loads(line).get("event")) for line in provoked}),
        }

    # 7 --------------------------------------------------------------------------------------
    def idle(self, receiver: Receiver) -> list[dict[str, Any]]:
        """The N runs side by side: N daemons (4 endpoints, nothing to do) and N bare aiohttp
        servers, all idle over the same window."""
        window_s = 10.0 if self.quick else 60.0
        settle_s = 3.0
        daemons: list[Daemon] = []
        bares: list[Server] = []
        receiver.reset()
        try:
            for i in range(self.runs):
                endpoints = [{"name": f"i{k}", "url": f"{receiver.base}/hook/i{k}", "events": ["*"]} for k in range(4)]
                daemons.append(Daemon(self.tmp / f"idle-{i}", endpoints))
                bares.append(Server("bare-server"))
            time.sleep(settle_s)
            pids = [d.pid for d in daemons] + [b.proc.pid for b in bares]
            cpu0 = {pid: cpu_seconds(pid) for pid in pids}
            t0 = time.monotonic()
            time.sleep(window_s)
            elapsed_s = time.monotonic() - t0
            used = {pid: cpu_seconds(pid) - cpu0[pid] for pid in pids}
            mem = {pid: memory_mb(pid) for pid in pids}
        finally:
            for daemon in daemons:
                self._daemon_done(daemon, "idle")
            for bare in bares:
                bare.stop()
        if receiver.stats()["count"]:
            self.note(f"idle: the receiver got {receiver.stats()['count']} requests from daemons with nothing to do")
        return [
            {
                "window_s": elapsed_s,
                "side_by_side": self.runs,
                "daemon_cpu_pct": used[d.pid] / elapsed_s * 100,
                "daemon_rss_mb": mem[d.pid]["rss_mb"],
                "daemon_hwm_mb": mem[d.pid]["hwm_mb"],
                "bare_cpu_pct": used[b.proc.pid] / elapsed_s * 100,
                "bare_rss_mb": mem[b.proc.pid]["rss_mb"],
                "bare_hwm_mb": mem[b.proc.pid]["hwm_mb"],
            }
            for d, b in zip(daemons, bares, strict=True)
        ]


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _quarter_rates(stats: dict[str, Any]) -> list[float]:
    marks = [stats["first"], *stats.get("quartiles", [])]
    quarter = stats["count"] / 4
    return [quarter / (b - a) if b > a else 0.0 for a, b in itertools.pairwise(marks)]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[rank]


# -- report ----------------------------------------------------------------------------------


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x / 1000:.1f}k/s" if x >= 1000 else f"{x:.0f}/s"


def fmt_s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def fmt_mb(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f} MB"


def fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} %"


def fmt_ms(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms")


def med(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def span(values: list[float | None], fmt: Any) -> str:
    clean = [v for v in values if v is not None]
    if not clean:
        return "n/a"
    return f"{fmt(min(clean))} – {fmt(max(clean))}"


def _ratio_text(ratio: float | None, target: float | None) -> str:
    if ratio is None:
        return "n/a"
    text = f"{ratio:.2f}"
    if target is not None and text == f"{target:.2f}" and ratio != target:
        text = f"{ratio:.3f}"  # so that 0.896 does not read as 0.90 next to "≥ 0.9 ❌"
    return text


def _times_of(x: float | None, what: str) -> str:
    if x is None:
        return "n/a"
    return f"×{x:.2f} {what}" if x < 10 else f"×{x:,.0f} {what}"


def _at_most(value: float | None, limit: float, text: str) -> str:
    return f"≤ {text} " + ("✅" if value is not None and value <= limit else "❌")


def _versus(
    figure: str, values: list[Any], refs: list[Any], fmt: Any, ref_note: str, what: str, target: str
) -> dict[str, str]:
    """A row whose ratio is value / reference, as ×N (lower is better)."""
    ratios = [v / r for v, r in zip(values, refs, strict=False) if v is not None and r]
    return {
        "figure": figure,
        "value": fmt(med(values)),
        "ceiling": f"{fmt(med(refs))} ({ref_note})",
        "ratio": _times_of(med(ratios), what),
        "spread": span(values, fmt),
        "target": target,
    }


def _backlog_rows(raw: dict[str, list[dict[str, Any]]]) -> list[dict[str, str]]:
    runs = raw.get("backlog", [])
    if not runs:
        return []
    big, small = [r["big"] for r in runs], [r["small"] for r in runs]
    ref = "same daemon, 4,000 pending"
    first = [b["first_s"] for b in big]
    peaks = [b["hwm_mb"] for b in big]
    rows = [
        _versus(
            "Backlog of 1M pending: spawn → first delivery",
            first,
            [s["first_s"] for s in small],
            fmt_s,
            ref,
            "the reference",
            _at_most(med(first), 2.0, "2 s"),
        ),
        _versus(
            "Backlog of 1M pending: daemon peak RSS (VmHWM) after the drain window",
            peaks,
            [s["hwm_mb"] for s in small],
            fmt_mb,
            ref,
            "the reference",
            _at_most(med(peaks), 100.0, "100 MB"),
        ),
    ]
    for q in ("p50", "p99"):
        claims = [(b["claims"] or {}).get(f"ms_{q}") for b in big]
        refs = [(s["claims"] or {}).get(f"ms_{q}") for s in small]
        rows.append(
            _versus(
                f"Backlog of 1M pending: the claim statement (4 endpoints × 4), {q}",
                claims,
                refs,
                fmt_ms,
                ref,
                "the reference",
                "—",
            )
        )
    values = [r["value"] for r in runs]
    window = runs[0]["window"]
    figure = f"Backlog of 1M pending: drain rate, first {window[0]:,} deliveries or {window[1]:.0f} s (deliveries/s)"
    if raw.get("delivery"):  # the same daemon's rate on an empty outbox (figure 3), run by run
        refs, note, target = [d.get("value") for d in raw["delivery"]], "figure 3: empty outbox", 0.8
    else:
        refs, note, target = [r.get("ceiling") for r in runs], "bare aiohttp client, same in-flight", None
    ratios = [v / c for v, c in zip(values, refs, strict=False) if v is not None and c]
    ratio = med(ratios)
    rows.append(
        {
            "figure": figure,
            "value": fmt_rate(med(values)),
            "ceiling": f"{fmt_rate(med(refs))} ({note})",
            "ratio": _ratio_text(ratio, target),
            "spread": f"{span(values, fmt_rate)}; ratio {span(ratios, lambda x: f'{x:.2f}')}",
            "target": "— (judged against figure 3 only)"
            if target is None
            else f"ratio ≥ {target} " + ("✅" if ratio is not None and ratio >= target else "❌"),
        }
    )
    return rows


def _idle_rows(raw: dict[str, Any]) -> list[dict[str, str]]:
    runs = raw.get("idle", [])
    if not runs:
        return []
    cpu, rss = [r["daemon_cpu_pct"] for r in runs], [r["daemon_rss_mb"] for r in runs]
    bare_cpu = [r["bare_cpu_pct"] for r in runs]
    cpu_row = _versus(
        "Idle, 4 endpoints: CPU (% of one core)",
        cpu,
        bare_cpu,
        fmt_pct,
        "bare aiohttp server, idle",
        "the bare server",
        _at_most(med(cpu), 1.0, "1 %"),
    )
    if not any(bare_cpu):
        cpu_row["ratio"] = "n/a (the bare server used no measurable CPU)"
    return [
        cpu_row,
        _versus(
            "Idle, 4 endpoints: RSS (VmRSS)",
            rss,
            [r["bare_rss_mb"] for r in runs],
            fmt_mb,
            "bare aiohttp server, idle",
            "the bare server",
            _at_most(med(rss), 60.0, "60 MB"),
        ),
    ]


def build_rows(raw: dict[str, list[dict[str, Any]]]) -> list[dict[str, str]]:
    rows = []

    def throughput(key: str, figure: str, unit_note: str, target: float) -> None:
        runs = raw.get(key, [])
        if not runs:
            return
        values = [r.get("value") for r in runs]
        ceilings = [r.get("ceiling") for r in runs]
        ratios = [r["value"] / r["ceiling"] for r in runs if r.get("value") is not None and r.get("ceiling")]
        ratio = med(ratios)
        rows.append(
            {
                "figure": figure,
                "value": fmt_rate(med(values)),
                "ceiling": f"{fmt_rate(med(ceilings))} ({unit_note})",
                "ratio": _ratio_text(ratio, target),
                "spread": f"{span(values, fmt_rate)}; ratio {span(ratios, lambda x: f'{x:.2f}')}",
                "target": f"ratio ≥ {target} " + ("✅" if ratio is not None and ratio >= target else "❌"),
            }
        )

    throughput("ingest_single", "Ingest, 1 event/request, 50 clients (events/s)", "bare aiohttp 202 server", 0.6)
    throughput("ingest_batch", "Ingest, batches of 100, 4 clients (events/s)", "plain sqlite3, FULL, 100/txn", 0.3)
    throughput(
        "delivery", "Delivery, 4 endpoints, fast receiver (deliveries/s)", "bare aiohttp client, same in-flight", 0.5
    )

    lat = raw.get("latency", [])
    for phase, label, targets in (
        ("idle", "E2E latency, idle, 1 event at a time", {"p50": None, "p99": None}),
        ("steady", "E2E latency, steady 200 events/s over 3 endpoints", {"p50": 5.0, "p99": 25.0}),
    ):
        if not lat:
            break
        for q in ("p50", "p99"):
            values = [r[f"daemon_{phase}"][q] for r in lat]
            floors = [r[f"floor_{phase}"][q] for r in lat]
            ratios = [v / f for v, f in zip(values, floors, strict=True) if v is not None and f]
            value = med(values)
            target = targets[q]
            rows.append(
                {
                    "figure": f"{label}: {q}",
                    "value": fmt_ms(value),
                    "ceiling": f"{fmt_ms(med(floors))} (floor: poster → receiver direct)",
                    "ratio": _times(med(ratios)),
                    "spread": span(values, fmt_ms),
                    "target": "—"
                    if target is None
                    else (f"≤ {target:g} ms " + ("✅" if value is not None and value <= target else "❌")),
                }
            )
    rows += _backlog_rows(raw)
    throughput(
        "isolation",
        "Isolation: 3 fast endpoints beside 1 that never answers (deliveries/s)",
        "the same 3 without it",
        0.9,
    )
    rows += _idle_rows(raw)
    return rows


def _times(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"×{x:.1f} the floor" if x < 10 else f"×{x:,.0f} the floor"


def table(rows: list[dict[str, str]]) -> str:
    head = "| figure | value (median) | ceiling (median, same run) | ratio | spread (min – max) | target |"
    lines = [head, "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['figure']} | {r['value']} | {r['ceiling']} | {r['ratio']} | {r['spread']} | {r['target']} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import aiohttp

    try:
        import aiosqlite

        aiosqlite_version = getattr(aiosqlite, "__version__", "?")
    except ImportError:
        aiosqlite_version = "absent"
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024 // 1024} GiB"
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "aiohttp": aiohttp.__version__,
        "aiosqlite": aiosqlite_version,
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists()
        else "?",
    }


def _claims_text(claims: dict[str, Any] | None) -> str:
    if not claims:
        return "claim not timed"
    return (
        f"claim p50/p99/max {fmt_ms(claims['ms_p50'])}/{fmt_ms(claims['ms_p99'])}/{fmt_ms(claims['ms_max'])}"
        f" over {claims['reps']} (first {fmt_ms(claims['first_ms'])}, {claims['rows']} rows)"
    )


def _later_details(raw: dict[str, Any]) -> list[str]:
    """Figures 5-7, run by run."""
    lines = []
    for i, r in enumerate(raw.get("backlog", [])):
        if i == 0:
            built = r["build"]["built"]
            lines.append(
                "- backlog outboxes, built once: "
                + "; ".join(
                    f"{b['pending']:,} pending in {b['build_s']:.1f} s ({b['bytes'] / 2**20:.0f} MiB)"
                    for b in built.values()
                )
                + f" ({r['build']['total_s']:.0f} s with the daemon's first start)"
            )
        for which, name in (("big", "1M"), ("small", "4k reference")):
            d = r[which]
            lines.append(
                f"- backlog run {i}, {name}: ready (serve_started) {fmt_s(d['ready_s'])} and first delivery"
                f" {fmt_s(d['first_s'])} after spawning; {d['counted']:,} deliveries in {fmt_s(d['window_s'])}"
                f" ({fmt_rate(d['drain_per_s'])}; daemon CPU {d['daemon_cpu_s']:.1f} s); RSS {fmt_mb(d['rss_mb'])},"
                f" peak {fmt_mb(d['hwm_mb'])}; {_claims_text(d['claims'])}; exit code {d['exit_code']}"
            )
        if r.get("bare"):
            lines.append(f"- backlog run {i}: bare client {r['bare']['sent']} in {r['bare']['elapsed_s']:.2f} s")
        lines.append(f"- backlog run {i} took {r['elapsed_s']:.0f} s")
    for i, r in enumerate(raw.get("isolation", [])):
        d, c = r["dead"], r["clean"]
        lines.append(
            f"- isolation run {i}: with the dead endpoint {d['unique']} deliveries in {d['window_s']:.2f} s"
            f" (posting {d['ingest_s']:.2f} s, daemon CPU {d['daemon_cpu_s']:.1f} s; {d['hung']} requests held"
            f" open by the dead receiver; {d['provoked']} expected warning lines:"
            f" {', '.join(d['provoked_events']) or '-'});"
            f" without it {c['unique']} in {c['window_s']:.2f} s (daemon CPU {c['daemon_cpu_s']:.1f} s);"
            f" {r['elapsed_s']:.0f} s in all"
        )
    for i, r in enumerate(raw.get("idle", [])):
        lines.append(
            f"- idle {i} ({r['side_by_side']} side by side, {r['window_s']:.0f} s):"
            f" daemon CPU {fmt_pct(r['daemon_cpu_pct'])},"
            f" RSS {fmt_mb(r['daemon_rss_mb'])} (peak {fmt_mb(r['daemon_hwm_mb'])}); bare server CPU"
            f" {fmt_pct(r['bare_cpu_pct'])}, RSS {fmt_mb(r['bare_rss_mb'])} (peak {fmt_mb(r['bare_hwm_mb'])})"
        )
    return lines


def details(raw: dict[str, Any]) -> str:
    """Per-run numbers that explain the figures (CPU, client-side latencies, drain times)."""
    lines = []
    for i, r in enumerate(raw.get("ingest_single", [])):
        d, b = r["daemon"], r["bare"]
        lines.append(
            f"- ingest single run {i}: daemon {d['events_per_s']:.0f}/s (request p50 {d['request_ms_p50']:.1f} ms,"
            f" p99 {d['request_ms_p99']:.1f} ms, daemon CPU {d['server_cpu_s']:.1f} s),"
            f" bare {b['events_per_s']:.0f}/s (bare server CPU {b['server_cpu_s']:.1f} s)"
        )
    for i, r in enumerate(raw.get("ingest_batch", [])):
        d, s = r["daemon"], r["sqlite"]
        lines.append(
            f"- ingest batch run {i}: daemon {d['events_per_s']:.0f} events/s ({d['requests_per_s']:.0f} requests/s,"
            f" request p50 {d['request_ms_p50']:.1f} ms, daemon CPU {d['server_cpu_s']:.1f} s);"
            f" plain sqlite3 {s['events_per_s']:.0f}/s"
        )
    for i, r in enumerate(raw.get("delivery", [])):
        d, b = r["daemon"], r["bare"]
        lines.append(
            f"- delivery run {i}: {d['unique']} deliveries in {d['window_s']:.2f} s from the first post"
            f" (posting took {d['ingest_s']:.2f} s; first arrival after {d['first_arrival_after_s'] * 1000:.0f} ms;"
            f" daemon CPU {d['daemon_cpu_s']:.1f} s; rate by quarter of the deliveries"
            f" {' / '.join(f'{x:.0f}' for x in d.get('quarter_rates', []))} per s);"
            f" bare client {b['sent']} in {b['elapsed_s']:.2f} s;"
            f" in flight {r['in_flight']}"
        )
    for i, r in enumerate(raw.get("latency", [])):
        di, ds, fi, fs = r["daemon_idle"], r["daemon_steady"], r["floor_idle"], r["floor_steady"]
        lines.append(
            f"- latency run {i}: idle p50/p99/max {fmt_ms(di['p50'])}/{fmt_ms(di['p99'])}/{fmt_ms(di['max'])}"
            f" (n={di['n']}; the POST's own reply p50 {fmt_ms(di['ingest_ms_p50'])});"
            f" 200/s p50/p99/max {fmt_ms(ds['p50'])}/{fmt_ms(ds['p99'])}/{fmt_ms(ds['max'])} (n={ds['n']};"
            f" reply p50/p99 {fmt_ms(ds['ingest_ms_p50'])}/{fmt_ms(ds['ingest_ms_p99'])};"
            f" daemon CPU {r['daemon_steady_cpu_share'] * 100:.0f} % of one core);"
            f" floor idle {fmt_ms(fi['p50'])}/{fmt_ms(fi['p99'])}, floor 200/s {fmt_ms(fs['p50'])}/{fmt_ms(fs['p99'])}"
        )
    lines += _later_details(raw)
    loads = raw.get("loadavg", [])
    if loads:
        lines.append(f"- load average (1, 5, 15 min) at the start of each run: {'; '.join(loads)}")
    return "\n".join(lines)


NOTES = """\
What each figure means:

- **Ingest, 1 event/request**: `POST /v1/events` with one JSON event (with an `id`
  idempotency key, ~450 bytes), 50 keep-alive clients in one aiohttp load-generator process,
  counted over a 4 s window after a 1 s warm-up; a 202 counts only once the event is
  committed (WAL, `synchronous=FULL`, group commit). No endpoints are configured, so nothing
  is delivered. Ceiling: an aiohttp server (same event loop, no uvloop, as the daemon) that
  reads the body and answers a fixed 202, hit by the same load generator. On 2 cores the
  load generator itself takes about one core, so the ceiling is "this client against a
  server that does nothing", not the server's own limit.
- **Ingest, batches of 100**: arrays of 100 such events, 4 clients. Ceiling: one process
  inserting rows like the daemon's `events` rows (same columns, unique indexes, body size)
  with stdlib `sqlite3`, WAL, `synchronous=FULL`, 100 rows per transaction with one
  `executemany`: the cost of the durable write alone, no HTTP, no JSON, no validation.
- **Delivery**: 5,000 events posted in batches of 100 to a daemon with 4 endpoints
  subscribed to `*` (20,000 deliveries), one receiver process answering 200 at once;
  deliveries/s = unique deliveries received / (last arrival − first post). The daemon's
  defaults bound concurrency at `endpoint_max_in_flight` (4) per endpoint, 16 in flight in
  all (`max_in_flight` 256 is not reached). Ceiling: a bare aiohttp client, one session,
  posting envelope-sized bodies with webhook-style headers (constant, unsigned) to the same
  receiver, 4 in flight on each of 4 paths, nothing stored or logged.
- **End-to-end latency**: the poster stamps `time.time()` into the event's data just before
  the request; the receiver (another process, same clock) takes `time.time()` on arrival.
  Idle: 200 events one at a time (next one 10 ms after the previous reply) to 1 endpoint.
  Steady: 200 events/s on a fixed schedule (open loop) for 10 s, each delivered to 3
  endpoints; every delivery is a sample. It includes the fsync of the ingest commit, since
  a delivery starts only after its event is on disk. Floor: the same poster posting straight
  to the receiver (one loopback HTTP hop; 5 s at 200/s), so "×N the floor" says how many
  hops' worth the daemon adds. When the daemon delivers fewer than the 600 deliveries/s
  this asks for, its backlog grows for the whole 10 s and the steady figures measure that
  growth (seconds), not a per-event cost.
- **Backlog of 1M pending**: the daemon starts once with 4 endpoints to make its schema and
  endpoint rows; then plain `sqlite3` (no journal, no fsync, for the build only) writes
  250,000 events × 4 endpoints = 1,000,000 pending deliveries into a copy of that file, row
  for row as the daemon's ingest writes them (envelope-sized bodies, created over the last
  ten minutes, all due). Each run starts a fresh daemon on a fresh copy: *spawn → first
  delivery* is from `Popen` to the receiver's first arrival; *peak RSS* is `VmHWM` from
  `/proc` at the end of the drain window (the target is judged on the peak; `VmRSS` is in the
  details); the *drain rate* counts the first 20,000 deliveries after the first arrival
  (or 30 s, whichever comes first), and the daemon is then stopped with the rest of the
  backlog still pending, which is what this figure expects. *The claim statement* is the
  daemon's own claim SQL (taken from `store/ops.py` by running its code against a stand-in
  connection), 4 endpoints × 4 due deliveries, timed 200 times with stdlib `sqlite3` in a
  process of its own, each in a transaction that is rolled back, on a copy of the database
  before the daemon starts. Reference for start, memory and claim: the same steps on an
  outbox of 4,000 pending (1,000 events × 4), drained to the end. Reference for the drain
  rate: figure 3 (the same daemon delivering to the same receiver from an empty outbox),
  run by run; figure 3's window also holds its ~1 s of posting, this one only delivery, so
  a ratio a little above 1 is no gain. When figure 3 is not run, a bare client (as in figure 3) stands in, and the
  0.8 target is not judged.
- **Isolation**: 3,000 events in batches of 100, each for 4 endpoints: three on the fast
  receiver, one on a path where the receiver reads the request and never answers (the
  connection stays open until the process ends). Deliveries/s to the three fast ones =
  unique deliveries / (last arrival − first post). Reference: the same burst to a daemon
  with only the three fast endpoints. Both use the default delivery settings (15 s timeout,
  4 in flight per endpoint) and `shutdown_grace = "1s"`, so the stop cancels the hung
  attempts instead of waiting for them; those cancellations, the dead endpoint's warnings and
  its pending deliveries are expected and not counted as problems.
- **Idle footprint**: a daemon with 4 endpoints and nothing to do, 3 s after it is ready:
  CPU time (utime + stime from `/proc/PID/stat`) over a 60 s window as % of one core, and
  `VmRSS` at the end. The N "runs" are N daemons side by side over the same 60 s (they are
  idle, so they do not compete), each next to a bare aiohttp server (the figure 1 ceiling)
  idle over the same window; a clock tick is 10 ms, so 0.02 % over 60 s is one tick.

The machine is shared and noisy: differences under ~30 % between runs are noise (see the
spread column).
"""


def write_readme(
    path: Path,
    rows: list[dict[str, str]],
    info: dict[str, str],
    command: str,
    elapsed: float,
    runs: int,
    raw: dict[str, Any],
    observations: list[str],
    harness_notes: list[str],
) -> None:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    checks = "\n".join(f"- {o}" for o in observations) or (
        "- none: every ingest request got 202 and every event acknowledged was in the database after the stop,"
        " every delivery arrived exactly once and signed, the"
        " daemon's status showed every delivery `delivered` and no backlog after each run, it logged"
        " no warning or error, and it exited 0 on SIGTERM each time."
        + (
            " The backlog daemons were stopped with their backlog still pending, on purpose."
            if raw.get("backlog")
            else ""
        )
        + (
            " The hung attempts to the dead endpoint were cancelled at the stop, on purpose."
            if raw.get("isolation")
            else ""
        )
    )
    checks += "\n\nHarness notes (the measuring side, not the daemon):\n\n" + (
        "\n".join(f"- {o}" for o in harness_notes) or "- none"
    )
    text = f"""# tillhook benchmarks

The real daemon (`python -m tillhook serve`, as a subprocess, with a generated config) is
measured next to a ceiling measured in the same run, so the ratio says how much of what the
machine can do the daemon reaches. Receivers and load generators are separate processes
(`bench/worker.py`); everything runs on 127.0.0.1 in one temporary directory.

Run it:

```
{command}
```

`--runs N` (default 3) sets how many runs each figure's median is taken over; `--quick` is a
short smoke run (1 run, shorter phases) that prints the table without touching this file
unless `--readme PATH` is given.

## Results

Median of {runs} runs; spread is min – max of the runs. Whole run took {elapsed:.0f} s.

{table(rows)}

Machine: {info["nproc"]} CPUs ({info["cpu"]}), {info["memory"]} RAM, Linux {info["kernel"]},
Python {info["python"]}, SQLite {info["sqlite"]}, aiohttp {info["aiohttp"]},
aiosqlite {info["aiosqlite"]}; load average at start {info["loadavg_at_start"]}; {today}.

{NOTES}
What limits each figure (profiles with py-spy, perf and strace, written by hand, not by this
script): [FINDINGS.md](FINDINGS.md).

## Problems the run checked for (lost, duplicated or refused events; daemon warnings and exit code)

{checks}

## Per-run details

{details(raw)}
"""
    path.write_text(text)


# -- main ------------------------------------------------------------------------------------


FIGURES = (
    "single",
    "batch",
    "delivery",
    "latency",
    "backlog",
    "isolation",
    "idle",
    "dashboard",
    "shaping",
    "shared",
    "catalogue",
)
# Figures with a README section and a results.json entry of their own: run alone, they
# update only those.
OWN_SECTIONS = {"dashboard": dashboard, "shaping": shaping, "shared": shared, "catalogue": catalogue}


def _run_later_figures(
    bench: Bench, run: int, runs: int, receiver: Receiver, only: set[str], cluster: shared.Cluster | None
) -> None:
    raw = bench.raw
    if "shared" in only:
        assert cluster is not None
        say(f"[run {run + 1}/{runs}] one outbox shared on PostgreSQL: ingest and delivery, 1 and 2 daemons")
        started = time.monotonic()
        raw.setdefault("shared", []).append(bench.shared_outbox(run, receiver, cluster))
        r = raw["shared"][-1]
        for kind in ("ingest", "delivery"):
            say(
                f"    {kind}: "
                + ", ".join(f"{shared.LABELS[s]} {fmt_rate(r[kind][s]['value'])}" for s in shared.SETUPS)
            )
        say(f"    ({time.monotonic() - started:.0f} s)")
    if "backlog" in only:
        say(f"[run {run + 1}/{runs}] backlog of 1,000,000 pending deliveries")
        raw.setdefault("backlog", []).append(bench.backlog(run, receiver, bare_reference="delivery" not in only))
        r = raw["backlog"][-1]
        big = r["big"]
        say(
            f"    first delivery after {fmt_s(big['first_s'])}, drain {fmt_rate(big['drain_per_s'])},"
            f" RSS {fmt_mb(big['rss_mb'])} (peak {fmt_mb(big['hwm_mb'])}),"
            f" claim p50 {fmt_ms((big['claims'] or {}).get('ms_p50'))} ({r['elapsed_s']:.0f} s)"
        )
    if "isolation" in only:
        say(f"[run {run + 1}/{runs}] isolation from an endpoint that never answers")
        raw.setdefault("isolation", []).append(bench.isolation(run, receiver))
        r = raw["isolation"][-1]
        say(f"    with it {fmt_rate(r['value'])}, without {fmt_rate(r['ceiling'])} ({r['elapsed_s']:.0f} s)")
    if "shaping" in only:
        say(f"[run {run + 1}/{runs}] delivery with filters, transforms and presets")
        raw.setdefault("shaping", []).append(bench.shaping(run, receiver))
        r = raw["shaping"][-1]
        say("    " + ", ".join(f"{name} {v['per_s']:.0f}/s ({v['cpu_us']:.0f} µs CPU each)" for name, v in r.items()))
    if "dashboard" in only:
        say(f"[run {run + 1}/{runs}] dashboard pages over 1,000,000 deliveries")
        raw.setdefault("dashboard", []).append(bench.dashboard(run, receiver))
        r = raw["dashboard"][-1]
        for path, p in r["pages"].items():
            say(f"    {path}: p50 {fmt_ms(p['ms_p50'])}, p95 {fmt_ms(p['ms_p95'])} (first {fmt_ms(p['first_ms'])})")
        say(f"    ({r['elapsed_s']:.0f} s)")


def _section_rows(key: str, runs: list[dict[str, Any]]) -> list[dict[str, str]]:
    if key == "dashboard":
        return dashboard.rows(runs, fmt_ms, span, med)
    if key == "shared":
        return shared.rows(runs, fmt_rate, span, med)
    if key == "catalogue":
        return catalogue.rows(runs, fmt_rate, span, med)
    return shaping.rows(runs, fmt_rate, span, med)


def _write_section(key: str, readme: Path, info: dict[str, str], command: str, raw: dict[str, Any]) -> None:
    runs = raw[key]
    module = OWN_SECTIONS[key]
    when = (
        f"median of {len(runs)} run(s); {info['nproc']} CPUs ({info['cpu']}), Python {info['python']},"
        f" SQLite {info['sqlite']}, load average at start {info['loadavg_at_start']};"
        f" {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    )
    if key == "shared":
        text = shared.section(table(_section_rows(key, runs)), shared.details(runs), command, when, runs)
    else:
        details_lines = (
            dashboard.details(runs, fmt_ms)
            if key == "dashboard"
            else catalogue.details(runs)
            if key == "catalogue"
            else shaping.details(runs)
        )
        text = module.section(table(_section_rows(key, runs)), details_lines, command, when)
    readme.write_text(module.splice(readme.read_text() if readme.exists() else "", text))


def _write_sections_only(readme: Path, info: dict[str, str], command: str, raw: dict[str, Any], bench: Bench) -> None:
    """Figures 8 to 11 alone: their sections of the README and their entries in results.json;
    the other figures' results stay as their last full run left them."""
    keys = [k for k in OWN_SECTIONS if raw.get(k)]
    for key in keys:
        _write_section(key, readme, info, command, raw)
    results = BENCH_DIR / "results.json"
    if readme.resolve() != (BENCH_DIR / "README.md").resolve():
        return  # a trial run written elsewhere: the kept results are the README's
    kept = json.loads(results.read_text()) if results.exists() else {"raw": {}}
    for key in keys:
        kept["raw"][key] = raw[key]
        kept[key] = {"machine": info, "observations": bench.observations, "harness_notes": bench.harness_notes}
    results.write_text(json.dumps(kept, indent=1))
    say(f"wrote the {' and '.join(keys)} section(s) of {readme} and their entries in {results}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--readme", help="write the report here (default: bench/README.md on a full run)")
    parser.add_argument("--only", help="comma-separated subset: " + ",".join(FIGURES))
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="figure 10 on this PostgreSQL cluster (a superuser URL; a database is made per daemon set)"
        " instead of one of its own started by .ci/postgres",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    only = set(args.only.split(",")) if args.only else set(FIGURES)
    if only - set(FIGURES):
        parser.error(f"--only: no figure named {', '.join(sorted(only - set(FIGURES)))}; figures: {', '.join(FIGURES)}")
    readme = Path(args.readme) if args.readme else (None if args.quick else BENCH_DIR / "README.md")
    tmp = Path(tempfile.mkdtemp(prefix="tillhook-bench-"))
    # The command as the README shows it: no --readme (a trial's path), no cluster URL (it may hold a password).
    shown = []
    for a in sys.argv[1:]:
        if a.startswith("--readme") or a == args.readme:
            continue
        shown.append("--postgres URL" if a.startswith("--postgres") else "" if a == args.postgres else a)
    command = ".venv/bin/python bench/run.py" + "".join(f" {a}" for a in shown if a)
    say(f"tillhook bench: {runs} run(s){' (quick)' if args.quick else ''}, temp dir {tmp}")
    info = machine()
    started = time.monotonic()
    bench = Bench(runs, args.quick, tmp)
    raw = bench.raw
    receiver: Receiver | None = None
    cluster: shared.Cluster | None = None

    def stop_all(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_all)
    try:
        if "shared" in only:
            if args.postgres:
                cluster = shared.Cluster(args.postgres, None)
            else:
                say("starting a PostgreSQL cluster of this run's own (.ci/postgres start)")
                cluster = shared.Cluster.start(tmp)
            cpu_from = "read from /proc" if cluster.postmaster else "not readable here"
            say(f"    PostgreSQL {cluster.version}; its CPU {cpu_from}")
        if only - {"single", "batch", "catalogue"}:
            receiver = Receiver()
        for run in range(runs):
            raw.setdefault("loadavg", []).append(_loadavg())  # type: ignore[arg-type]
            if "single" in only:
                say(f"[run {run + 1}/{runs}] ingest, one event per request")
                raw.setdefault("ingest_single", []).append(bench.ingest_single(run))
                r = raw["ingest_single"][-1]
                say(f"    daemon {r['value']:.0f}/s, bare {r['ceiling']:.0f}/s")
            if "batch" in only:
                say(f"[run {run + 1}/{runs}] ingest, batches of 100")
                raw.setdefault("ingest_batch", []).append(bench.ingest_batch(run))
                r = raw["ingest_batch"][-1]
                say(f"    daemon {r['value']:.0f}/s, plain sqlite3 {r['ceiling']:.0f}/s")
            if "delivery" in only:
                assert receiver is not None
                say(f"[run {run + 1}/{runs}] delivery to a fast receiver")
                raw.setdefault("delivery", []).append(bench.delivery(run, receiver))
                r = raw["delivery"][-1]
                say(f"    daemon {r['value']:.0f}/s, bare client {r['ceiling']:.0f}/s")
            if "latency" in only:
                assert receiver is not None
                say(f"[run {run + 1}/{runs}] end-to-end latency")
                raw.setdefault("latency", []).append(bench.latency(run, receiver))
                r = raw["latency"][-1]
                say(
                    f"    idle p50 {fmt_ms(r['daemon_idle']['p50'])} p99 {fmt_ms(r['daemon_idle']['p99'])};"
                    f" 200/s p50 {fmt_ms(r['daemon_steady']['p50'])} p99 {fmt_ms(r['daemon_steady']['p99'])}"
                )
            if only & {"backlog", "isolation", "dashboard", "shaping", "shared"}:
                assert receiver is not None
                _run_later_figures(bench, run, runs, receiver, only, cluster)
            if "catalogue" in only:
                say(f"[run {run + 1}/{runs}] ingest, batches of 100, with the event-type catalogue")
                started_run = time.monotonic()
                raw.setdefault("catalogue", []).append(bench.catalogue(run))
                r = raw["catalogue"][-1]
                say(
                    "    "
                    + ", ".join(
                        f"{n} {r[n]['events_per_s']:.0f}/s ({r[n]['cpu_us']:.0f} µs CPU each)" for n in r["order"]
                    )
                    + f" ({time.monotonic() - started_run:.0f} s)"
                )
        if "idle" in only:
            assert receiver is not None
            say(f"[{runs} side by side] idle footprint")
            started_idle = time.monotonic()
            raw["idle"] = bench.idle(receiver)
            for r in raw["idle"]:
                say(
                    f"    daemon {r['daemon_cpu_pct']:.2f} % CPU, {fmt_mb(r['daemon_rss_mb'])};"
                    f" bare {r['bare_cpu_pct']:.2f} % CPU, {fmt_mb(r['bare_rss_mb'])}"
                )
            say(f"    ({time.monotonic() - started_idle:.0f} s)")
    finally:
        if receiver is not None:
            receiver.stop()
        _cleanup()
        if cluster is not None:
            problem = cluster.stop()
            if problem:
                bench.harness(problem)
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - started
    rows = build_rows(raw)
    print(table(rows))
    for key in OWN_SECTIONS:
        if raw.get(key):
            print("\n" + table(_section_rows(key, raw[key])))
    print(f"\n{runs} run(s) in {elapsed:.0f} s")
    for title, notes in (("Daemon problems", bench.observations), ("Harness notes", bench.harness_notes)):
        if notes:
            print(f"\n{title}:")
            for o in notes:
                print(f"- {o}")
    if readme is not None and only <= set(OWN_SECTIONS):
        _write_sections_only(readme, info, command, raw, bench)
    elif readme is not None:
        write_readme(readme, rows, info, command, elapsed, runs, raw, bench.observations, bench.harness_notes)
        for key in OWN_SECTIONS:
            if raw.get(key):
                _write_section(key, readme, info, command, raw)
        (BENCH_DIR / "results.json").write_text(
            json.dumps(
                {
                    "machine": info,
                    "elapsed_s": elapsed,
                    "runs": runs,
                    "raw": raw,
                    "observations": bench.observations,
                    "harness_notes": bench.harness_notes,
                },
                indent=1,
            )
        )
        say(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
