"""An endpoint with a transform made from the dashboard's form in real headless Chromium
against the real `tillhook serve`, then previewed: the transformed body shows as text, the
markup inside the event stays text and never runs, and nothing is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import ADMIN_TOKEN, write_config
from tests.browser.test_endpoints_pages import _press
from tests.support import Receiver

MARKUP = "<script>document.title = 'ran'</script><img src=x onerror=\"document.title = 'ran'\">"


async def test_a_transform_from_the_form_previewed_as_text(tmp_path: Path, daemons: Any, browser: Any) -> None:
    receiver = await Receiver().start()
    try:
        daemon = await daemons(write_config(tmp_path / "tillhook.toml", [])).start()
        page = browser(daemon)
        await page.sign_in(ADMIN_TOKEN)
        await page.open("/ui/endpoints")
        await page.type("#f-name", "chat")
        await page.type("#f-url", receiver.url)
        await page.type("#f-transform", '{"text": "Sale: " + data.note}')
        await page.type("#f-extra-signature", "x-hub-signature-256")
        await _press(page, "[data-action=add]")
        await page.wait("#secret")
        await _press(page, "a[href='/ui/endpoints/chat']")
        assert "made by its transform" in await page.text("[data-field=body]")
        assert "x-hub-signature-256" in await page.text("[data-field=extra_signature]")

        # The event field starts with a sample; what is typed replaces it.
        sample = json.loads(await page.attribute("#p-event", "value") or "")
        assert sample["type"] == "transaction.completed"
        title = await page.script("return document.title")
        await page.type("#p-event", json.dumps({"type": "sale.completed", "data": {"note": MARKUP}}))
        await _press(page, "[data-action=preview]")
        await page.wait("[data-preview=request]")
        body = await page.text("[data-field=preview-body-text]")
        assert json.loads(body) == {"text": "Sale: " + MARKUP}
        assert json.loads(await page.text("[data-field=preview-body]")) == {"text": "Sale: " + MARKUP}
        assert await page.text("[data-field=preview-line]") == f"POST {receiver.url}"
        headers = await page.text("[data-field=preview-headers]")
        assert "x-hub-signature-256 sha256=… (computed when sent)" in headers
        # Shown as text: no element came of it, nothing of it ran.
        assert not await page.find_all("[data-preview] script, [data-preview] img, [data-preview] b")
        assert await page.script("return document.title") == title
        assert receiver.received == []

        # A filter that leaves the event out, said in words.
        await page.open("/ui/endpoints/chat/edit")
        await page.type("#f-filter", "data.note.startsWith('ok')")
        await _press(page, "[data-action=save]")
        await page.wait("[data-notice]")
        await page.type("#p-event", json.dumps({"type": "sale.completed", "data": {"note": "not ok"}}))
        await _press(page, "[data-action=preview]")
        assert "leaves this event out" in await page.text("[data-preview=filtered-out]")

        # On a phone: nothing wider than the screen.
        await page._run(page.driver.set_window_size, 375, 800)
        await page.type("#p-event", json.dumps({"type": "sale.completed", "data": {"note": "ok " + "x" * 200}}))
        await _press(page, "[data-action=preview]")
        await page.wait("[data-preview=request]")
        width = await page.script("return document.documentElement.scrollWidth")
        assert width <= 375, width
        assert receiver.received == []
    finally:
        await receiver.stop()
