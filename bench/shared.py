"""Figure 10: the outbox shared on PostgreSQL. Ingest (figure 1's load: one event per request,
50 clients, no endpoints) and delivery (a burst to 8 endpoints on the fast receiver, counted as
figure 3 counts) for three daemon sets: one daemon on SQLite, one daemon on PostgreSQL, two
daemons sharing one PostgreSQL outbox with the load split evenly between them. Per run: the CPU
of every daemon, of all of PostgreSQL's processes and of the load generator or receiver, and
PostgreSQL's own counts (transactions, WAL flushes).

Used by bench/run.py (`--only shared`), which hands it its daemon and worker helpers (`Kit`);
this file holds the cluster, the measuring, the table rows and the README section."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import dashboard  # beside this file; the README's sections are spliced the same way
from tillhook.store.pg.presence import rendezvous_weight  # the daemons' own rendezvous hash

BENCH_DIR = Path(__file__).resolve().parent
CI_POSTGRES = BENCH_DIR.parent / ".ci" / "postgres"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SETUPS = ("sqlite", "pg", "pg2")
LABELS = {"sqlite": "SQLite, 1 daemon", "pg": "PostgreSQL, 1 daemon", "pg2": "PostgreSQL, 2 daemons"}
ENDPOINTS = 8  # each served by one daemon (rendezvous hash): 8 split less unevenly than 4
DB_PREFIX = "tillhook_bench_"
TARGET = 0.9  # two daemons against one: nothing lost to coordination


@dataclass(frozen=True)
class Kit:
    """What bench/run.py lends: its Daemon class, its worker runner, its CPU reader and the
    ingest token the daemons' configs hold."""

    daemon: Callable[..., Any]
    run_worker: Callable[..., dict[str, Any]]
    cpu_seconds: Callable[[int], float]
    token: str


# -- the cluster -----------------------------------------------------------------------------


def _proc_times(pid: int) -> float:
    """utime + stime + cutime + cstime of a process, from /proc: its own CPU and that of the
    children it has reaped (PostgreSQL's postmaster reaps every backend that ends)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


class Cluster:
    """A PostgreSQL server for the figure: one of its own (`.ci/postgres start`, stopped and
    removed by `stop`) or one given by a superuser URL. Each daemon set gets a fresh database."""

    def __init__(self, url: str, directory: Path | None) -> None:
        self.url = url
        self.directory = directory  # set only for a cluster this run started
        self.version = str(self.sql("SHOW server_version")[0][0])
        self.postmaster = self._find_postmaster()

    @classmethod
    def start(cls, tmp: Path) -> Cluster:
        env_file = tmp / "postgres.env"
        proc = subprocess.Popen(
            [str(CI_POSTGRES), "start", str(env_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            _, err = proc.communicate(timeout=600)
        except BaseException:
            # Interrupted: let the script finish (it undoes itself on failure), then stop what it made.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=120)
            cls._stop_from(env_file)
            raise
        if proc.returncode != 0:
            raise RuntimeError(f".ci/postgres start failed (exit {proc.returncode}): {err[-2000:]}")
        values = cls._read_env(env_file)
        try:
            return cls(values["TILLHOOK_TEST_POSTGRES"], Path(values["TILLHOOK_TEST_POSTGRES_DIR"]))
        except BaseException:
            cls._stop_from(env_file)
            raise

    @staticmethod
    def _read_env(env_file: Path) -> dict[str, str]:
        values = {}
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            values[key.strip()] = value.strip()
        return values

    @classmethod
    def _stop_from(cls, env_file: Path) -> None:
        if env_file.exists():
            directory = cls._read_env(env_file).get("TILLHOOK_TEST_POSTGRES_DIR")
            if directory:
                subprocess.run([str(CI_POSTGRES), "stop", directory], capture_output=True, timeout=120, check=False)

    def stop(self) -> str | None:
        """Stops and removes a cluster this run started; a problem, in words, or None."""
        if self.directory is None:
            return None
        proc = subprocess.run(
            [str(CI_POSTGRES), "stop", str(self.directory)], capture_output=True, text=True, timeout=120, check=False
        )
        return None if proc.returncode == 0 else f".ci/postgres stop failed: {proc.stderr[-500:]}"

    def _find_postmaster(self) -> int | None:
        """The postmaster's pid, from postmaster.pid in the data directory, when it is on
        this machine and readable: then the cluster's CPU can be read from /proc."""
        if self.directory is not None:
            data = self.directory / "data"
        else:
            try:
                data = Path(str(self.sql("SHOW data_directory")[0][0]))
            except asyncpg.PostgresError:
                return None
        try:
            return int((data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def cpu_seconds(self) -> float | None:
        """All of the cluster's CPU so far: the postmaster, the backends and background
        workers alive now, and those that ended (reaped by the postmaster)."""
        if self.postmaster is None:
            return None
        return _proc_times(self.postmaster) + sum(_proc_times(pid) for pid in _children(self.postmaster))

    def database_url(self, name: str) -> str:
        return urlunsplit(urlsplit(self.url)._replace(path=f"/{name}"))

    def sql(self, query: str, *args: Any, database: str | None = None) -> list[Any]:
        async def run() -> list[Any]:
            conn = await asyncpg.connect(self.database_url(database) if database else self.url, timeout=10)
            try:
                return list(await conn.fetch(query, *args))
            finally:
                await conn.close()

        return asyncio.run(run())

    def create_database(self, tag: str) -> str:
        name = f"{DB_PREFIX}{tag}_{secrets.token_hex(3)}"
        self.sql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        if not name.startswith(DB_PREFIX):
            raise ValueError(f"{name!r} is not a database this figure made")
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def wal(self) -> dict[str, int]:
        """The cluster's WAL counters (all databases): flushes to disk, writes, bytes."""
        row = self.sql("SELECT wal_sync, wal_write, wal_bytes::bigint FROM pg_stat_wal")[0]
        return {"wal_syncs": int(row[0]), "wal_writes": int(row[1]), "wal_bytes": int(row[2])}

    def settle(self, name: str, seconds: float = 10.0) -> None:
        """Until no session is left on the database: an ending backend writes its counts to
        the statistics on its way out."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name)[0][0]:
                return
            time.sleep(0.05)

    def commits(self, name: str) -> int:
        return int(self.sql("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", name)[0][0])


# -- the measuring ---------------------------------------------------------------------------


class Figure:
    def __init__(self, bench: Any, kit: Kit, cluster: Cluster) -> None:
        self.bench, self.kit, self.cluster = bench, kit, cluster

    def run_once(self, run: int, receiver: Any) -> dict[str, Any]:
        """The three sets for ingest, then for delivery, in an order that rotates from run to run."""
        shift = run % len(SETUPS)
        order = list(SETUPS[shift:] + SETUPS[:shift])
        out: dict[str, Any] = {"order": order, "ingest": {}, "delivery": {}, "postgres": self.cluster.version}
        for setup in order:
            out["ingest"][setup] = self._ingest(run, setup)
        for setup in order:
            out["delivery"][setup] = self._delivery(run, setup, receiver)
        return out

    def _start(
        self, setup: str, tag: str, endpoints: list[dict[str, Any]]
    ) -> tuple[list[Any], str | None, dict[str, int] | None]:
        """The daemons of a set (on a fresh database for PostgreSQL), and the WAL counters
        taken once that database exists."""
        workdir = self.bench.tmp / tag
        if setup == "sqlite":
            return [self.kit.daemon(workdir, endpoints)], None, None
        db = self.cluster.create_database(tag.replace("-", "_"))
        wal = self.cluster.wal()
        daemons: list[Any] = []
        try:
            for k in range(2 if setup == "pg2" else 1):
                storage = {"url": self.cluster.database_url(db)}
                daemons.append(self.kit.daemon(workdir / f"d{k}", endpoints, storage=storage, start_timeout_s=60))
        except BaseException:
            for daemon in daemons:
                daemon.stop()
            self.cluster.drop_database(db)
            raise
        return daemons, db, wal

    def _finish(
        self, label: str, daemons: list[Any], db: str | None, wal0: dict[str, int] | None, count_sql: str
    ) -> dict[str, Any]:
        """Stop the daemons; what is stored (`count_sql` over the outbox) and, for
        PostgreSQL, its commits and WAL flushes over the set's whole life; the database dropped."""
        for k, daemon in enumerate(daemons):
            self.bench._daemon_done(daemon, f"{label} daemon {k}")
        if db is None:
            conn = sqlite3.connect(f"file:{daemons[0].workdir / 'tillhook.db'}?mode=ro", uri=True)
            try:
                return {"stored": conn.execute(count_sql).fetchone()[0]}
            finally:
                conn.close()
        try:
            self.cluster.settle(db)
            wal = self.cluster.wal()
            assert wal0 is not None
            return {
                "stored": int(self.cluster.sql(count_sql, database=db)[0][0]),
                "commits": self.cluster.commits(db),
                **{key: wal[key] - wal0[key] for key in wal},
            }
        finally:
            self.cluster.drop_database(db)

    def _cpu(self, daemons: list[Any], client_pid: int | None, db: str | None) -> dict[str, Any]:
        return {
            "daemons": [self.kit.cpu_seconds(d.pid) for d in daemons],
            "postgres": self.cluster.cpu_seconds() if db else None,  # SQLite: the cluster idles, not counted
            "client": self.kit.cpu_seconds(client_pid) if client_pid else None,
            "at": time.monotonic(),
        }

    @staticmethod
    def _cpu_used(before: dict[str, Any], after: dict[str, Any], client_s: float | None = None) -> dict[str, Any]:
        wall = after["at"] - before["at"]
        daemons = [b - a for a, b in zip(before["daemons"], after["daemons"], strict=True)]
        pg = None if before["postgres"] is None else after["postgres"] - before["postgres"]
        client = client_s if client_s is not None else after["client"] - before["client"]
        return {"wall_s": wall, "daemons_s": daemons, "postgres_s": pg, "client_s": client}

    def _ingest(self, run: int, setup: str) -> dict[str, Any]:
        warmup, duration = (0.5, 2.0) if self.bench.quick else (1.0, 4.0)
        tag = f"shared-ingest-{run}-{setup}"
        label = f"shared ingest ({LABELS[setup]})"
        daemons, db, wal0 = self._start(setup, tag, [])
        try:
            before = self._cpu(daemons, None, db)
            result = self.kit.run_worker(
                "loadgen",
                {
                    "concurrency": 50,
                    "warmup": warmup,
                    "duration": duration,
                    "token": self.kit.token,
                    "urls": [f"{d.base}/v1/events" for d in daemons],
                    "prefix": f"sh{run}{setup}",
                },
                timeout=warmup + duration + 90,
            )
            after = self._cpu(daemons, None, db)
        finally:
            counts = self._finish(label, daemons, db, wal0, "SELECT count(*) FROM events")
        acknowledged = result.get("statuses", {}).get("202", 0)
        if counts["stored"] < acknowledged or (counts["stored"] > acknowledged and not result.get("errors")):
            self.bench.note(
                f"{label} run {run}: {acknowledged} events acknowledged with 202 but {counts['stored']} stored"
            )
        bad = {k: v for k, v in result.get("statuses", {}).items() if k != "202"}
        if bad or result.get("errors"):
            self.bench.note(f"{label} run {run}: non-202 replies {bad}, client errors {result.get('errors') or {}}")
        return {
            "value": result["events_per_s"],
            "per_daemon": list(result.get("events_per_s_by_url", {}).values()),
            "request_ms_p50": result["request_ms_p50"],
            "request_ms_p99": result["request_ms_p99"],
            "acknowledged": acknowledged,
            "cpu": self._cpu_used(before, after, client_s=result.get("cpu_s")),
            **counts,
        }

    def _split(self, daemons: list[Any], db: str) -> list[list[str]]:
        """Which endpoints (by name) each daemon serves: the daemons' rendezvous hash over the
        live daemons' ids, as their presence computes it."""
        ids = {int(pid): str(i) for i, pid in self.cluster.sql("SELECT id, pid FROM daemons", database=db)}
        endpoints = self.cluster.sql("SELECT id, name FROM endpoints ORDER BY name", database=db)
        served: list[list[str]] = [[] for _ in daemons]
        live = sorted(ids.values())
        for endpoint_id, name in endpoints:
            winner = max(live, key=lambda daemon_id: rendezvous_weight(daemon_id, str(endpoint_id)))
            for k, daemon in enumerate(daemons):
                if ids.get(daemon.pid) == winner:
                    served[k].append(str(name))
        return served

    def _see_each_other(self, label: str, daemons: list[Any]) -> None:
        """Until each daemon has seen the other (its presence beats every lease/3: up to 10 s
        with the default lease), so every endpoint has one owner before the load starts."""
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and not all(d.counts.get("daemons_changed", 0) for d in daemons):
            time.sleep(0.1)
        if not all(d.counts.get("daemons_changed", 0) for d in daemons):
            self.bench.harness(f"{label}: the two daemons had not both logged daemons_changed within 15 s")

    def _delivery(self, run: int, setup: str, receiver: Any) -> dict[str, Any]:
        events = 500 if self.bench.quick else 2_500
        names = [f"p{i}" for i in range(ENDPOINTS)]
        deliveries = events * len(names)
        tag = f"shared-delivery-{run}-{setup}"
        label = f"shared delivery ({LABELS[setup]})"
        receiver.reset()
        endpoints = [{"name": n, "url": f"{receiver.base}/hook/{n}", "events": ["*"]} for n in names]
        daemons, db, wal0 = self._start(setup, tag, endpoints)
        try:
            if len(daemons) > 1:
                self._see_each_other(label, daemons)
            served = self._split(daemons, db) if db else [names]
            before = self._cpu(daemons, receiver.proc.pid, db)
            posted = self.kit.run_worker(
                "post-burst",
                {
                    "urls": [f"{d.base}/v1/events" for d in daemons],
                    "token": self.kit.token,
                    "events": events,
                    "batch": 100,
                    "concurrency": 4,
                },
                timeout=180,
            )
            stats = receiver.wait_for(deliveries, seconds=180)
            after = self._cpu(daemons, receiver.proc.pid, db)
            time.sleep(0.3)  # late duplicates, if any
            stats = receiver.stats()
            status = daemons[0].wait_drained(deliveries, seconds=20)
        finally:
            counts = self._finish(label, daemons, db, wal0, "SELECT count(*) FROM deliveries WHERE state = 'delivered'")
        if posted["accepted"] != events or set(posted["statuses"]) != {"202"}:
            self.bench.note(
                f"{label} run {run}: {posted['accepted']} of {events} events accepted ({posted['statuses']})"
            )
        if stats["unique"] != deliveries or stats["duplicates"] or stats["missing_signature"]:
            self.bench.note(
                f"{label} run {run}: receiver got {stats['count']} deliveries, {stats['unique']} unique,"
                f" {stats['duplicates']} duplicates, {stats['missing_signature']} unsigned; expected {deliveries}"
                f" (per endpoint {stats['by_path']})"
            )
        if status["deliveries"].get("delivered") != deliveries or status["backlog"]:
            self.bench.note(
                f"{label} run {run}: status after the run {status['deliveries']}, backlog {status['backlog']}"
            )
        first = posted["first_sent"]
        window = (stats["last"] or first) - first
        per_daemon = []
        for names_served in served:
            got = sum(stats["by_path"].get(n, 0) for n in names_served)
            done = max((stats["last_by_path"].get(n, first) for n in names_served), default=first)
            per_daemon.append(
                {"endpoints": names_served, "deliveries": got, "done_s": done - first, "per_s": got / (done - first)}
                if done > first
                else {"endpoints": names_served, "deliveries": got, "done_s": 0.0, "per_s": 0.0}
            )
        return {
            "value": stats["unique"] / window if window > 0 else 0.0,
            "deliveries": stats["unique"],
            "window_s": window,
            "ingest_s": posted["last_reply"] - first,
            "per_daemon": per_daemon,
            "cpu": self._cpu_used(before, after),
            **counts,
        }


# -- the report ------------------------------------------------------------------------------


def _ratios(runs: list[dict[str, Any]], kind: str, top: str, bottom: str) -> list[float]:
    pairs = ((r[kind][top]["value"], r[kind][bottom]["value"]) for r in runs)
    return [a / b for a, b in pairs if b]


def rows(runs: list[dict[str, Any]], fmt_rate: Any, span: Any, med: Any) -> list[dict[str, str]]:
    out = []
    for kind, what in (
        ("ingest", "Ingest, 1 event/request, 50 clients, no endpoints (events/s)"),
        ("delivery", f"Delivery, burst to {ENDPOINTS} endpoints, fast receiver (deliveries/s)"),
    ):
        for top, bottom, target in (("pg", "sqlite", None), ("pg2", "pg", TARGET)):
            values = [r[kind][top]["value"] for r in runs]
            refs = [r[kind][bottom]["value"] for r in runs]
            ratios = _ratios(runs, kind, top, bottom)
            ratio = med(ratios)
            text = "n/a" if ratio is None else f"{ratio:.2f}"
            if ratio is not None and target is not None and text == f"{target:.2f}" and ratio != target:
                text = f"{ratio:.3f}"
            out.append(
                {
                    "figure": f"{what}: {LABELS[top]}",
                    "value": fmt_rate(med(values)),
                    "ceiling": f"{fmt_rate(med(refs))} ({LABELS[bottom]}, same run)",
                    "ratio": text,
                    "spread": f"{span(values, fmt_rate)}; ratio {span(ratios, lambda x: f'{x:.2f}')}",
                    "target": "—"
                    if target is None
                    else f"ratio ≥ {target} " + ("✅" if ratio is not None and ratio >= target else "❌"),
                }
            )
    return out


def _cores(cpu: dict[str, Any]) -> dict[str, float | None]:
    wall = cpu["wall_s"] or 1.0
    daemons = sum(cpu["daemons_s"])
    pg = cpu["postgres_s"]
    client = cpu["client_s"]
    parts = [daemons, pg or 0.0, client or 0.0]
    return {
        "daemons": daemons / wall,
        "postgres": None if pg is None else pg / wall,
        "client": None if client is None else client / wall,
        "total": sum(parts) / wall,
    }


def cpu_table(runs: list[dict[str, Any]]) -> str:
    """Per set, medians over the runs: each part's cores (CPU seconds over the wall seconds of
    the load) and CPU per event or delivery; what PostgreSQL made durable per WAL flush."""
    head = "| set | rate | daemon(s) | PostgreSQL | load generator / receiver | all | per WAL flush | commits |"
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def median(values: list[float | None]) -> float | None:
        clean = [v for v in values if v is not None]
        return statistics.median(clean) if clean else None

    def part(cores: list[float | None], us: list[float | None], unit: str) -> str:
        c, u = median(cores), median(us)
        return "—" if c is None else f"{c:.2f} cores" + ("" if u is None else f", {u:.0f} µs/{unit}")

    for kind, unit, client in (("ingest", "event", "load generator"), ("delivery", "delivery", "receiver")):
        for setup in SETUPS:
            sets = [r[kind][setup] for r in runs]
            # Every event acknowledged (and every delivery counted) falls in the CPU window.
            amounts = [s["acknowledged"] if kind == "ingest" else s["deliveries"] for s in sets]
            cores = [_cores(s["cpu"]) for s in sets]

            def us(key: str, sets: list[dict[str, Any]] = sets, amounts: list[int] = amounts) -> list[float | None]:
                out: list[float | None] = []
                for s, n in zip(sets, amounts, strict=True):
                    value = s["cpu"][key]
                    total = sum(value) if isinstance(value, list) else value
                    out.append(None if total is None or not n else total / n * 1e6)
                return out

            flushes = [s["stored"] / s["wal_syncs"] if s.get("wal_syncs") else None for s in sets]
            commits = [s["commits"] / s["stored"] if s.get("commits") and s["stored"] else None for s in sets]
            two = len(sets[0]["cpu"]["daemons_s"]) > 1
            flush_text = (
                "—"
                if median(flushes) is None
                else f"{median(flushes):.1f} {'deliveries' if kind == 'delivery' else 'events'}"
            )
            commit_text = "—" if median(commits) is None else f"{median(commits):.2f} per {unit}"
            lines.append(
                f"| {kind}, {LABELS[setup]} | {median([s['value'] for s in sets]):.0f}/s"
                f" | {part([c['daemons'] for c in cores], us('daemons_s'), unit)}{' (both)' if two else ''}"
                f" | {part([c['postgres'] for c in cores], us('postgres_s'), unit)}"
                f" | {part([c['client'] for c in cores], us('client_s'), unit)} ({client})"
                f" | {median([c['total'] for c in cores]):.2f} cores | {flush_text} | {commit_text} |"
            )
    return "\n".join(lines)


def details(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i, r in enumerate(runs):
        for kind in ("ingest", "delivery"):
            parts = []
            for setup in r["order"]:
                s = r[kind][setup]
                cpu = s["cpu"]
                daemons = " + ".join(f"{x:.1f}" for x in cpu["daemons_s"])
                pg = "" if cpu["postgres_s"] is None else f", PostgreSQL {cpu['postgres_s']:.1f} s"
                client = (
                    ""
                    if cpu["client_s"] is None
                    else f", {'receiver' if kind == 'delivery' else 'load generator'} {cpu['client_s']:.1f} s"
                )
                counts = ""
                if s.get("wal_syncs") is not None:
                    counts = (
                        f"; {s['commits']} commits, {s['wal_syncs']} WAL flushes, {s['wal_bytes'] / 2**20:.0f} MiB WAL"
                    )
                if kind == "ingest":
                    split = " / ".join(f"{x:.0f}" for x in s["per_daemon"]) if len(s["per_daemon"]) > 1 else ""
                    head = (
                        f"{LABELS[setup]} {s['value']:.0f}/s"
                        + (f" ({split} per daemon)" if split else "")
                        + f", request p50/p99 {s['request_ms_p50']:.1f}/{s['request_ms_p99']:.1f} ms"
                        + f", {s['stored']} stored"
                    )
                else:
                    split = ""
                    if len(s["per_daemon"]) > 1:
                        split = (
                            " ("
                            + "; ".join(
                                f"daemon {k}: {len(d['endpoints'])} endpoint{'' if len(d['endpoints']) == 1 else 's'},"
                                f" {d['deliveries']} in {d['done_s']:.1f} s"
                                for k, d in enumerate(s["per_daemon"])
                            )
                            + ")"
                        )
                    head = f"{LABELS[setup]} {s['deliveries']} in {s['window_s']:.2f} s ({s['value']:.0f}/s){split}"
                parts.append(f"{head}; CPU over {cpu['wall_s']:.1f} s: daemon(s) {daemons} s{pg}{client}{counts}")
            lines.append(f"- shared {kind} run {i} (load average {r.get('loadavg', '?')}): " + "; ".join(parts))
    return lines


NOTE = """\
Run it alone with `.venv/bin/python bench/run.py --only shared` (`--runs N`, default 3;
`--quick` for a short smoke run that writes nothing; `--postgres URL` to use a cluster of your
own, given by a superuser URL, instead of one started by `.ci/postgres`, which installs
Debian's `postgresql` package when run as root on a machine without one). It writes only this
section and its entry in `results.json`; a whole `bench/run.py` run includes it. About 6
minutes for 3 runs.

What each figure measures:

- **Three daemon sets**, each started fresh for each figure and run, in an order that rotates
  from run to run: (a) one daemon on SQLite, as in figures 1–9; (b) one daemon with
  `[storage] url` on PostgreSQL; (c) two daemons with the same url, sharing one outbox.
  PostgreSQL is a cluster of the run's own (`.ci/postgres start`: PostgreSQL's defaults, fsync
  on, on this machine's disk; stopped and removed at the end, also on failure), or the one
  `--postgres URL` names; every PostgreSQL set gets a new database (`CREATE DATABASE`),
  dropped after it. The daemons run with their defaults (lease 30 s).
- **Ingest**: figure 1's load: one load-generator process, 50 keep-alive clients, one event
  per request with an idempotency key, no endpoints, counted over 4 s after a 1 s warm-up;
  in (c) the clients alternate between the two daemons (25 each; the details give each
  daemon's events/s). A 202 counts only once committed; after the stop every event
  acknowledged is looked for in the outbox.
- **Delivery**: 2,500 events in batches of 100 (4 posters; in (c) the batches alternate
  between the daemons) to 8 endpoints subscribed to `*` on the fast receiver: 20,000
  deliveries, counted as figure 3 counts them (unique deliveries / (last arrival − first
  post)). 8 endpoints, not figure 3's 4, because each endpoint is served by one daemon, the
  winner of a rendezvous hash over the live daemons' random ids, so the split of endpoints
  between two daemons changes from run to run: with 8 it is 4/4, 5/3 or 6/2 nine times in
  ten, 7/1 or 8/0 otherwise; the details give each run's split and when each daemon's last
  delivery came. The rate of (c) is that of the whole outbox, set by the daemon with more
  endpoints. In (c) the load starts once each daemon has seen the other (they beat every
  lease/3, 10 s). After each set: every delivery arrived exactly once and signed, the status
  shows them all delivered.
- **CPU**: utime + stime from `/proc` over the load: each daemon; PostgreSQL: the postmaster,
  every backend and background process alive, and those that ended (the postmaster's
  cutime/cstime); the load generator (its own process time) or the receiver. *Cores* = CPU
  seconds / wall seconds of the load; *µs/event* = CPU seconds / events acknowledged (or
  deliveries made) in that window. *Per WAL flush*: events stored (deliveries delivered)
  over `pg_stat_wal.wal_sync` for the set's whole life; *commits*: `pg_stat_database`
  `xact_commit` (reads count too) per event or delivery.

What limits each (medians of the run above):

- **Ingest, SQLite**: the daemon's event loop (0.83 of a core, about 510 µs an event) and the
  load generator (0.6 of a core) on 2 cores, as in figure 1.
- **Ingest, PostgreSQL, 1 daemon** (×0.88 SQLite): the same daemon work per event (about
  510 µs) and the same load generator; PostgreSQL adds 0.1 of a core. Group commit holds
  about 20 events a commit. What is left of the gap is the writer's round trips (BEGIN, the
  first statement with the transaction id and the ordered endpoints' locks, the
  idempotency-key look-up, the inserts, COMMIT), each resumed by the daemon's busy event loop.
  The writer's plans keep to the indexes (scans priced out): on a young outbox the key
  look-up had been planned as a scan of every event (5 ms at 5,000 events, against 0.5 ms now).
- **Ingest, 2 daemons** (×0.91 one): the machine's 2 cores. Two daemons (0.85 of a core
  together), the load generator (0.54) and PostgreSQL (0.18) use 1.56 cores, and each
  daemon's commits hold half as many events (8.5 a WAL flush against 20). With no endpoints,
  ingest shares nothing between the daemons but the unique indexes: what the second daemon
  costs is its own event loop on a machine without a core to spare, not coordination.
- **Delivery, SQLite**: the daemon's core (0.92 of a core, about 750 µs a delivery), as in
  figure 3.
- **Delivery, PostgreSQL, 1 daemon** (×0.59 SQLite): the writer connection's transactions.
  The daemon is busy only half of a core, at the same CPU per delivery as on SQLite.
  PostgreSQL spends about 670 µs a delivery, nearly all in the writer's backend: each outcome
  transaction (about 14 deliveries: 0.07 commits a delivery, `synchronous_commit = off`)
  writes the attempts (whose statement trigger keeps the endpoints' last success and the
  hourly figures), updates the deliveries and claims the next ones, in six round trips. A
  dispatcher slot waits for that cycle before its next delivery.
- **Delivery, 2 daemons** (×1.51 one): two writer connections side by side, each on its own
  endpoints. The outbox's rate is set by the daemon with more endpoints (the details give
  each run's split): a 4/4 split nearly doubles one daemon, a 7/1 split is one daemon's
  pace. Per delivery PostgreSQL spends less than with one daemon, since the machine now runs
  both writers at once (1.71 cores in all).

How it would scale with more cores:

- A daemon is one Python process with one event loop: one core at most, with the same CPU per
  event or delivery on either outbox (about 510–670 µs an ingested event, 700–790 µs a
  delivery). With a core each, every daemon adds about 1.5k events/s (one per request) or,
  at today's writer, about 700 deliveries/s.
- PostgreSQL runs a process per connection, so its work spreads over the cores as daemons are
  added. Two daemons write the same rows only in `attempt_hours` (one row per hour and
  duration step) and in the events' unique indexes; an endpoint's rows are written only by
  the daemon that serves it. WAL flushes came 50–80 a second per daemon, far below this
  disk's ~4,000 fsyncs a second (PERFORMANCE-NOTES.md), and PostgreSQL flushes concurrent
  commits together.
- So throughput should grow nearly in proportion to the daemons, times how evenly the
  endpoints split (many endpoints per daemon even it out; with few, the busiest daemon's
  share sets the pace), until PostgreSQL's cores bind. On this machine the two daemons,
  PostgreSQL and the client used 1.6–1.7 of 2 cores: a third daemon would find nothing left.
- For one daemon, the next step is fewer round trips per transaction: the outcomes and the
  claim as one server-side function call would take the writer from six round trips to three.
"""

MARK_START, MARK_END = "<!-- shared figure -->", "<!-- /shared figure -->"


def section(table_text: str, detail_lines: list[str], command: str, when: str, runs: list[dict[str, Any]]) -> str:
    version = runs[0].get("postgres", "?") if runs else "?"
    return (
        f"{MARK_START}\n## One outbox shared on PostgreSQL: one daemon against SQLite, two against one\n\n"
        f"Measured by `{command}`, apart from the tables above ({when}; PostgreSQL {version}).\n\n"
        f"{table_text}\n\nWhere the CPU went (median cores: CPU seconds over the wall seconds of the load):\n\n"
        f"{cpu_table(runs)}\n\n{NOTE}\n" + "\n".join(detail_lines) + f"\n{MARK_END}\n"
    )


def splice(readme: str, text: str) -> str:
    return dashboard.splice(readme, text, (MARK_START, MARK_END))
