"""store/watch.py with the app in process: a database file deleted or replaced is noticed at
the next look; from then on nothing more is acknowledged, health says why, the rescue holds
what was acknowledged, and the delivery loop says so once rather than once a tick."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.integration.conftest import ADMIN_TOKEN, make_config
from tillhook.store.watch import DatabaseWatch


async def test_an_intact_database_is_left_alone(tmp_path, make_harness):
    h = await make_harness(make_config(tmp_path, []))
    watch = DatabaseWatch(h.services.store)
    assert await watch.check() is False
    assert (await h.post_events({"type": "a.b", "data": {}}))[0] == 202
    assert h.services.store.lost is None


@pytest.mark.parametrize("change", ["deleted", "replaced"])
async def test_a_lost_database_is_refused_and_rescued(tmp_path, make_harness, change):
    h = await make_harness(make_config(tmp_path, []))
    acked = [(await h.post_events({"type": "a.b", "data": {"n": n}}))[1]["id"] for n in range(5)]
    db = Path(h.services.store.location)
    if change == "deleted":
        for name in (db.name, f"{db.name}-wal", f"{db.name}-shm"):
            (tmp_path / name).unlink()
    else:
        other = tmp_path / "other.db"
        sqlite3.connect(other).close()
        os.replace(other, db)
    with capture_logs() as logs:
        assert await DatabaseWatch(h.services.store).check() is True
    (lost,) = [e for e in logs if e["event"] == "database_lost"]
    assert lost["log_level"] == "critical" and lost["change"] == change and lost["events"] == 5
    rescue = Path(lost["rescue"])
    assert rescue.parent == tmp_path and rescue.name.startswith("tillhook.db.rescued-")

    code, problem, _ = await h.post_events({"type": "a.b", "data": {}})
    assert code == 503 and f"was {change} while tillhook was running" in problem["detail"]
    assert str(rescue) in problem["detail"]
    async with h.session.get(h.server.make_url("/healthz")) as response:
        assert response.status == 503
    with sqlite3.connect(rescue) as conn:
        assert {row[0] for row in conn.execute("SELECT id FROM events")} == set(acked)
    conn.close()
    # Reads still answer, from what the daemon had.
    async with h.session.get(
        h.server.make_url(f"/v1/events/{acked[0]}"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as response:
        assert response.status == 200


async def test_the_delivery_loop_says_once_that_the_store_refuses(tmp_path, make_harness, receivers, clock):
    receiver = await receivers()
    config = make_config(tmp_path, [{"name": "a", "url": receiver.url}])
    h = await make_harness(config, clock=clock, run_dispatcher=True)
    await h.post_events({"type": "a.b", "data": {}})
    await receiver.wait_count(1)  # the loop is up and past its start-up requeue
    await h.dispatcher.wait_idle()
    h.services.store.refuse_writes("the database file is gone")
    with capture_logs() as logs:
        for _ in range(5):  # five ticks of the running loop, each claiming from the refusing store
            clock.advance(1)
            h.dispatcher.wake()
            for _ in range(1000):  # bounded: a few loop turns each
                if h.dispatcher.last_tick_monotonic == clock.monotonic():
                    break
                await asyncio.sleep(0)
            assert h.dispatcher.last_tick_monotonic == clock.monotonic(), "the loop did not tick"
    refused = [e for e in logs if e["event"] == "storage_unavailable"]
    assert len(refused) == 1 and refused[0]["error"] == "the database file is gone", refused


async def test_a_file_gone_before_the_first_look_is_not_an_error_of_the_watch(tmp_path, make_harness):
    h = await make_harness(make_config(tmp_path, []))
    (tmp_path / "tillhook.db").unlink()
    watch = DatabaseWatch(h.services.store)
    assert await watch.check() is True
    assert await watch.check() is True  # the loss is handled once; later looks change nothing


async def test_a_rescue_that_cannot_be_written_is_said_and_tried_again(tmp_path, make_harness):
    state = tmp_path / "state"
    state.mkdir()
    h = await make_harness(make_config(tmp_path, [], storage={"path": str(state / "tillhook.db")}))
    (acked,) = [(await h.post_events({"type": "a.b", "data": {}}))[1]["id"]]
    shutil.rmtree(state)  # the whole directory: nowhere to put a rescue beside the path
    now = [0.0]
    watch = DatabaseWatch(h.services.store, monotonic=lambda: now[0])
    with capture_logs() as logs:
        assert await watch.check() is True
    (lost,) = logs
    assert lost["event"] == "database_lost" and lost["rescue"] is None and "does not exist" in lost["rescue_error"]
    code, problem, _ = await h.post_events({"type": "a.b", "data": {}})
    assert code == 503 and "do not stop tillhook" in problem["detail"]

    state.mkdir()
    with capture_logs() as logs:
        await watch.check()  # too soon: not tried again yet
        assert logs == []
        now[0] += 10
        await watch.check()
    (rescued,) = logs
    assert rescued["event"] == "database_rescued" and rescued["log_level"] == "critical"
    with sqlite3.connect(rescued["rescue"]) as conn:
        assert [row[0] for row in conn.execute("SELECT id FROM events")] == [acked]
    conn.close()
    code, problem, _ = await h.post_events({"type": "a.b", "data": {}})
    assert code == 503 and rescued["rescue"] in problem["detail"]
