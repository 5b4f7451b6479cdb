"""The Deliveries and Events pages in a real headless Chromium against the real `tillhook
serve`: deliveries appear and change state without a reload, failed ones are retried from the
page after their count is shown, one delivery shows its attempts and headers without secrets,
a receiver's hostile response is shown as text and never runs, and events are found by type
and idempotency key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import ADMIN_TOKEN, INGEST_TOKEN, Daemon, write_config
from tests.support import Receiver, ok, status

HOSTILE = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">till says no'


async def send(http: aiohttp.ClientSession, daemon: Daemon, event_type: str, key: str | None = None) -> str:
    body: dict[str, Any] = {"type": event_type, "data": {"total": 12.5}}
    if key is not None:
        body["id"] = key
    async with http.post(
        f"{daemon.url}/v1/events", json=body, headers={"Authorization": f"Bearer {INGEST_TOKEN}"}
    ) as r:
        assert r.status == 202, await r.text()
        event_id: str = (await r.json())["id"]
        return event_id


async def admin_get(http: aiohttp.ClientSession, daemon: Daemon, path: str, **params: str) -> Any:
    async with http.get(f"{daemon.url}{path}", params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def delivery_of(http: aiohttp.ClientSession, daemon: Daemon, event_id: str) -> int:
    (delivery,) = (await admin_get(http, daemon, "/v1/deliveries", event=event_id))["data"]
    return int(delivery["id"])


def row(delivery_id: int, state: str) -> str:
    return f'tr[data-delivery="{delivery_id}"][data-state="{state}"]'


async def test_deliveries_show_live_and_failed_ones_are_retried_from_the_page(
    tmp_path: Path, daemons: Any, browser: Any, http: aiohttp.ClientSession
) -> None:
    receiver = await Receiver().start()
    try:
        config = write_config(
            tmp_path / "tillhook.toml",
            [{"name": "shop", "url": receiver.url, "events": ["sale.*"]}],
            delivery={"retry_schedule": ["100ms"], "give_up_after": "300ms"},
        )
        daemon = await daemons(config).start()
        page = browser(daemon)
        await page.sign_in()
        await page.open("/ui/deliveries")
        await page.wait("form.log-filters")
        await page._run(page.driver.execute_script, "window.__same_page = true")

        first = await delivery_of(http, daemon, await send(http, daemon, "sale.completed"))
        await page.wait(row(first, "delivered"))

        receiver.behaviour = status(500, "till offline")
        failing = [
            await delivery_of(http, daemon, await send(http, daemon, t)) for t in ("sale.completed", "sale.refunded")
        ]
        for delivery_id in failing:
            await page.wait(row(delivery_id, "failed"))
            cells = await page.text(row(delivery_id, "failed"))
            assert "Failed" in cells and "HTTP 500" in cells  # in words, not only a colour
            await page.wait(f"{row(delivery_id, 'failed')} [data-action=retry]")
        assert await page._run(page.driver.execute_script, "return window.__same_page") is True  # no reload
        await page.screenshot("dashboard-deliveries")

        # Narrow the list by the HTTP status; the retry button under it counts first.
        await page.type("#f-status", "500")
        await page.click("[data-action=filter]")
        await page.wait(row(failing[0], "failed"))
        assert not await page.find_all(f'tr[data-delivery="{first}"]')
        await page.click("[data-action=retry-all]")
        question = await page.wait("[data-count]")
        assert question.get_attribute("data-count") == "2" and "Retry 2 failed deliveries?" in question.text
        assert [r.event_id for r in receiver.received].count(receiver.received[-1].event_id) >= 2  # tried again

        receiver.behaviour = ok
        await page.click("[data-action=retry-all-confirm]")
        notice = await page.wait("[data-notice]")
        assert "Retried 2 failed deliveries" in notice.text
        # Delivered, they leave the HTTP 500 filter; the whole log shows them so, live.
        await page.click("a[href='/ui/deliveries']")
        for delivery_id in failing:
            await page.wait(row(delivery_id, "delivered"))
    finally:
        await receiver.stop()


async def test_one_delivery_shows_attempts_and_headers_without_secrets_and_a_hostile_answer_as_text(
    tmp_path: Path, daemons: Any, browser: Any, http: aiohttp.ClientSession
) -> None:
    receiver = await Receiver(behaviour=status(500, HOSTILE, {"Content-Type": "text/html"})).start()
    try:
        endpoint = {"name": "shop", "url": receiver.url, "events": ["*"], "headers": {"x-api-key": "header-value-7a9f"}}
        config = write_config(tmp_path / "tillhook.toml", [endpoint], delivery={"retry_schedule": ["1h"]})
        daemon = await daemons(config).start()
        secret = (await admin_get(http, daemon, "/v1/endpoints/shop/secret"))["secret"]
        delivery_id = await delivery_of(http, daemon, await send(http, daemon, "sale.completed"))
        await receiver.wait_count(1)
        sent = receiver.received[0].headers

        page = browser(daemon)
        await page.sign_in()
        await page.open(f"/ui/deliveries/{delivery_id}")
        excerpt = await page.wait('[data-attempt="1"] [data-field=response]')
        assert excerpt.text == HOSTILE  # shown as text, whole
        result = await page.text('[data-attempt="1"] [data-field=result]')
        assert "HTTP 500 Internal Server Error" in result
        # Nothing of it became an element, and nothing of it ran.
        assert (
            await page._run(
                page.driver.execute_script, "return document.querySelectorAll('main script, main img').length"
            )
            == 0
        )
        assert await page._run(page.driver.execute_script, "return typeof window.__pwned") == "undefined"

        headers = await page.text('[data-attempt="1"] table.headers')
        assert f"webhook-id {sent['webhook-id']}" in headers
        assert f"webhook-timestamp {sent['webhook-timestamp']}" in headers
        assert "webhook-signature v1," in headers and "x-api-key (set)" in headers
        assert "content-type application/json" in headers and f"user-agent {sent['user-agent']}" in headers
        source = page.driver.page_source
        signature = sent["webhook-signature"].split(",", 1)[1]
        for hidden in (secret, secret.removeprefix("whsec_"), signature, "header-value-7a9f"):
            assert hidden not in source
        await page.screenshot("dashboard-delivery")

        # The same page keeps itself up to date: a retry from it shows the second attempt.
        receiver.behaviour = ok
        await page.open("/ui/deliveries?state=pending")
        await page.click(f'tr[data-delivery="{delivery_id}"] a')
        await page.wait(f'section[data-delivery="{delivery_id}"][data-state="pending"]')
        assert await page._run(page.driver.execute_script, "return typeof window.__pwned") == "undefined"
    finally:
        await receiver.stop()


async def test_events_are_found_by_type_and_idempotency_key_with_their_deliveries(
    tmp_path: Path, daemons: Any, browser: Any, http: aiohttp.ClientSession
) -> None:
    receiver = await Receiver().start()
    try:
        endpoints = [
            {"name": "shop", "url": receiver.url, "events": ["sale.*"]},
            {"name": "loyalty", "url": receiver.url, "events": ["*"]},
        ]
        daemon = await daemons(write_config(tmp_path / "tillhook.toml", endpoints)).start()
        sale_key = "till-3-receipt-1001"
        sale = await send(http, daemon, "sale.completed", key=sale_key)
        refund = await send(http, daemon, "sale.refunded")
        customer = await send(http, daemon, "customer.created", key="till-3-customer-77")
        await receiver.wait_count(5)

        page = browser(daemon)
        await page.sign_in()
        await page.open("/ui/events")
        await page.wait(f'tr[data-event="{customer}"]')
        await page.type("#f-type", "sale.*")
        await page.click("[data-action=search]")
        await page.wait_until(lambda d: "type=sale" in d.current_url)
        found = [e.get_attribute("data-event") for e in await page.find_all("tr[data-event]")]
        assert found == [refund, sale]  # newest first
        await page.screenshot("dashboard-events")

        await page.open("/ui/events")
        await page.type("#f-idempotency_key", sale_key)
        await page.click("[data-action=search]")
        await page.wait_until(lambda d: "idempotency_key=" in d.current_url)
        found = [e.get_attribute("data-event") for e in await page.find_all("tr[data-event]")]
        assert found == [sale]

        # A bad field is named next to the form, in words, and nothing is listed.
        await page.type("#f-since", "tuesday")
        await page.click("[data-action=search]")
        error = await page.wait("[data-error=since]")
        assert "RFC 3339" in error.text and not await page.find_all("tr[data-event]")

        await page.open(f"/ui/events?idempotency_key={sale_key}")
        await page.click(f'tr[data-event="{sale}"] a')
        payload = await page.wait("[data-field=payload]")
        assert '"total": 12.5' in payload.text and sale in payload.text
        for name in ("shop", "loyalty"):
            await page.wait_until(
                lambda d, name=name: any(
                    name in r.text for r in d.find_elements("css selector", 'tr[data-delivery][data-state="delivered"]')
                )
            )
    finally:
        await receiver.stop()
