"""Group commit on PostgreSQL: concurrent ingests share transactions (what queues while one
commits goes into the next)."""

from __future__ import annotations

import asyncio
import time

from tests.contract.build import endpoints, event
from tillhook.store.pg.connect import PostgresTarget
from tillhook.store.pg.outbox import PostgresStore


async def test_concurrent_ingests_share_a_few_transactions(pg_target: PostgresTarget) -> None:
    store = PostgresStore(pg_target)
    await store.open()
    try:
        (a, b) = await endpoints(store, "a", "b")
        transactions_before, _ = store.commit_stats
        now = time.time()
        futures = [store.enqueue([event(f"msg_{i}", [a.id, b.id], at=now)]) for i in range(300)]
        done = await asyncio.gather(*futures)
        transactions, ops = store.commit_stats
        assert [d.accepted[0].id for d in done] == [f"msg_{i}" for i in range(300)]
        # 300 requests: one waits for the first commit, the rest share the next one or two.
        assert transactions - transactions_before <= 3
        assert ops >= 300
        assert sum((await store.count_by_state()).values()) == 600
    finally:
        await store.close()
