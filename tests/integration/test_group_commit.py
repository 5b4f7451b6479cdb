"""Group commit on the writer thread: what queues during a transaction goes into the next one,
a failed transaction fails only its own waiters, and durability follows what a batch holds."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from tillhook.envelope import parse_body, to_new_events
from tillhook.errors import InvalidInput
from tillhook.models import NewEvent
from tillhook.store import SqliteStore
from tillhook.store.committer import GroupCommitter
from tillhook.store.ops import BatchApplier, Claim, Ingest, Record, settle
from tillhook.store.schema import MIGRATIONS


def connector(path):
    return lambda: sqlite3.connect(path, isolation_level=None)


async def test_ops_queued_during_a_transaction_share_the_next_one(tmp_path):
    inside, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []
    threads: set[int] = set()

    def apply(conn, ops):
        threads.add(threading.get_ident())
        batches.append(list(ops))
        if len(batches) == 1:
            inside.set()
            release.wait(10)
        return [op * 10 for op in ops]

    settled_on: list[int] = []
    committer = GroupCommitter(apply, settle=lambda ops, error: settled_on.append(threading.get_ident()))
    await committer.start(connector(tmp_path / "c.db"))
    first = committer.submit(0)
    await asyncio.get_running_loop().run_in_executor(None, inside.wait, 10)
    rest = [committer.submit(n) for n in range(1, 51)]
    release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [n * 10 for n in range(1, 51)]
    assert batches == [[0], list(range(1, 51))]
    assert threading.get_ident() not in threads  # the transactions ran on the writer thread
    assert settled_on == [threading.get_ident()] * 2  # and were settled on the event loop
    assert (committer.transactions, committer.ops_committed) == (2, 51)
    committer.close()
    await committer.wait_finished()


async def test_a_failed_transaction_fails_its_waiters_and_the_next_one_goes_on(tmp_path):
    outcomes: list[bool] = []

    def apply(conn, ops):
        if "bad" in ops:
            raise sqlite3.OperationalError("database or disk is full")
        return [f"ok {op}" for op in ops]

    committer = GroupCommitter(apply, settle=lambda ops, error: outcomes.append(error is None))
    await committer.start(connector(tmp_path / "c.db"))
    with pytest.raises(sqlite3.OperationalError, match="full"):
        await committer.submit("bad")
    assert await committer.submit("good") == "ok good"
    assert outcomes == [False, True]
    committer.close()
    await committer.wait_finished()
    with pytest.raises(RuntimeError, match="closed"):
        committer.submit("late")


async def test_a_connection_that_cannot_open_is_raised_at_start(tmp_path):
    committer: GroupCommitter[int] = GroupCommitter(lambda conn, ops: list(ops))
    with pytest.raises(sqlite3.OperationalError):
        await committer.start(connector(tmp_path / "missing" / "c.db"))
    await committer.wait_finished()


async def test_only_transactions_holding_something_acknowledged_wait_for_fsync(tmp_path):
    db = tmp_path / "t.db"
    store = SqliteStore(db)
    await store.open()
    await store.close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")
    applier = BatchApplier()
    now = time.time()
    event = NewEvent(id="msg_1", type="a.b", created_at=now, body=b"{}", idempotency_key=None, endpoint_ids=("ep",))

    def synchronous() -> int:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])

    applier(conn, [Record([], now), Claim({"ep": 1}, now)])
    assert synchronous() == 1  # NORMAL: outcomes and claims alone
    applier(conn, [Record([], now), Ingest([event])])
    assert synchronous() == 2  # FULL: an acknowledged event is in it
    assert conn.execute("SELECT state FROM deliveries").fetchall() == [("pending",)]
    applier(conn, [Claim({"ep": 1}, now)])
    assert synchronous() == 1
    assert conn.execute("SELECT state FROM deliveries").fetchall() == [("delivering",)]
    conn.close()


def test_a_failing_callback_does_not_strand_the_other_ops_of_its_batch():
    class Slots:
        def __init__(self):
            self.started, self.given_back = [], []

        def take(self, endpoint_id):
            return True

        def committed(self, started, queued):
            self.started.extend(started)

        def aborted(self, endpoint_ids):
            self.given_back.extend(endpoint_ids)

    def broken(claimed, error):
        raise RuntimeError("a bug in the caller")

    slots = Slots()
    event = NewEvent(id="msg_1", type="a.b", created_at=0.0, body=b"{}", idempotency_key=None, endpoint_ids=("ep",))
    ingest = Ingest([event], slots)
    ingest.reserve()
    ingest.started.append("the admitted delivery")
    with pytest.raises(RuntimeError, match="a bug"):
        settle([Record([], 0.0, on_done=broken), ingest], None)
    assert slots.started == ["the admitted delivery"]  # settled all the same
    with pytest.raises(RuntimeError, match="a bug"):
        settle([Record([], 0.0, on_done=broken), ingest], sqlite3.OperationalError("disk I/O error"))
    assert slots.given_back == ["ep"]


class _Slots:
    """An admission that reserves every slot and remembers what it was told."""

    def __init__(self) -> None:
        self.taken, self.started, self.given_back = 0, [], []

    def take(self, endpoint_id):
        self.taken += 1
        return True

    def committed(self, started, queued):
        self.started.extend(started)

    def aborted(self, endpoint_ids):
        self.given_back.extend(endpoint_ids)


def _keyed(event_id: str, key: str, content: bytes, endpoints=("ep",)) -> NewEvent:
    body = b'{"id":"%s","type":"a.b","timestamp":"2026-11-22T10:30:00Z","data":{"c":"%s"}}' % (
        event_id.encode(),
        content,
    )
    return NewEvent(id=event_id, type="a.b", created_at=0.0, body=body, idempotency_key=key, endpoint_ids=endpoints)


async def test_a_reused_key_fails_its_op_alone_and_gives_back_its_slots(tmp_path):
    db = tmp_path / "t.db"
    store = SqliteStore(db)
    await store.open()
    await store.close()
    conn = sqlite3.connect(db, isolation_level=None)
    BatchApplier()(conn, [Ingest([_keyed("msg_0", "k", b"first")])])
    slots = _Slots()
    before = Ingest([_keyed("msg_1", "other", b"x", ("ep", "ep2"))], slots)
    reused = Ingest([_keyed("msg_2", "fresh", b"y", ("ep", "ep2")), _keyed("msg_3", "k", b"second")], slots, batch=True)
    after = Ingest([_keyed("msg_4", "k", b"first")], slots)  # a true repeat, in the same transaction
    ops = [before, reused, after]
    for op in ops:
        op.reserve()
    results = BatchApplier()(conn, ops)
    settle(ops, None)
    assert [r.duplicate for r in results[0]] == [False] and [r.duplicate for r in results[2]] == [True]
    refused = results[1]
    assert isinstance(refused, InvalidInput) and refused.slug == "idempotency-key-reused"
    assert [e["field"] for e in refused.errors or []] == ["[1].id"] and "msg_0" in refused.message
    stored = conn.execute("SELECT id FROM events ORDER BY seq").fetchall()
    assert stored == [("msg_0",), ("msg_1",)]  # nothing of the refused op, the others committed
    assert conn.execute("SELECT count(*) FROM deliveries WHERE event_id IN ('msg_2', 'msg_3')").fetchone() == (0,)
    # Every slot reserved is either started (the op that went in) or given back.
    assert sorted(d.event_id for d in slots.started) == ["msg_1", "msg_1"]
    assert sorted(slots.given_back) == ["ep", "ep", "ep", "ep2"]  # msg_2's two, msg_3's and the repeat's
    assert slots.taken == len(slots.started) + len(slots.given_back)
    conn.close()


async def test_events_stored_before_the_timestamp_flag_are_compared_by_type_and_data(tmp_path):
    # A database from before the timestamp_given column: built with the migrations before it.
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    adds_flag = next(i for i, sql in enumerate(MIGRATIONS) if "timestamp_given" in sql)
    for sql in MIGRATIONS[:adds_flag]:
        conn.executescript(sql)
    conn.execute(f"PRAGMA user_version = {adds_flag}")
    old_body = b'{"id":"msg_old","type":"a.b","timestamp":"2026-11-22T10:30:00Z","data":{"n":1,"m":2}}'
    conn.execute(
        "INSERT INTO events (id, idempotency_key, type, created_at, body) VALUES ('msg_old', 'k', 'a.b', 0, ?)",
        (old_body,),
    )
    conn.close()
    store = SqliteStore(db)
    await store.open()  # migrates
    try:

        def arriving(data: str, timestamp: str | None = None) -> list[NewEvent]:
            raw = (
                f'{{"type": "a.b", "data": {data}, "id": "k"'
                + (f', "timestamp": "{timestamp}"' if timestamp else "")
                + "}"
            )
            events, _ = parse_body(raw.encode(), None)
            return to_new_events(events, 1.0, lambda event_type: ())

        (repeat,) = await store.enqueue(arriving('{"m": 2, "n": 1}'))
        assert (repeat.id, repeat.duplicate) == ("msg_old", True)
        # Whether the old event's timestamp was given is not known: only type and data count.
        (repeat,) = await store.enqueue(arriving('{"n": 1, "m": 2}', "2020-01-01T00:00:00Z"))
        assert repeat.duplicate is True
        with pytest.raises(InvalidInput, match="msg_old"):
            await store.enqueue(arriving('{"n": 1, "m": 2.0}'))
    finally:
        await store.close()
