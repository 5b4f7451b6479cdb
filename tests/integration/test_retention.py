"""The retention purge: old finished history goes, pending deliveries stay, and under a
steady load the database file stops growing."""

from __future__ import annotations

import sqlite3

from tests.integration.conftest import make_config
from tests.support import deliveries_of, status
from tillhook.retention import Retention


def counts(db) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("events", "deliveries", "attempts")
        )


async def test_purges_finished_history_and_never_a_pending_delivery(tmp_path, receivers, make_harness, clock):
    good, dead = await receivers(), await receivers(behaviour=status(500))
    config = make_config(
        tmp_path,
        [
            {"name": "good", "url": good.url, "events": ["sale.*"]},
            {"name": "dead", "url": dead.url, "events": ["dead.*"]},
        ],
        storage={"retention": "1h"},
    )
    h = await make_harness(config, clock=clock)
    await h.post_events([{"type": "sale.completed", "data": {"n": i}} for i in range(5)])
    code, reply, _ = await h.post_events({"type": "dead.letter", "data": {}})
    pending_event = reply["id"]
    while await h.step():
        pass
    h.clock.advance(2 * 3600)
    retention = Retention(h.services.store, h.clock, 3600, batch=2)
    assert await retention.run_once() == 5  # in batches of two
    events, deliveries, attempts = counts(tmp_path / "tillhook.db")
    assert (events, deliveries) == (1, 1) and attempts >= 1
    (row,) = await deliveries_of(h.services.store, pending_event)
    assert row.state == "pending"
    # Recent events are kept.
    await h.post_events({"type": "sale.completed", "data": {}})
    await h.step()
    assert await retention.run_once() == 0


async def test_the_file_stops_growing_under_a_steady_load(tmp_path, receivers, make_harness, clock):
    receiver = await receivers()
    config = make_config(
        tmp_path,
        [{"name": "shop", "url": receiver.url}],
        storage={"retention": "1h"},
        delivery={"endpoint_max_in_flight": 50},
    )
    h = await make_harness(config, clock=clock)
    retention = Retention(h.services.store, h.clock, 3600)
    db = tmp_path / "tillhook.db"
    sizes = []
    for _ in range(10):  # ten "hours" of 300 events each
        for _ in range(3):
            await h.post_events([{"type": "sale.completed", "data": {"text": "x" * 200}} for _ in range(100)])
        while await h.step():
            pass
        h.clock.advance(3600 + 1)
        await retention.run_once()
        sizes.append(db.stat().st_size + db.with_name(db.name + "-wal").stat().st_size)
    assert counts(db)[0] == 0
    # Freed pages are reused: once the first hours are purged and the write-ahead log has
    # reached its checkpoint size, the files no longer grow.
    assert max(sizes[5:]) <= sizes[4] * 1.05, sizes
