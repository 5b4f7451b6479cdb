"""Held, not dropped: a disabled endpoint keeps its pending deliveries (and gets new ones)
until it is enabled, which makes them all due at once; the config file's endpoints that are
taken out of it are held the same way."""

from __future__ import annotations

from tests.contract.build import NOW, attempt, claim, endpoint, endpoints, event, settle
from tillhook.models import DeliveryState
from tillhook.store.port import ConfigApplied, LogFilter, Outbox


async def _enabled_quotas(outbox: Outbox, n: int) -> dict[str, int]:
    """What the dispatcher asks for: the enabled endpoints only."""
    return {e.id: n for e in await outbox.list_endpoints() if e.enabled}


async def test_a_disabled_endpoint_holds_its_deliveries_until_enabled(outbox: Outbox) -> None:
    a, b = await endpoints(outbox, "a", "b")
    await outbox.enqueue([event(f"msg_{i}", [a.id, b.id], at=NOW - 100 + i) for i in range(3)])
    (retried,) = await claim(outbox, {a.id: 1})
    await settle(outbox, attempt(retried, DeliveryState.PENDING, status=500, retry_at=NOW + 3600))
    disabled = await outbox.set_endpoint_enabled(a.id, False, "paused by the shop", NOW)
    assert (disabled.enabled, disabled.disabled_reason) == (False, "paused by the shop")
    await outbox.enqueue([event("msg_3", [a.id, b.id], at=NOW)])  # it still gets new ones, held too
    claimed = await claim(outbox, await _enabled_quotas(outbox, 10), now=NOW + 7200)
    assert {d.endpoint_id for d in claimed} == {b.id}
    held = await outbox.list_deliveries(LogFilter(endpoint_id=a.id))
    assert len(held) == 4 and {r.state for r in held} == {DeliveryState.PENDING}
    assert {(r.endpoint_enabled, r.endpoint_disabled_reason) for r in held} == {(False, "paused by the shop")}
    assert (await outbox.pending_by_endpoint())[a.id].pending == 4
    enabled = await outbox.set_endpoint_enabled(a.id, True, None, NOW + 10)
    assert (enabled.enabled, enabled.disabled_reason) == (True, None)
    # All due at once, the one waiting for its retry too, oldest first.
    released = await claim(outbox, {a.id: 10}, now=NOW + 10)
    assert [d.event_id for d in released] == ["msg_0", "msg_1", "msg_2", "msg_3"]
    assert (await outbox.get_delivery(retried.id)).attempts == 1


async def test_disabling_drops_nothing_in_flight(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id])])
    (delivery,) = await claim(outbox, {a.id: 1})
    await outbox.set_endpoint_enabled(a.id, False, "paused", NOW)
    assert (await outbox.get_delivery(delivery.id)).state is DeliveryState.DELIVERING
    await settle(outbox, attempt(delivery, DeliveryState.PENDING, status=500, retry_at=NOW + 10))
    assert (await outbox.get_delivery(delivery.id)).state is DeliveryState.PENDING
    assert await outbox.unfinished_count(a.id) == 1


async def test_an_endpoint_taken_out_of_the_config_file_is_held_and_put_back_released(outbox: Outbox) -> None:
    shop, stock = endpoint("shop"), endpoint("stock", events=("stock.*",))
    assert await outbox.apply_config_endpoints([shop, stock], NOW) == ConfigApplied()
    listed = {e.name: e for e in await outbox.list_endpoints()}
    assert set(listed) == {"shop", "stock"} and all(e.config_managed and e.enabled for e in listed.values())
    assert listed["stock"].events == ("stock.*",) and listed["stock"].url == stock.url
    stock_id = listed["stock"].id
    await outbox.enqueue([event("msg_1", [stock_id], type_="stock.low")])
    applied = await outbox.apply_config_endpoints([shop], NOW + 1)
    assert applied == ConfigApplied(removed=("stock",))
    removed = {e.name: e for e in await outbox.list_endpoints()}["stock"]
    assert (removed.enabled, removed.removed_from_config) == (False, True)
    assert await outbox.count_by_state() == {DeliveryState.PENDING: 1}
    applied = await outbox.apply_config_endpoints([shop, stock], NOW + 2)
    assert applied == ConfigApplied(restored=(("stock", True, 1),))
    back = {e.name: e for e in await outbox.list_endpoints()}["stock"]
    assert (back.id, back.enabled, back.removed_from_config) == (stock_id, True, False)
    (delivery,) = await claim(outbox, {stock_id: 1}, now=NOW + 2)
    assert delivery.event_id == "msg_1"


async def test_applying_the_config_again_updates_by_name(outbox: Outbox) -> None:
    await outbox.apply_config_endpoints([endpoint("shop", max_in_flight=4)], NOW)
    (before,) = await outbox.list_endpoints()
    await outbox.apply_config_endpoints([endpoint("shop", events=("order.*",), max_in_flight=8)], NOW + 1)
    (after,) = await outbox.list_endpoints()
    assert (after.id, after.events, after.max_in_flight) == (before.id, ("order.*",), 8)
