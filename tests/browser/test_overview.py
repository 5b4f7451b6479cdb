"""The overview's charts in a real Chromium against the real daemon: attempts per hour
(delivered vs failed) and the hourly latency, each with its summary in words, kept up to
date in place as deliveries go out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
from selenium.webdriver.common.by import By

from tests.acceptance.conftest import write_config
from tests.support import Receiver, status


async def test_the_overview_charts_deliveries_and_latency(
    tmp_path: Path, daemons: Any, browser: Any, http: aiohttp.ClientSession
) -> None:
    till = await Receiver().start()
    loyalty = await Receiver(behaviour=status(500, "loyalty service down")).start()
    try:
        config = write_config(
            tmp_path / "tillhook.toml",
            [
                {"name": "till-sync", "url": till.url, "events": ["sale.*"]},
                {"name": "loyalty", "url": loyalty.url, "events": ["sale.*"]},
            ],
        )
        daemon = await daemons(config).start()
        page = browser(daemon)
        await page.sign_in()
        await page.wait("svg[data-chart=deliveries]")
        empty = await page.text("[data-summary=deliveries]")
        assert empty == "last 24 h: 0 delivered, 0 failed"
        assert "nothing delivered" in await page.text("[data-summary=latency]")

        for n in range(6):
            async with http.post(
                f"{daemon.url}/v1/events", json={"type": "sale.completed", "data": {"n": n}}, headers=daemon.headers()
            ) as response:
                assert response.status == 202
        await till.wait_count(6)
        await loyalty.wait_count(6)

        # Without reloading: the live region redraws the charts with the attempts made.
        summary = await page.wait_until(
            lambda d: (
                (text := d.find_element(By.CSS_SELECTOR, "[data-summary=deliveries]").text)
                and re.fullmatch(r"last 24 h: 6 delivered, ([6-9]|\d\d) failed \(.*% of attempts\)", text)
                and text
            ),
            what="the deliveries chart counting 6 delivered and the loyalty failures",
        )
        assert "6 delivered" in summary
        bars = await page.find_all("svg[data-chart=deliveries] rect.bar-delivered")
        failed_bars = await page.find_all("svg[data-chart=deliveries] rect.bar-failed")
        assert len(bars) == 1 and len(failed_bars) == 1  # this hour: delivered, failed stacked on top
        title = await page.find("svg[data-chart=deliveries] > title")
        assert "delivered and failed" in (title.get_attribute("textContent") or "")

        latency = await page.text("[data-summary=latency]")
        assert re.search(r"p50 [\d.]+ m?s, p95 [\d.]+ m?s", latency), latency
        assert await page.find_all("svg[data-chart=latency] circle.dot-p50")
        assert "p50 (half the attempts took less)" in await page.text("figure:has(svg[data-chart=latency]) ul.legend")

        await page.wait_until(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, "[data-endpoint=loyalty]").get_attribute("data-state") == "backing_off"
            ),
            what="loyalty backing off",
        )
        await page.wait("[data-endpoint=loyalty] .last-error")
        await page.screenshot("dashboard-overview")
    finally:
        await till.stop()
        await loyalty.stop()
