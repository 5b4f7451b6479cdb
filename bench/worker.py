"""The helper processes of bench/run.py. Each role runs in a process of its own:

    python bench/worker.py ROLE JSON-ARGS

and speaks JSON lines on stdout. Servers (bare-server, receiver) print {"listen": "host:port"}
once they are bound, then serve until SIGTERM, until stdin closes, or until --lifetime
seconds pass; the others print one result object and exit. Every loop is bounded in count and
in time. Standard library and aiohttp only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import statistics
import sys
import threading
import time
from typing import Any

import aiohttp
from aiohttp import web

# -- payloads --------------------------------------------------------------------------------

# A realistic POS event: a completed transaction with a few line items (~400 bytes of data).
_ITEMS = [
    {"sku": "4006381333931", "name": "Espresso beans 1kg", "qty": 1, "price": 18.9},
    {"sku": "5449000000996", "name": "Sparkling water 0.5l", "qty": 6, "price": 0.89},
    {"sku": "4001686301265", "name": "Oat biscuits", "qty": 2, "price": 2.49},
]


def event_data(i: int, sent: float | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "transaction_id": f"tx-{i:09d}",
        "amount": 29.12,
        "currency": "EUR",
        "customer_id": f"c_{i % 977}",
        "till": "till-3",
        "cashier": "emp-17",
        "items": _ITEMS,
        "payment": {"method": "card", "scheme": "visa", "last4": "4242"},
    }
    if sent is not None:
        data["sent"] = sent
    return data


# The data object is the same for every event but the transaction id, so the load generators
# splice ids into pre-serialised bytes instead of spending their own CPU on json.dumps.
_DATA_HEAD, _DATA_TAIL = json.dumps(event_data(0), separators=(",", ":")).split("tx-000000000")


def event_bytes(event_type: str, key: str, i: int) -> str:
    return f'{{"type":"{event_type}","id":"{key}","data":{_DATA_HEAD}tx-{i:09d}{_DATA_TAIL}}}'


def envelope_bytes(i: int, msg_id: str | None = None) -> bytes:
    """What the daemon stores and delivers for one event: {id, type, timestamp, data}."""
    msg_id = msg_id or f"msg_01jbench{i:018d}"
    return (
        f'{{"id":"{msg_id}","type":"transaction.completed",'
        f'"timestamp":"2026-11-22T10:30:00.123Z","data":{_DATA_HEAD}tx-{i:09d}{_DATA_TAIL}}}'
    ).encode()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[rank]


def emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# -- servers ---------------------------------------------------------------------------------


async def _serve(app: web.Application, lifetime: float) -> None:
    # A short shutdown: requests held open on purpose (/hang/) would otherwise keep the
    # process alive for aiohttp's default 60 s after SIGTERM.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    host, port = runner.addresses[0][:2]
    emit({"listen": f"{host}:{port}", "pid": os.getpid()})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def watch_stdin() -> None:  # the parent died or closed our stdin: stop
        try:
            sys.stdin.read()
        finally:
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), lifetime)
    await runner.cleanup()


def bare_server(args: dict[str, Any]) -> None:
    """The ingest ceiling: answers POST /v1/events with 202 and a reply like the daemon's,
    after reading the body, without parsing or storing anything."""
    reply = json.dumps(
        {"id": "msg_01jbench000000000000000000", "type": "transaction.completed", "deliveries": 0, "duplicate": False}
    ).encode()

    async def post_events(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, body=reply, content_type="application/json")

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/v1/events", post_events)
    asyncio.run(_serve(app, float(args.get("lifetime", 900))))


_SENT = re.compile(rb'"sent":\s*([0-9.eE+-]+)')


class _Tally:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.by_path: dict[str, int] = {}
        self.seen: set[tuple[str, str]] = set()
        self.duplicates = 0
        self.first: float | None = None
        self.last: float | None = None
        self.last_by_path: dict[str, float] = {}
        self.latencies_ms: dict[str, list[float]] = {}
        self.missing_signature = 0
        self.arrivals: list[float] = []
        self.hung = 0  # requests to /hang/, held open and never answered


def receiver(args: dict[str, Any]) -> None:
    """A fast webhook receiver: answers 200 at once. Counts arrivals per path, notices
    duplicates (same path and webhook-id), and, when the event data carries the poster's
    time.time() as "sent", keeps arrival - sent in ms (the same machine: one clock).
    Under /hang/ it plays a dead receiver instead: it reads the request and never answers,
    until the process ends; those requests are counted apart, as "hung"."""
    tally = _Tally()
    lifetime_s = float(args.get("lifetime", 900))

    async def hang(request: web.Request) -> web.Response:
        tally.hung += 1
        await request.read()
        await asyncio.sleep(lifetime_s)
        return web.Response(status=504)

    async def hook(request: web.Request) -> web.Response:
        arrived = time.time()
        body = await request.read()
        path = request.match_info["name"]
        tally.count += 1
        tally.by_path[path] = tally.by_path.get(path, 0) + 1
        if tally.first is None:
            tally.first = arrived
        tally.last = tally.last_by_path[path] = arrived
        tally.arrivals.append(arrived)
        # Deliveries are told apart by webhook-id; direct posts (the latency floor) by x-bench-id.
        key = (path, request.headers.get("webhook-id") or request.headers.get("x-bench-id") or "")
        if key in tally.seen:
            tally.duplicates += 1
        else:
            tally.seen.add(key)
        if not request.headers.get("webhook-signature", "").startswith("v1,"):
            tally.missing_signature += 1
        match = _SENT.search(body)
        if match:
            tally.latencies_ms.setdefault(path, []).append((arrived - float(match.group(1))) * 1000.0)
        return web.Response(status=200, text="ok")

    async def stats(request: web.Request) -> web.Response:
        out: dict[str, Any] = {
            "count": tally.count,
            "unique": len(tally.seen),
            "duplicates": tally.duplicates,
            "by_path": tally.by_path,
            "first": tally.first,
            "last": tally.last,
            "last_by_path": tally.last_by_path,
            "missing_signature": tally.missing_signature,
            # when 25, 50, 75 and 100 % of the arrivals so far had come: shows a rate that drifts
            "quartiles": [tally.arrivals[max(0, int(len(tally.arrivals) * q) - 1)] for q in (0.25, 0.5, 0.75, 1.0)]
            if tally.arrivals
            else [],
            "hung": tally.hung,
        }
        nth = int(request.query.get("at", "0"))
        if 0 < nth <= len(tally.arrivals):
            out["at"] = tally.arrivals[nth - 1]  # when the nth arrival came: a rate over a bounded window
        if request.query.get("latencies"):
            out["latencies_ms"] = tally.latencies_ms
        return web.json_response(out)

    async def reset(request: web.Request) -> web.Response:
        tally.reset()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_reset", reset)
    app.router.add_post("/hook/{name}", hook)
    app.router.add_post("/hang/{name}", hang)
    asyncio.run(_serve(app, lifetime_s))


# -- load generators -------------------------------------------------------------------------


async def _loadgen(args: dict[str, Any]) -> dict[str, Any]:
    # `urls`: the clients take them in turn (client k posts to urls[k % n]), splitting the load evenly.
    urls: list[str] = list(args.get("urls") or [args["url"]])
    cpu0 = time.process_time()
    concurrency = int(args["concurrency"])
    batch = int(args.get("batch", 0))  # 0: one event per request (an object); n: arrays of n
    warmup, duration = float(args["warmup"]), float(args["duration"])
    max_requests = int(args.get("max_requests", 10**9))
    prefix = args.get("prefix", "ev")
    headers = {"Authorization": f"Bearer {args['token']}", "Content-Type": "application/json"}
    start = time.perf_counter()
    t_measure, t_end = start + warmup, start + warmup + duration
    state = {"issued": 0}
    measured = {"requests": 0, "events": 0}
    events_by_url = dict.fromkeys(urls, 0)
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    latencies: list[float] = []

    def body(n: int) -> bytes:
        if not batch:
            return event_bytes("transaction.completed", f"{prefix}-{n}", n).encode()
        first = n * batch
        return (
            "["
            + ",".join(event_bytes("transaction.completed", f"{prefix}-{first + k}", first + k) for k in range(batch))
            + "]"
        ).encode()

    async def worker(session: aiohttp.ClientSession, url: str) -> None:
        while state["issued"] < max_requests:
            sent = time.perf_counter()
            if sent >= t_end:
                return
            n = state["issued"]
            state["issued"] += 1
            payload = body(n)
            try:
                async with session.post(url, data=payload, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                await asyncio.sleep(0.01)
                continue
            done = time.perf_counter()
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if t_measure <= sent and done < t_end:
                measured["requests"] += 1
                latencies.append((done - sent) * 1000.0)
                if status == 202:
                    measured["events"] += batch or 1
                    events_by_url[url] += batch or 1

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        clients = (worker(session, urls[k % len(urls)]) for k in range(concurrency))
        await asyncio.wait_for(asyncio.gather(*clients), warmup + duration + 60)
    return {
        "events_per_s": measured["events"] / duration,
        "requests_per_s": measured["requests"] / duration,
        "measured_requests": measured["requests"],
        "issued": state["issued"],
        "statuses": statuses,
        "errors": errors,
        "request_ms_p50": percentile(latencies, 50),
        "request_ms_p99": percentile(latencies, 99),
        "events_per_s_by_url": {u: n / duration for u, n in events_by_url.items()},
        "cpu_s": time.process_time() - cpu0,
    }


def loadgen(args: dict[str, Any]) -> None:
    emit(asyncio.run(_loadgen(args)))


async def _post_burst(args: dict[str, Any]) -> dict[str, Any]:
    """Post `events` events in batches of `batch`, `concurrency` requests at a time, as fast
    as possible; report when the first request left and the last reply came back. With
    `urls`, request k goes to urls[k % n] (the load split evenly)."""
    urls: list[str] = list(args.get("urls") or [args["url"]])
    batch, events = int(args["batch"]), int(args["events"])
    headers = {"Authorization": f"Bearer {args['token']}", "Content-Type": "application/json"}
    bodies = [
        (
            "["
            + ",".join(
                event_bytes("transaction.completed", f"burst-{i}", i) for i in range(start, min(events, start + batch))
            )
            + "]"
        ).encode()
        for start in range(0, events, batch)
    ]
    queue = list(reversed(list(enumerate(bodies))))
    statuses: dict[str, int] = {}
    accepted = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while queue:
            k, payload = queue.pop()
            async with session.post(urls[k % len(urls)], data=payload, headers=headers) as response:
                reply = await response.json(content_type=None)
                statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
                if response.status == 202:
                    accepted += len(reply)

    first = time.time()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.wait_for(asyncio.gather(*(worker(session) for _ in range(int(args["concurrency"])))), 120)
    return {"first_sent": first, "last_reply": time.time(), "accepted": accepted, "statuses": statuses}


def post_burst(args: dict[str, Any]) -> None:
    emit(asyncio.run(_post_burst(args)))


async def _bare_client(args: dict[str, Any]) -> dict[str, Any]:
    """The delivery ceiling: POST `count` envelopes, spread over `paths`, with
    `per_path` requests in flight to each, keep-alive, webhook-style headers (constant,
    unsigned), and nothing stored. One session, like the daemon's."""
    base, paths, per_path, count = args["base"], args["paths"], int(args["per_path"]), int(args["count"])
    bodies = [envelope_bytes(i) for i in range(count // len(paths) + 1)]
    headers = {
        "content-type": "application/json",
        "user-agent": "tillhook/bench",
        "webhook-id": "msg_01jbench000000000000000000",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    }
    statuses: dict[str, int] = {}
    per_path_count = count // len(paths)
    counters = dict.fromkeys(paths, 0)

    async def worker(session: aiohttp.ClientSession, path: str) -> None:
        url = f"{base}/hook/{path}"
        while counters[path] < per_path_count:
            i = counters[path]
            counters[path] += 1
            h = dict(headers)
            h["webhook-id"] = f"msg_bare{i:022d}"
            async with session.post(url, data=bodies[i], headers=h, allow_redirects=False) as response:
                await response.content.read(2048)
                statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1

    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as session:
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(session, p) for p in paths for _ in range(per_path))), 300)
        elapsed = time.perf_counter() - start
    sent = per_path_count * len(paths)
    return {"sent": sent, "elapsed_s": elapsed, "per_s": sent / elapsed, "statuses": statuses}


def bare_client(args: dict[str, Any]) -> None:
    emit(asyncio.run(_bare_client(args)))


async def _latency_poster(args: dict[str, Any]) -> dict[str, Any]:
    """mode "idle": `count` events one at a time, each after the previous reply and a pause.
    mode "steady": `rate` events/s on a fixed schedule for `duration` s (open loop: a slow
    reply does not delay the next send), at most `max_outstanding` requests open.
    Each event's data carries "sent": time.time() taken just before the request."""
    url, event_type, mode = args["url"], args["type"], args["mode"]
    headers = {"Authorization": f"Bearer {args['token']}", "Content-Type": "application/json"}
    statuses: dict[str, int] = {}
    ingest_ms: list[float] = []
    late = 0

    async def post(session: aiohttp.ClientSession, i: int) -> None:
        sent = time.time()
        payload = json.dumps({"type": event_type, "id": f"{event_type}-{i}", "data": event_data(i, sent)})
        async with session.post(url, data=payload, headers={**headers, "x-bench-id": str(i)}) as response:
            await response.read()
            statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
        ingest_ms.append((time.time() - sent) * 1000.0)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        if mode == "idle":
            pause = float(args["pause"])
            deadline = time.monotonic() + float(args.get("max_seconds", 120))
            for i in range(int(args["count"])):
                if time.monotonic() > deadline:
                    break
                await post(session, i)
                await asyncio.sleep(pause)
        else:
            rate, duration = float(args["rate"]), float(args["duration"])
            total = int(rate * duration)
            limit = asyncio.Semaphore(int(args.get("max_outstanding", 200)))
            tasks = []

            async def bounded(i: int) -> None:
                async with limit:
                    await post(session, i)

            t0 = time.monotonic() + 0.05
            for i in range(total):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.005:
                    late += 1
                tasks.append(asyncio.create_task(bounded(i)))
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return {
        "posted": len(ingest_ms),
        "statuses": statuses,
        "late_sends": late,
        "ingest_ms_p50": percentile(ingest_ms, 50),
        "ingest_ms_p99": percentile(ingest_ms, 99),
    }


def latency_poster(args: dict[str, Any]) -> None:
    emit(asyncio.run(_latency_poster(args)))


# -- plain sqlite3 ---------------------------------------------------------------------------


def sqlite_baseline(args: dict[str, Any]) -> None:
    """The batch-ingest ceiling: stdlib sqlite3, WAL, synchronous=FULL, rows like the
    daemon's events table (same columns, unique indexes and body size), `per_txn` rows per
    transaction with one executemany each, for `events` rows or `max_seconds`."""
    path, per_txn, events = args["path"], int(args["per_txn"]), int(args["events"])
    deadline = time.perf_counter() + float(args.get("max_seconds", 60))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.executescript(
        """
        CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            idempotency_key TEXT UNIQUE,
            type TEXT NOT NULL,
            created_at REAL NOT NULL,
            body BLOB NOT NULL
        );
        CREATE INDEX IF NOT EXISTS events_by_time ON events(created_at);
        """
    )
    run = args.get("tag", "r")
    written = 0
    start = time.perf_counter()
    while written < events and time.perf_counter() < deadline:
        now = time.time()
        rows = [
            (
                f"msg_{run}{written + k:020d}",
                f"pos-{run}-{written + k}",
                "transaction.completed",
                now,
                envelope_bytes(written + k),
            )
            for k in range(per_txn)
        ]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (id, idempotency_key, type, created_at, body) VALUES (?, ?, ?, ?, ?)", rows
        )
        conn.execute("COMMIT")
        written += per_txn
    elapsed = time.perf_counter() - start
    conn.close()
    emit({"events": written, "elapsed_s": elapsed, "events_per_s": written / elapsed})


# -- a prefilled outbox ----------------------------------------------------------------------


def _fill_outbox(conn: sqlite3.Connection, endpoint_ids: list[str], events: int, now_s: float) -> None:
    """Rows as the daemon's ingest writes them (store/ops.py `_ingest`): one events row and
    one pending deliveries row per endpoint, due at the event's creation, ids in order.
    created_at spreads over the last ten minutes, so everything is due and nothing is old
    enough for retention."""
    span_s, per_txn = 600.0, 25_000
    next_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM deliveries").fetchone()[0]) + 1
    for start in range(0, events, per_txn):
        event_rows, delivery_rows = [], []
        for i in range(start, min(events, start + per_txn)):
            msg_id = f"msg_01jbacklog{i:016d}"
            t = now_s - span_s + span_s * i / events
            event_rows.append((msg_id, f"backlog-{i}", "transaction.completed", t, envelope_bytes(i, msg_id)))
            for endpoint_id in endpoint_ids:
                delivery_rows.append((next_id, msg_id, endpoint_id, "pending", t, t, t))
                next_id += 1
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (id, idempotency_key, type, created_at, body) VALUES (?, ?, ?, ?, ?)", event_rows
        )
        conn.executemany(
            "INSERT INTO deliveries (id, event_id, endpoint_id, state, next_attempt_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            delivery_rows,
        )
        conn.execute("COMMIT")


def outbox_build(args: dict[str, Any]) -> None:
    """Copies of `seed` (a database the daemon made and closed) with `events` events, each
    pending for every endpoint, written with plain sqlite3; {path: events} in `targets`."""
    started = time.perf_counter()
    built: dict[str, dict[str, Any]] = {}
    for path, events in args["targets"].items():
        t0 = time.perf_counter()
        source = sqlite3.connect(f"file:{args['seed']}?mode=ro", uri=True)
        conn = sqlite3.connect(path, isolation_level=None)
        source.backup(conn)  # consistent even if the seed still has a write-ahead log
        source.close()
        # Throwaway speed for the build only: no journal, no fsync, a large page cache.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")
        _fill_outbox(conn, list(args["endpoint_ids"]), int(events), float(args["now_s"]))
        conn.execute("PRAGMA journal_mode = WAL")  # as the daemon leaves it
        pending = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchone()[0]
        conn.close()
        built[path] = {
            "events": int(events),
            "pending": pending,
            "build_s": time.perf_counter() - t0,
            "bytes": os.path.getsize(path),
        }
    emit({"built": built, "elapsed_s": time.perf_counter() - started})


def claim_timer(args: dict[str, Any]) -> None:
    """Time one statement (the daemon's claim) `reps` times, each in a transaction that is
    rolled back, so every repetition sees the same pending rows."""
    conn = sqlite3.connect(args["path"], isolation_level=None)
    for pragma in ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA busy_timeout = 5000"):
        conn.execute(pragma)
    sql, params = args["sql"], args["params"]
    deadline = time.perf_counter() + float(args.get("max_seconds", 30))
    times_ms: list[float] = []
    rows = 0
    for _ in range(int(args["reps"])):
        if time.perf_counter() > deadline:
            break
        conn.execute("BEGIN")
        t0 = time.perf_counter()
        rows = len(conn.execute(sql, params).fetchall())
        times_ms.append((time.perf_counter() - t0) * 1000.0)
        conn.execute("ROLLBACK")
    conn.close()
    emit(
        {
            "reps": len(times_ms),
            "rows": rows,
            "first_ms": times_ms[0] if times_ms else None,
            "ms_p50": statistics.median(times_ms) if times_ms else None,
            "ms_p99": percentile(times_ms, 99),
            "ms_max": max(times_ms, default=None),
        }
    )


ROLES = {
    "bare-server": bare_server,
    "receiver": receiver,
    "loadgen": loadgen,
    "post-burst": post_burst,
    "bare-client": bare_client,
    "latency-poster": latency_poster,
    "sqlite": sqlite_baseline,
    "outbox-build": outbox_build,
    "claim-timer": claim_timer,
}

if __name__ == "__main__":
    ROLES[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
