"""The endpoints page in real headless Chromium against the real `tillhook serve`: endpoints
grouped under a heading per category, sorted, those without one last under "No category";
an endpoint added through the form lands in its group, one moved by the edit form moves, and
one added through the API shows up in its group as the page refreshes itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from selenium.webdriver.common.by import By

from tests.acceptance.conftest import ADMIN_TOKEN, write_config
from tests.browser.conftest import Browser

URL = "http://127.0.0.1:9/hook"  # nothing is delivered: the test sends no events


def _grouping(driver: Any) -> list[tuple[str | None, str | None, list[str]]]:
    """Each group as the page shows it: data-category, its heading, its endpoints' names."""
    found = []
    for section in driver.find_elements(By.CSS_SELECTOR, "section.endpoint-group"):
        headings = section.find_elements(By.CSS_SELECTOR, "h2.category")
        rows = section.find_elements(By.CSS_SELECTOR, "tr[data-endpoint]")
        found.append(
            (
                section.get_attribute("data-category"),
                headings[0].text if headings else None,
                # Within a group in the list's own order, which for endpoints from the file
                # created at one moment is their ids'.
                sorted(r.get_attribute("data-endpoint") for r in rows),
            )
        )
    return found


async def _shows(page: Browser, expected: list[tuple[str, str, list[str]]]) -> None:
    await page.wait_until(lambda d: _grouping(d) == expected, what=f"the groups {expected}")


async def test_the_endpoints_page_groups_by_category(
    tmp_path: Path, daemons: Any, browser: Any, http: aiohttp.ClientSession
) -> None:
    config = write_config(
        tmp_path / "tillhook.toml",
        [
            {"name": "till-log", "url": URL},
            {"name": "points", "url": URL, "category": "Loyalty", "description": "Points for the app"},
            {"name": "kitchen", "url": URL, "category": "Kitchen displays"},
            {"name": "vouchers", "url": URL, "category": "Loyalty"},
        ],
    )
    daemon = await daemons(config).start()
    page = browser(daemon)
    await page.sign_in(ADMIN_TOKEN)
    await page.open("/ui/endpoints")
    await _shows(
        page,
        [
            ("Kitchen displays", "Kitchen displays", ["kitchen"]),
            ("Loyalty", "Loyalty", ["points", "vouchers"]),
            ("", "No category", ["till-log"]),
        ],
    )
    assert await page.text("tr[data-endpoint=points] [data-field=description]") == "Points for the app"

    # Added through the form: a new category, sorted in among the others.
    await page.type("#f-name", "erp")
    await page.type("#f-url", URL)
    await page.type("#f-category", "Back office")
    await page.type("#f-description", "Orders into the ERP")
    await page.click("[data-action=add]")
    await page.wait("#secret")
    await page.open("/ui/endpoints")
    await _shows(
        page,
        [
            ("Back office", "Back office", ["erp"]),
            ("Kitchen displays", "Kitchen displays", ["kitchen"]),
            ("Loyalty", "Loyalty", ["points", "vouchers"]),
            ("", "No category", ["till-log"]),
        ],
    )

    # Moved by the edit form: out of its group, which goes with it.
    await page.open("/ui/endpoints/erp/edit")
    await page.type("#f-category", "Loyalty")
    await page.click("[data-action=save]")
    assert "Saved" in (await page.wait("[data-notice]")).text
    assert await page.text("[data-field=category]") == "Loyalty"
    assert await page.text("p[data-field=description]") == "Orders into the ERP"
    await page.open("/ui/endpoints")
    loyalty = ("Loyalty", "Loyalty", ["erp", "points", "vouchers"])
    await _shows(
        page, [("Kitchen displays", "Kitchen displays", ["kitchen"]), loyalty, ("", "No category", ["till-log"])]
    )

    # Added through the API while the page is open: the live region puts it in its group.
    async with http.post(
        f"{daemon.url}/v1/endpoints",
        json={"name": "bar", "url": URL, "category": "Kitchen displays"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as response:
        assert response.status == 201, await response.text()
    await _shows(
        page,
        [("Kitchen displays", "Kitchen displays", ["bar", "kitchen"]), loyalty, ("", "No category", ["till-log"])],
    )
