"""A shop owner's afternoon, in real headless Chromium against the real daemon, without a
terminal: sign in, add an endpoint, watch a delivery arrive without reloading, watch the
endpoint back off while its receiver fails, retry the failed deliveries once it is fixed,
rotate the secret, hold deliveries while it is disabled, sign out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.acceptance.conftest import ADMIN_TOKEN, INGEST_TOKEN, write_config
from tests.support import Receiver


class Switchable:
    """A receiver behaviour: 200, or 500 while `failing`."""

    def __init__(self) -> None:
        self.failing = False

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=500 if self.failing else 200, text="down" if self.failing else "ok")


async def _post(http: aiohttp.ClientSession, url: str, n: int) -> str:
    event = {"type": "sale.completed", "data": {"n": n}}
    async with http.post(f"{url}/v1/events", json=event, headers={"Authorization": f"Bearer {INGEST_TOKEN}"}) as reply:
        assert reply.status == 202
        return str((await reply.json())["id"])


async def _secret(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/v1/endpoints/shop/secret", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as reply:
        return str((await reply.json())["secret"])


def _rows(state: str) -> Any:
    return lambda d: len(d.find_elements("css selector", f"[data-delivery][data-state={state}]"))


async def test_a_shop_runs_its_webhooks_from_the_dashboard(
    tmp_path: Path, daemons: Any, browser: Any, http: aiohttp.ClientSession
) -> None:
    config = write_config(
        tmp_path / "tillhook.toml", [], delivery={"retry_schedule": ["100ms"], "give_up_after": "300ms"}
    )
    daemon = await daemons(config).start()
    answer = Switchable()
    receiver = await Receiver(behaviour=answer).start()
    try:
        page = browser(daemon)
        await page.sign_in(ADMIN_TOKEN)

        # Add an endpoint to a loopback receiver; its secret is shown once.
        await page.open("/ui/endpoints")
        await page.type("#f-name", "shop")
        await page.type("#f-url", receiver.url)
        await page.click("[data-action=add]")
        shown = await page.wait("#secret")
        receiver.secret = shown.text
        assert receiver.secret == await _secret(http, daemon.url)

        # An event is delivered, and the log shows it without a reload.
        await page.open("/ui/deliveries")
        await page.script("window.__same_page = true")
        first = await _post(http, daemon.url, 1)
        await page.wait("[data-delivery][data-state=delivered]")
        assert await page.script("return window.__same_page") is True  # no reload
        await receiver.wait_for(lambda got: any(r.event_id == first and r.verified for r in got))

        # The receiver fails: after five failures in a row the endpoint backs off, as the
        # overview says in words; the deliveries give up and are failed.
        answer.failing = True
        for n in range(6):
            await _post(http, daemon.url, 100 + n)
        await page.open("/")
        await page.wait("[data-endpoint=shop][data-state=backing_off]")
        assert "Backing off" in await page.text("[data-endpoint=shop]")
        await page.screenshot("dashboard-backing-off")
        await page.open("/ui/deliveries?state=failed")
        await page.wait_until(lambda d: _rows("failed")(d) == 6, 30, "6 failed deliveries")

        # Fixed: retry every failed delivery from the page, after seeing how many.
        answer.failing = False
        await page.click("[data-action=retry-all]")
        confirm = await page.wait("[data-action=retry-all-confirm]")
        assert "6" in confirm.text
        await page.click("[data-action=retry-all-confirm]")
        await page.open("/ui/deliveries")
        await page.wait_until(lambda d: _rows("delivered")(d) == 7, 30, "7 delivered deliveries")
        await page.open("/")
        await page.wait("[data-endpoint=shop][data-state=healthy]")

        # Rotate the secret: the new one is shown, and the next delivery verifies with it.
        await page.open("/ui/endpoints/shop")
        await page.type("#grace", "1h")
        await page.click("[data-action=rotate-secret]")
        rotated = await page.wait("#secret")
        assert rotated.text != receiver.secret
        receiver.secret = rotated.text
        after_rotation = await _post(http, daemon.url, 200)
        await receiver.wait_for(lambda got: any(r.event_id == after_rotation and r.verified for r in got))

        # Disabled, an event is held (and shown as held); enabled, it goes out.
        await page.open("/ui/endpoints/shop")
        await page.click("[data-action=disable]")
        await page.wait("[data-action=enable]")
        held = await _post(http, daemon.url, 300)
        await page.wait_until(lambda d: d.find_element("css selector", "[data-field=held]").text == "1", 20, "held 1")
        assert held not in receiver.event_ids()
        await page.click("[data-action=enable]")
        await receiver.wait_for(lambda got: any(r.event_id == held and r.verified for r in got))

        # Signed out, nothing is reachable.
        await page.click("[data-action=sign-out]")
        await page.wait("#token")
        for path in ("/", "/ui/endpoints", "/ui/deliveries", "/ui/events"):
            await page.open(path)
            await page.wait("#token")
            assert page.path == "/ui/signin", path
    finally:
        await receiver.stop()
