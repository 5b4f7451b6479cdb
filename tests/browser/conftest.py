"""The dashboard in a real headless Chromium (Debian's chromium and chromedriver, driven by
selenium) against the real `tillhook serve`. Selenium blocks, so every browser call runs in
a thread: the test's event loop stays free for the receivers and the daemon's log."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.acceptance.conftest import ADMIN_TOKEN, Daemon, daemons, http  # noqa: F401 - fixtures

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs"
# A live region is replaced every 2 s: an element found a moment ago may be gone already, so
# waits look again instead of failing.
_LOOK_AGAIN = (NoSuchElementException, StaleElementReferenceException)


def _driver(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-extensions",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(
        service=Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER), options=options
    )


class Browser:
    """One Chromium window on one daemon's dashboard."""

    def __init__(self, driver: webdriver.Chrome, base: str) -> None:
        self.driver = driver
        self.base = base

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, path: str = "/") -> None:
        await self._run(self.driver.get, self.base + path)

    async def sign_in(self, token: str = ADMIN_TOKEN) -> None:
        await self.open("/ui/signin")
        await self.type("#token", token)
        await self.click("[data-action=sign-in]")
        await self.wait("[data-action=sign-out]")

    async def find(self, css: str) -> WebElement:
        element: WebElement = await self._run(self.driver.find_element, By.CSS_SELECTOR, css)
        return element

    async def find_all(self, css: str) -> list[WebElement]:
        found: list[WebElement] = await self._run(self.driver.find_elements, By.CSS_SELECTOR, css)
        return found

    async def wait(self, css: str, timeout_s: float = 20.0) -> WebElement:
        """Until an element matching `css` is on the page (live updates included)."""
        return await self.wait_until(
            lambda d: d.find_elements(By.CSS_SELECTOR, css) and d.find_element(By.CSS_SELECTOR, css),
            timeout_s,
            f"no {css!r} on the page",
        )

    async def wait_until(
        self, condition: Callable[[webdriver.Chrome], Any], timeout_s: float = 20.0, what: str = "the condition"
    ) -> Any:
        def until() -> Any:
            wait = WebDriverWait(self.driver, timeout_s, poll_frequency=0.1, ignored_exceptions=_LOOK_AGAIN)
            return wait.until(condition, what)

        return await self._run(until)

    async def click(self, css: str) -> None:
        element = await self.find(css)
        await self._run(element.click)

    async def type(self, css: str, text: str) -> None:
        element = await self.find(css)
        await self._run(element.clear)
        await self._run(element.send_keys, text)

    async def text(self, css: str, timeout_s: float = 20.0) -> str:
        """The text of the element matching `css` now (found again if a refresh replaced it)."""
        found: tuple[str] = await self.wait_until(
            lambda d: (d.find_element(By.CSS_SELECTOR, css).text,), timeout_s, f"no {css!r} on the page"
        )
        return found[0]

    async def attribute(self, css: str, name: str, timeout_s: float = 20.0) -> str | None:
        found: tuple[str | None] = await self.wait_until(
            lambda d: (d.find_element(By.CSS_SELECTOR, css).get_attribute(name),), timeout_s, f"no {css!r} on the page"
        )
        return found[0]

    async def script(self, js: str) -> Any:
        return await self._run(self.driver.execute_script, js)

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base)

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        target = SCREENSHOTS / f"{name}.png"
        await self._run(self.driver.save_screenshot, str(target))
        return target


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Callable[[Daemon], Browser]]:
    drivers: list[webdriver.Chrome] = []

    def make(daemon: Daemon) -> Browser:
        profile = tmp_path / f"chromium-{len(drivers)}"
        profile.mkdir()
        driver = _driver(profile)
        drivers.append(driver)
        return Browser(driver, daemon.url)

    yield make
    for driver in drivers:
        await asyncio.to_thread(driver.quit)
