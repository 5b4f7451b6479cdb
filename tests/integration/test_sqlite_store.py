"""The SQLite adapter's lifecycle verbs and the records its reads give, on a real file: what the
status page, `tillhook backup` and `tillhook tokens` rely on."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import deliveries_of
from tillhook.errors import NoDatabase, NotFound
from tillhook.models import DeliveryState, Endpoint, NewEvent, SigningSecret
from tillhook.store import SqliteStore
from tillhook.store.port import DeliveryRow, EventRow, LogFilter, StoredEvent, Tokens

NOW = 1_796_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "t.db")
    await opened.open()
    yield opened
    await opened.close()


def endpoint(name: str) -> Endpoint:
    return Endpoint(id="", name=name, url="https://hooks.example/h", events=("*",), secrets=(SigningSecret("s"),))


def event(i: int, *endpoint_ids: str, filtered_out: tuple[str, ...] = ()) -> NewEvent:
    return NewEvent(f"msg_{i}", "sale.completed", None, b'{"n": %d}' % i, NOW + i, endpoint_ids, filtered_out)


async def test_the_writer_runs_from_open_until_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    assert store.writer is None
    await store.open()
    writer = store.writer
    assert writer is not None and not writer.done()
    await store.close()
    assert writer.done() and writer.exception() is None
    assert store.writer is None


async def test_size_is_the_file_and_its_write_ahead_log(store: SqliteStore, tmp_path: Path) -> None:
    assert store.location == str(tmp_path / "t.db")
    ep = await store.create_endpoint(endpoint("shop"), NOW)
    await store.enqueue([event(i, ep.id) for i in range(200)])
    wal = tmp_path / "t.db-wal"
    assert wal.stat().st_size > 0  # the commits are in the log until a checkpoint
    assert await store.size_bytes() == (tmp_path / "t.db").stat().st_size + wal.stat().st_size


async def test_a_backup_needs_no_open_and_copies_what_the_daemon_holds(store: SqliteStore, tmp_path: Path) -> None:
    ep = await store.create_endpoint(endpoint("shop"), NOW)
    await store.enqueue([event(i, ep.id) for i in range(3)])
    beside = SqliteStore(tmp_path / "t.db")  # as `tillhook backup` makes it, while the daemon has the lock
    assert await beside.backup(tmp_path / "copy.db") == 3
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 3


async def test_tokens_are_read_without_opening_and_a_missing_file_is_not_made(tmp_path: Path) -> None:
    missing = SqliteStore(tmp_path / "nothing.db")
    with pytest.raises(NoDatabase):
        await missing.read_tokens()
    assert not (tmp_path / "nothing.db").exists()
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    try:
        made = await store.tokens(None, "adm_given", None)
        assert isinstance(made, Tokens) and made.admin == "adm_given" and made.ingest.startswith("ing_")
        stored = await SqliteStore(tmp_path / "t.db").read_tokens()
    finally:
        await store.close()
    # What the database keeps: its own admin token, not the one given by the config.
    assert stored["ingest_token"] == made.ingest and stored["viewer_token"] == made.viewer
    assert stored["admin_token"].startswith("adm_") and stored["admin_token"] != "adm_given"


async def test_the_log_reads_are_records(store: SqliteStore) -> None:
    shop, chat = await store.create_endpoint(endpoint("shop"), NOW), await store.create_endpoint(endpoint("chat"), NOW)
    await store.enqueue([event(1, shop.id, filtered_out=(chat.id,)), event(2, shop.id, chat.id)])
    stored = await store.get_event("msg_1")
    assert stored == StoredEvent(
        event=EventRow(
            seq=stored.event.seq, id="msg_1", type="sale.completed", idempotency_key=None, created_at=NOW + 1
        ),
        body=b'{"n": 1}',
        filtered_out=(chat.id,),
    )
    events = await store.list_events(LogFilter(limit=1))
    assert [e.id for e in events] == ["msg_2", "msg_1"]  # newest first, one beyond the page
    (row,) = await deliveries_of(store, "msg_1")
    assert isinstance(row, DeliveryRow) and row.state is DeliveryState.PENDING and row.endpoint == "shop"
    assert row.endpoint_enabled is True and await store.get_delivery(row.id) == row
    assert await store.attempts_of_delivery(row.id) == []
    with pytest.raises(NotFound):
        await store.get_event("msg_nope")
    with pytest.raises(NotFound):
        await store.get_delivery(10_000)


async def test_a_deleted_endpoints_deliveries_keep_its_name_and_say_it_is_gone(store: SqliteStore) -> None:
    shop = await store.create_endpoint(endpoint("shop"), NOW)
    await store.enqueue([event(1, shop.id)])
    assert await store.delete_endpoint(shop.id, NOW + 5) == 1
    (row,) = await deliveries_of(store, "msg_1")
    assert row.state is DeliveryState.CANCELLED and row.endpoint_enabled is None
    assert row.endpoint == f"shop (deleted {shop.id})"


async def test_the_figures_are_records(store: SqliteStore) -> None:
    shop = await store.create_endpoint(endpoint("shop"), NOW)
    await store.enqueue([event(i, shop.id) for i in range(3)])
    counts = await store.count_by_state()
    assert counts == {DeliveryState.PENDING: 3} and all(isinstance(state, DeliveryState) for state in counts)
    backlog = (await store.pending_by_endpoint())[shop.id]
    assert (backlog.pending, backlog.oldest_created_at) == (3, NOW)
    head = (await store.ordered_heads([shop.id]))[shop.id]
    assert head.event_id == "msg_0" and head.state is DeliveryState.PENDING and head.attempts == 0
    stats = (await store.endpoint_stats())[shop.id]
    assert (stats.last_success_at, stats.last_failure_at, stats.last_failure_reason) == (None, None, None)
    hours = await store.attempts_by_hour(NOW, hours=3)
    assert [h.start for h in hours] == [float((int(NOW // 3600) - 2 + i) * 3600) for i in range(3)]
