"""The endpoint pages in real headless Chromium against the real `tillhook serve`: add an
endpoint to a loopback receiver and verify its deliveries with the secret copied from the
page, edit it, send a test, rotate and show the secret, disable and enable it around a held
delivery, replay after seeing the count, and delete it after seeing what that cancels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from standardwebhooks.webhooks import Webhook

from tests.acceptance.conftest import ADMIN_TOKEN, INGEST_TOKEN, write_config
from tests.browser.conftest import Browser
from tests.support import Receiver


async def _post_event(http: aiohttp.ClientSession, base: str, event_type: str) -> str:
    async with http.post(
        f"{base}/v1/events",
        json={"type": event_type, "data": {"total": 12}},
        headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
    ) as response:
        assert response.status == 202, await response.text()
        reply = await response.json()
    return str(reply["id"])


async def _copied_secret(page: Browser) -> str:
    """Click the copy button and read what it put on the clipboard."""
    page.driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": page.base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    await page.click("[data-copy]")
    await page.wait("[data-copy][data-copied=true]")
    text: str = await page._run(
        page.driver.execute_async_script,
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('failed: ' + e))",
    )
    return text


async def _press(page: Browser, css: str) -> None:
    """Click `css` once it is on the page (after the last click's page has loaded); a live
    region may swap the element for a fresh copy meanwhile, so find it again then."""

    def pressed(driver: Any) -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return True

    await page.wait_until(pressed, what=f"{css} to click")


async def _field(page: Browser, css: str, value: str) -> None:
    def shows(driver: Any) -> bool:
        try:
            return bool(driver.find_element(By.CSS_SELECTOR, css).text.strip() == value)
        except (NoSuchElementException, StaleElementReferenceException):
            return False  # the live region was just refreshed

    await page.wait_until(shows, what=f"{css} showing {value!r}")


def _signatures(headers: dict[str, str]) -> list[str]:
    return headers["webhook-signature"].split()


async def test_add_edit_test_rotate_and_show_the_secret(tmp_path: Path, daemons: Any, browser: Any) -> None:
    receiver = await Receiver().start()
    try:
        daemon = await daemons(write_config(tmp_path / "tillhook.toml", [])).start()
        page = browser(daemon)
        await page.sign_in(ADMIN_TOKEN)
        await _press(page, "nav a[href='/ui/endpoints']")
        await page.wait("#add")

        # A URL the delivery policy refuses: the reason in words next to the field, nothing added.
        await page.type("#f-name", "shop")
        await page.type("#f-url", "ftp://127.0.0.1/hook")
        await _press(page, "[data-action=add]")
        error = await page.wait("[data-error=url]")
        assert "https://" in error.text
        assert not await page.find_all("[data-endpoint=shop]")

        await page.type("#f-url", receiver.url)
        await page.type("#f-events", "order.*")
        await _press(page, "[data-action=add]")
        shown = (await page.wait("#secret")).text
        assert shown.startswith("whsec_")
        copied = await _copied_secret(page)
        assert copied == shown
        receiver.secret = copied

        await _press(page, "a[href='/ui/endpoints/shop']")
        await page.wait("[data-endpoint=shop][data-state=healthy]")
        assert copied not in page.driver.page_source  # never on the page unless asked for
        await _press(page, "[data-action=edit]")
        await page.type("#f-events", "order.*, refund.*")
        await _press(page, "[data-action=save]")
        assert "Saved" in (await page.wait("[data-notice]")).text
        assert "refund.*" in await page.text("dl.settings")

        await _press(page, "[data-action=test]")
        await receiver.wait_count(1)
        assert receiver.received[0].verified  # signed with the secret copied from the page
        assert json.loads(receiver.received[0].body)["type"] == "tillhook.ping"

        await page.type("#grace", "1h")
        await _press(page, "[data-action=rotate-secret]")
        rotated = (await page.wait("#secret")).text
        assert rotated.startswith("whsec_") and rotated != copied
        assert copied in await page.text("[data-secret=previous]")
        receiver.secret = rotated
        await _press(page, "a[href='/ui/endpoints/shop']")
        await _press(page, "[data-action=test]")
        await receiver.wait_count(2)
        second = receiver.received[1]
        assert len(_signatures(second.headers)) == 2  # the new secret and the old one, in its grace
        assert second.verified
        Webhook(copied).verify(second.body, second.headers)

        await _press(page, "[data-action=show-secret]")
        assert (await page.wait("#secret")).text == rotated
        await _press(page, "a[href='/ui/endpoints/shop']")
        await page.wait("[data-endpoint=shop]")
        await page.screenshot("dashboard-endpoint")
        await page.open("/ui/endpoints")
        await page.wait("tr[data-endpoint=shop]")
        await page.screenshot("dashboard-endpoints")

        # On a phone: nothing wider than the screen.
        await page._run(page.driver.set_window_size, 375, 800)
        for path in ("/ui/endpoints", "/ui/endpoints/shop"):
            await page.open(path)
            await page.wait("[data-endpoint=shop]")
            width = await page._run(page.driver.execute_script, "return document.documentElement.scrollWidth")
            assert width <= 375, (path, width)
    finally:
        await receiver.stop()


async def test_disable_enable_replay_and_delete(
    tmp_path: Path, daemons: Any, browser: Any, http: aiohttp.ClientSession
) -> None:
    receiver = await Receiver().start()
    try:
        config = write_config(tmp_path / "tillhook.toml", [{"name": "erp", "url": receiver.url, "events": ["order.*"]}])
        daemon = await daemons(config).start()
        page = browser(daemon)
        await page.sign_in(ADMIN_TOKEN)
        await _press(page, "a[href='/ui/endpoints/erp']")  # from the overview
        await page.wait("[data-endpoint=erp][data-state=healthy]")
        assert "owns its url, events, headers, limits and ordered" in await page.text("[data-config-managed]")
        assert not await page.find_all("[data-action=edit]") and not await page.find_all("[data-action=delete]")

        await _press(page, "[data-action=disable]")
        await page.wait("[data-endpoint=erp][data-state=disabled]")
        first = await _post_event(http, daemon.url, "order.created")
        second = await _post_event(http, daemon.url, "order.paid")
        await _field(page, "[data-endpoint=erp] [data-field=held]", "2")  # the live region, no reload
        await page.open("/")
        await _field(page, "[data-endpoint=erp] [data-field=held]", "2")
        await _press(page, "a[href='/ui/endpoints/erp']")
        await _press(page, "[data-action=enable]")
        await receiver.wait_for(lambda got: {r.event_id for r in got} >= {first, second})
        await page.wait("[data-endpoint=erp][data-state=healthy]")

        # Replay all of the last hour: the count first, then that many deliveries.
        await page.type("#since", "1h")
        await page._run(lambda: page.driver.find_element(By.CSS_SELECTOR, "#scope option[value=all]").click())
        await _press(page, "[data-action=replay]")
        asked = await page.wait("[data-replay-count]")
        assert asked.get_attribute("data-replay-count") == "2" and "Replay 2 deliveries?" in asked.text
        assert len(receiver.received) == 2  # nothing made yet
        await _press(page, "[data-action=replay][data-confirmed]")
        assert "2 new deliveries" in (await page.wait("[data-notice]")).text
        await receiver.wait_count(4)
        assert sorted(r.event_id for r in receiver.received[2:]) == sorted([first, second])
    finally:
        await receiver.stop()


async def test_delete_names_what_it_cancels(
    tmp_path: Path, daemons: Any, browser: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await daemons(write_config(tmp_path / "tillhook.toml", [])).start()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.post(
        f"{daemon.url}/v1/endpoints",
        headers=admin,
        json={"name": "old-till", "url": "http://127.0.0.1:9/hook", "enabled": False},
    ) as response:
        assert response.status == 201
    await _post_event(http, daemon.url, "order.created")  # held: the endpoint is disabled
    page = browser(daemon)
    await page.sign_in(ADMIN_TOKEN)
    await page.open("/ui/endpoints/old-till")
    await _press(page, "[data-action=delete]")
    asked = await page.wait("[data-cancels]")
    assert asked.get_attribute("data-cancels") == "1" and "cancels its 1 unfinished delivery" in asked.text
    await page.open("/ui/endpoints")  # not confirmed: still there
    await page.wait("[data-endpoint=old-till]")
    await page.open("/ui/endpoints/old-till")
    await _press(page, "[data-action=delete]")
    await _press(page, "[data-action=delete][data-confirmed]")
    assert "1 unfinished deliveries cancelled" in (await page.wait("[data-notice]")).text
    assert page.path.startswith("/ui/endpoints?")
    assert not await page.find_all("[data-endpoint=old-till]")
    async with http.get(f"{daemon.url}/v1/endpoints/old-till", headers=admin) as response:
        assert response.status == 404
