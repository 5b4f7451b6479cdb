"""Group commit on the writer thread: what queues during a transaction goes into the next one,
a failed transaction fails only its own waiters, and durability follows what a batch holds."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from tillhook.envelope import parse_body, to_new_events
from tillhook.errors import InvalidInput, StoreUnavailable
from tillhook.models import NewEvent
from tillhook.store import SqliteStore
from tillhook.store.committer import GroupCommitter
from tillhook.store.ops import BatchApplier, Ingest, Record
from tillhook.store.port import ClaimRequest, Enqueued
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

    resolved_on: list[int] = []
    committer = GroupCommitter(apply)
    await committer.start(connector(tmp_path / "c.db"))
    first = committer.submit(0)
    await asyncio.get_running_loop().run_in_executor(None, inside.wait, 10)
    rest = [committer.submit(n) for n in range(1, 51)]
    for future in (first, rest[0]):
        future.add_done_callback(lambda _: resolved_on.append(threading.get_ident()))
    release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [n * 10 for n in range(1, 51)]
    assert batches == [[0], list(range(1, 51))]
    assert threading.get_ident() not in threads  # the transactions ran on the writer thread
    assert resolved_on == [threading.get_ident()] * 2  # and were resolved on the event loop
    assert (committer.transactions, committer.ops_committed) == (2, 51)
    committer.close()
    await committer.wait_finished()


async def test_a_failed_transaction_fails_its_waiters_and_the_next_one_goes_on(tmp_path):
    def apply(conn, ops):
        if "bad" in ops:
            raise sqlite3.OperationalError("database or disk is full")
        return [f"ok {op}" for op in ops]

    committer = GroupCommitter(apply, describe=lambda exc: StoreUnavailable(f"in words: {exc}"))
    await committer.start(connector(tmp_path / "c.db"))
    with pytest.raises(StoreUnavailable, match="in words: database or disk is full"):
        await committer.submit("bad")
    assert await committer.submit("good") == "ok good"
    assert committer.transactions == 1
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

    applier(conn, [Record([], now), ClaimRequest({"ep": 1}, now)])
    assert synchronous() == 1  # NORMAL: outcomes and claims alone
    applier(conn, [Record([], now), Ingest([event])])
    assert synchronous() == 2  # FULL: an acknowledged event is in it
    assert conn.execute("SELECT state FROM deliveries").fetchall() == [("pending",)]
    applier(conn, [ClaimRequest({"ep": 1}, now)])
    assert synchronous() == 1
    assert conn.execute("SELECT state FROM deliveries").fetchall() == [("delivering",)]
    conn.close()


async def test_outcomes_written_resolve_their_future_and_refusals_come_in_words(tmp_path):
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    now = time.time()
    event = NewEvent(id="msg_1", type="a.b", created_at=now, body=b"{}", idempotency_key=None, endpoint_ids=("ep",))
    await store.enqueue([event])
    written = store.write_outcomes([], now, ClaimRequest({"ep": 5}, now))
    assert not written.done()  # queued: it returned at once
    (claimed,) = await written
    assert (claimed.event_id, claimed.endpoint_id) == ("msg_1", "ep")
    assert await store.write_outcomes([], now) == []
    await store.close()
    refused = store.write_outcomes([], now)
    with pytest.raises(StoreUnavailable, match="not open"):
        await refused


def _keyed(event_id: str, key: str, content: bytes, endpoints=("ep",)) -> NewEvent:
    body = b'{"id":"%s","type":"a.b","timestamp":"2026-11-22T10:30:00Z","data":{"c":"%s"}}' % (
        event_id.encode(),
        content,
    )
    return NewEvent(id=event_id, type="a.b", created_at=0.0, body=body, idempotency_key=key, endpoint_ids=endpoints)


async def test_a_reused_key_fails_its_op_alone_and_says_what_was_started(tmp_path):
    db = tmp_path / "t.db"
    store = SqliteStore(db)
    await store.open()
    await store.close()
    conn = sqlite3.connect(db, isolation_level=None)
    BatchApplier()(conn, [Ingest([_keyed("msg_0", "k", b"first")])])
    before = Ingest([_keyed("msg_1", "other", b"x", ("ep", "ep2"))], [[True, False]])
    reused = Ingest(
        [_keyed("msg_2", "fresh", b"y", ("ep", "ep2")), _keyed("msg_3", "k", b"second")],
        [[True, True], [True]],
        batch=True,
    )
    after = Ingest([_keyed("msg_4", "k", b"first")], [[True]])  # a true repeat, in the same transaction
    results = BatchApplier()(conn, [before, reused, after])
    went, refused, repeat = results
    assert isinstance(went, Enqueued) and isinstance(repeat, Enqueued)
    assert [r.duplicate for r in went.accepted] == [False] and [r.duplicate for r in repeat.accepted] == [True]
    assert isinstance(refused, InvalidInput) and refused.slug == "idempotency-key-reused"
    assert [e["field"] for e in refused.errors or []] == ["[1].id"] and "msg_0" in refused.message
    stored = conn.execute("SELECT id FROM events ORDER BY seq").fetchall()
    assert stored == [("msg_0",), ("msg_1",)]  # nothing of the refused op, the others committed
    assert conn.execute("SELECT count(*) FROM deliveries WHERE event_id IN ('msg_2', 'msg_3')").fetchone() == (0,)
    # Each delivery asked to start is started, or named as not started (its event is a repeat).
    assert [(d.event_id, d.endpoint_id) for d in went.started] == [("msg_1", "ep")]
    assert went.not_started == [] and went.queued == frozenset({"ep2"})
    assert repeat.started == [] and repeat.not_started == ["ep"] and repeat.queued == frozenset()
    states = conn.execute("SELECT endpoint_id, state FROM deliveries WHERE event_id = 'msg_1' ORDER BY id").fetchall()
    assert states == [("ep", "delivering"), ("ep2", "pending")]
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

        (repeat,) = (await store.enqueue(arriving('{"m": 2, "n": 1}'))).accepted
        assert (repeat.id, repeat.duplicate) == ("msg_old", True)
        # Whether the old event's timestamp was given is not known: only type and data count.
        (repeat,) = (await store.enqueue(arriving('{"n": 1, "m": 2}', "2020-01-01T00:00:00Z"))).accepted
        assert repeat.duplicate is True
        with pytest.raises(InvalidInput, match="msg_old"):
            await store.enqueue(arriving('{"n": 1, "m": 2.0}'))
    finally:
        await store.close()
