"""Signing in and out of the dashboard, and what is refused without a session, with the
form token missing or from another origin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import ADMIN_TOKEN, VIEWER_TOKEN, write_config
from tillhook.api.dashboard.guard import SECURITY_HEADERS


def assert_guarded(response: aiohttp.ClientResponse) -> None:
    """Every reply of the dashboard carries its security headers, a redirect too."""
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


async def test_sign_in_shows_the_endpoints_and_sign_out_locks_the_pages(
    tmp_path: Path, daemons: Any, browser: Any
) -> None:
    config = write_config(tmp_path / "tillhook.toml", [{"name": "loyalty", "url": "http://127.0.0.1:9/hook"}])
    daemon = await daemons(config).start()
    page = browser(daemon)
    await page.open("/")
    await page.wait("#token")
    assert page.path == "/ui/signin"  # nothing but the sign-in page without a session

    await page.type("#token", "not-the-token-at-all")
    await page.click("[data-action=sign-in]")
    error = await page.wait("[data-error=signin]")
    assert "not valid" in error.text

    await page.sign_in(ADMIN_TOKEN)
    await page.wait("[data-endpoint=loyalty]")
    assert await page.attribute("[data-endpoint=loyalty]", "data-state") == "healthy"
    assert "Healthy" in await page.text("[data-endpoint=loyalty]")  # the state in words, not only a colour
    cookie = page.driver.get_cookie("tillhook_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    await page.click("[data-action=sign-out]")
    await page.wait("#token")
    await page.open("/")
    await page.wait("#token")
    assert page.path == "/ui/signin"


async def test_changes_need_the_session_token_and_the_same_origin(
    tmp_path: Path, daemons: Any, http: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path / "tillhook.toml", [])
    daemon = await daemons(config).start()
    origin = {"Origin": daemon.url}
    # Without a session, pages send the browser to the sign-in page; changes are refused.
    async with http.get(f"{daemon.url}/", allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == "/ui/signin"
        assert_guarded(response)
    async with http.post(f"{daemon.url}/ui/signout", data={"csrf": "x"}, headers=origin) as response:
        assert response.status == 403
    # A sign-in from another site is refused too (no login forgery).
    async with http.post(
        f"{daemon.url}/ui/signin",
        data={"token": ADMIN_TOKEN},
        headers={"Origin": "http://evil.example"},
        allow_redirects=False,
    ) as response:
        assert response.status == 403
    async with http.post(
        f"{daemon.url}/ui/signin", data={"token": ADMIN_TOKEN}, headers=origin, allow_redirects=False
    ) as response:
        assert response.status == 303 and response.headers["Location"] == "/"
        assert_guarded(response)  # the reply that sets the session cookie
        session = response.cookies["tillhook_session"].value
    jar = {"tillhook_session": session}
    async with http.get(f"{daemon.url}/", cookies=jar) as response:
        page = await response.text()
        assert response.status == 200
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    # The right session but no form token, a wrong one, or the right one from another origin: refused.
    for data, headers in (
        ({}, origin),
        ({"csrf": "wrong"}, origin),
        ({"csrf": csrf}, {"Origin": "http://evil.example"}),
        ({"csrf": csrf}, {}),
    ):
        async with http.post(
            f"{daemon.url}/ui/signout", data=data, headers=headers, cookies=jar, allow_redirects=False
        ) as response:
            assert response.status == 403, (data, headers)
    async with http.get(f"{daemon.url}/", cookies=jar, allow_redirects=False) as response:
        assert response.status == 200  # still signed in: none of those did anything
    async with http.post(
        f"{daemon.url}/ui/signout", data={"csrf": csrf}, headers=origin, cookies=jar, allow_redirects=False
    ) as response:
        assert response.status == 303 and response.headers["Location"] == "/ui/signin"
        assert_guarded(response)
    async with http.get(f"{daemon.url}/", cookies=jar, allow_redirects=False) as response:
        assert response.status == 303  # the session is gone


async def test_the_viewer_token_signs_in_read_only(tmp_path: Path, daemons: Any, browser: Any) -> None:
    config = write_config(tmp_path / "tillhook.toml", [{"name": "loyalty", "url": "http://127.0.0.1:9/hook"}])
    daemon = await daemons(config).start()
    page = browser(daemon)
    await page.sign_in(VIEWER_TOKEN)
    await page.wait("[data-endpoint=loyalty]")
    assert "read-only" in await page.text("header")
    # Its session may sign out, and nothing else: every other change is refused before it runs.
    cookie = page.driver.get_cookie("tillhook_session")
    assert cookie is not None
    jar = {"tillhook_session": cookie["value"]}
    source = page.driver.page_source
    csrf = source.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    async with (
        aiohttp.ClientSession(cookies=jar) as session,
        session.post(
            f"{daemon.url}/ui/endpoints/loyalty/disable",
            data={"csrf": csrf},
            headers={"Origin": daemon.url},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 403
        assert "viewer" in await response.text()
    await page.click("[data-action=sign-out]")
    await page.wait("#token")
