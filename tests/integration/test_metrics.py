"""/metrics parses with prometheus-client's own parser and its counts match what happened."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ADMIN_TOKEN, make_config
from tests.support import status


async def scrape(h) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with h.session.get(h.server.make_url("/metrics"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_what_was_ingested_and_delivered(tmp_path, receivers, make_harness, clock):
    good, bad = await receivers(), await receivers(behaviour=status(500))
    config = make_config(tmp_path, [{"name": "good", "url": good.url}, {"name": "bad", "url": bad.url}])
    h = await make_harness(config, clock=clock)
    code, _, _ = await h.post_events([{"type": "sale.completed", "data": {}} for _ in range(3)])
    assert code == 202
    code, _, _ = await h.post_events({"type": "customer.created", "data": {}, "id": "k1"})
    code, reply, _ = await h.post_events({"type": "customer.created", "data": {}, "id": "k1"})
    assert reply["duplicate"] is True  # counted once
    while await h.step():
        pass

    m = await scrape(h)
    assert m[("tillhook_events_ingested_total", (("type", "sale.completed"),))] == 3
    assert m[("tillhook_events_ingested_total", (("type", "customer.created"),))] == 1
    assert m[("tillhook_attempts_total", (("endpoint", "good"), ("outcome", "delivered")))] == 4
    assert m[("tillhook_attempts_total", (("endpoint", "bad"), ("outcome", "retry")))] == 4
    assert m[("tillhook_attempt_duration_seconds_count", (("endpoint", "good"),))] == 4
    assert m[("tillhook_deliveries", (("state", "delivered"),))] == 4
    assert m[("tillhook_deliveries", (("state", "pending"),))] == 4
    assert m[("tillhook_backlog", (("endpoint", "bad"),))] == 4
    assert m[("tillhook_backlog", (("endpoint", "good"),))] == 0
    assert m[("tillhook_oldest_pending_age_seconds", (("endpoint", "bad"),))] >= 0
    assert m[("tillhook_endpoint_state", (("endpoint", "good"), ("state", "healthy")))] == 1
    assert m[("tillhook_endpoint_state", (("endpoint", "good"), ("state", "disabled")))] == 0
    assert m[("tillhook_database_size_bytes", ())] > 0
    assert m[("tillhook_commit_batch_size_count", ())] >= 3
    assert m[("tillhook_in_flight", (("endpoint", "good"),))] == 0


async def test_metrics_need_the_admin_token(tmp_path, make_harness, clock):
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    async with h.session.get(h.server.make_url("/metrics")) as response:
        assert response.status == 401
