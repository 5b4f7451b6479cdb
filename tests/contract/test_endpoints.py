"""Endpoints: created with an id of their own, changed, disabled, deleted (which cancels what
they still had to deliver and keeps its history); a taken name is a Conflict, an unknown id
NotFound."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.contract.build import NOW, claim, endpoint, endpoints, event, finish, secret
from tillhook.errors import Conflict, NotFound
from tillhook.models import DeliveryState, ExtraSignature, SigningSecret
from tillhook.store.port import LogFilter, Outbox


async def test_a_created_endpoint_gets_an_id_and_keeps_every_field(outbox: Outbox) -> None:
    asked = endpoint(
        "shop",
        events=("order.*", "stock.low"),
        max_in_flight=3,
        rate_limit=2.5,
        ordered=True,
        headers=(("X-Shop", "42"),),
        filter="event.data.total > 10",
        transform="{'text': event.type}",
        extra_signature=ExtraSignature("X-Signature"),
        description="Orders for the web shop: stock and paid orders",
        category="Web shop",
    )
    created = await outbox.create_endpoint(asked, NOW)
    assert created.id and created.id != asked.id
    assert created == replace(asked, id=created.id)
    second = await outbox.create_endpoint(endpoint("stock"), NOW + 1)
    assert second.id != created.id
    assert await outbox.list_endpoints() == [created, second]  # oldest first


async def test_a_name_is_taken_once(outbox: Outbox) -> None:
    shop, stock = await endpoints(outbox, "shop", "stock")
    with pytest.raises(Conflict):
        await outbox.create_endpoint(endpoint("shop"), NOW)
    with pytest.raises(Conflict):
        await outbox.update_endpoint(stock.id, {"name": "shop"}, NOW)
    assert await outbox.list_endpoints() == [shop, stock]


async def test_update_changes_the_fields_named(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    changed = await outbox.update_endpoint(
        shop.id,
        {"name": "till", "url": "https://till.example.com/in", "events": ("order.paid",), "max_in_flight": 2},
        NOW,
    )
    assert (changed.id, changed.name, changed.url, changed.events, changed.max_in_flight) == (
        shop.id,
        "till",
        "https://till.example.com/in",
        ("order.paid",),
        2,
    )
    assert (changed.secrets, changed.ordered, changed.enabled) == (shop.secrets, False, True)
    assert await outbox.list_endpoints() == [changed]
    assert await outbox.update_endpoint(shop.id, {}, NOW) == changed


async def test_description_and_category_are_set_changed_and_cleared(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    assert (shop.description, shop.category) == (None, None)
    labelled = await outbox.update_endpoint(shop.id, {"description": "Points for the app", "category": "Loyalty"}, NOW)
    assert (labelled.description, labelled.category) == ("Points for the app", "Loyalty")
    recategorised = await outbox.update_endpoint(shop.id, {"category": "loyalty"}, NOW + 1)
    # Compared exactly: a change of case is a change of category, and the description stays.
    assert (recategorised.description, recategorised.category) == ("Points for the app", "loyalty")
    cleared = await outbox.update_endpoint(shop.id, {"description": None, "category": None}, NOW + 2)
    assert (cleared.description, cleared.category) == (None, None)
    assert await outbox.list_endpoints() == [cleared]


async def test_the_config_file_sets_changes_and_clears_description_and_category(outbox: Outbox) -> None:
    await outbox.apply_config_endpoints(
        [endpoint("shop", description="The web shop", category="Shop"), endpoint("till")], NOW
    )
    listed = {e.name: e for e in await outbox.list_endpoints()}
    assert (listed["shop"].description, listed["shop"].category) == ("The web shop", "Shop")
    assert (listed["till"].description, listed["till"].category) == (None, None)
    await outbox.apply_config_endpoints([endpoint("shop"), endpoint("till", category="Tills")], NOW + 1)
    again = {e.name: e for e in await outbox.list_endpoints()}
    assert (again["shop"].id, again["shop"].description, again["shop"].category) == (listed["shop"].id, None, None)
    assert (again["till"].description, again["till"].category) == (None, "Tills")


async def test_a_rotated_secret_signs_beside_the_old_one_until_it_expires(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    rotated = await outbox.rotate_secret(shop.id, secret(2), NOW + 86400, NOW)
    assert rotated.secrets == (SigningSecret(secret(2)), SigningSecret(secret(1), NOW + 86400))
    again = await outbox.rotate_secret(shop.id, secret(3), NOW + 60, NOW + 1)
    assert again.secrets == (
        SigningSecret(secret(3)),
        SigningSecret(secret(2), NOW + 60),
        SigningSecret(secret(1), NOW + 60),
    )


async def test_delete_cancels_what_is_unfinished_and_keeps_the_history(outbox: Outbox) -> None:
    shop, stock = await endpoints(outbox, "shop", "stock")
    await outbox.enqueue([event(f"msg_{i}", [shop.id, stock.id], at=NOW - 100 + i) for i in range(4)])
    delivered, failed, in_flight = await claim(outbox, {shop.id: 3})
    await finish(outbox, delivered, DeliveryState.DELIVERED)
    await finish(outbox, failed, DeliveryState.FAILED)
    assert await outbox.unfinished_count(shop.id) == 2  # one in flight, one pending
    assert await outbox.delete_endpoint(shop.id, NOW) == 2
    assert await outbox.list_endpoints() == [stock]
    kept = {r.event_id: r for r in await outbox.list_deliveries(LogFilter(endpoint_id=shop.id))}
    assert {e: r.state for e, r in kept.items()} == {
        "msg_0": DeliveryState.DELIVERED,
        "msg_1": DeliveryState.FAILED,
        "msg_2": DeliveryState.CANCELLED,
        "msg_3": DeliveryState.CANCELLED,
    }
    for row in kept.values():  # the log still names the endpoint, and says it is deleted
        assert "shop" in row.endpoint and "deleted" in row.endpoint and row.endpoint_enabled is None
    assert await outbox.unfinished_count(shop.id) == 0
    assert await claim(outbox, {shop.id: 10}) == []
    assert kept["msg_2"].id == in_flight.id
    assert [x.status for x in await outbox.attempts_of_delivery(failed.id)] == [500]
    # Another endpoint's deliveries are untouched, and the name is free again.
    assert await outbox.count_by_state() == {
        DeliveryState.PENDING: 4,
        DeliveryState.DELIVERED: 1,
        DeliveryState.FAILED: 1,
        DeliveryState.CANCELLED: 2,
    }
    again = await outbox.create_endpoint(endpoint("shop"), NOW + 1)
    assert again.id != shop.id


async def test_an_unknown_endpoint_is_not_found(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    await outbox.delete_endpoint(shop.id, NOW)
    for unknown in ("ep_nothing", shop.id):
        with pytest.raises(NotFound):
            await outbox.update_endpoint(unknown, {"url": "https://x.example.com/"}, NOW)
        with pytest.raises(NotFound):
            await outbox.delete_endpoint(unknown, NOW)
        with pytest.raises(NotFound):
            await outbox.set_endpoint_enabled(unknown, False, "why", NOW)
        with pytest.raises(NotFound):
            await outbox.rotate_secret(unknown, secret(2), NOW + 60, NOW)
    assert await outbox.list_endpoints() == []
