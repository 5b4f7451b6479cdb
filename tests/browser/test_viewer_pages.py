"""Signed in with the viewer token in real headless Chromium against the real `tillhook
serve`: every page reachable from the overview says it is read-only, offers no control that
changes anything and shows no credential of the endpoints; the preview works and masks them;
a change forged with the viewer's own session and form token is refused and changes nothing."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import ADMIN_TOKEN, INGEST_TOKEN, VIEWER_TOKEN, write_config
from tests.browser.conftest import Browser
from tests.support import Receiver
from tillhook.redact import origin

# The controls a viewer's page may carry: none of them changes the outbox.
READ_CONTROLS = {"sign-out", "filter", "search", "older", "preview"}
SECRET_HEADER = "key-browser-6a2f90c3"
URL_PASSWORD, URL_TOKEN = "pw-browser-7f3a9c21", "tk-browser-0b8e44d2"
MAX_PAGES = 40


async def _api(http: aiohttp.ClientSession, base: str, method: str, path: str, body: Any = None) -> Any:
    async with http.request(
        method, f"{base}{path}", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as response:
        assert response.status < 300, await response.text()
        return await response.json()


async def _links(page: Browser) -> list[str]:
    hrefs: list[str] = await page.script(
        "return Array.from(document.querySelectorAll('a[href]'), a => a.getAttribute('href'))"
    )
    return [h for h in hrefs if h.startswith("/") and "?" not in h and "#" not in h and "/static/" not in h]


async def _check_read_only(page: Browser, secrets: list[str]) -> None:
    where = page.path
    note = await page.wait("[data-readonly]")
    assert await page._run(note.is_displayed), where
    assert "read-only" in note.text.lower(), where
    actions = set(
        await page.script("return Array.from(document.querySelectorAll('[data-action]'), e => e.dataset.action)")
    )
    assert actions <= READ_CONTROLS, (where, actions - READ_CONTROLS)
    posts = await page.script(
        "return Array.from(document.querySelectorAll('form'))"
        ".filter(f => f.method.toLowerCase() === 'post').map(f => f.getAttribute('action'))"
    )
    assert all(a == "/ui/signout" or a.endswith("/preview#preview-result") for a in posts), (where, posts)
    source = page.driver.page_source
    assert not [s for s in secrets if s in source], where


async def test_a_viewer_sees_every_page_read_only_without_a_credential(
    tmp_path: Path, daemons: Any, browser: Any, http: aiohttp.ClientSession, receivers: Any
) -> None:
    receiver: Receiver = await receivers()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        config = write_config(
            tmp_path / "tillhook.toml",
            [{"name": "from-file", "url": receiver.url}],
            delivery={"give_up_after": "1s"},  # down's delivery fails soon: its page then has a retry, for an admin
        )
        daemon = await daemons(config).start()
        host = receiver.url.split("//", 1)[1]
        shop = await _api(
            http,
            daemon.url,
            "POST",
            "/v1/endpoints",
            {
                "name": "shop",
                "url": f"http://till:{URL_PASSWORD}@{host}?token={URL_TOKEN}",
                "headers": {"x-api-key": SECRET_HEADER},
            },
        )
        await _api(http, daemon.url, "POST", "/v1/endpoints", {"name": "down", "url": f"http://127.0.0.1:{port}/x"})
        async with http.post(
            f"{daemon.url}/v1/events",
            json={"type": "sale.completed", "data": {"total": 12}},
            headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
        ) as response:
            assert response.status == 202
        await receiver.wait_for(lambda got: len(got) == 2)  # shop and from-file
        await daemon.wait_log("delivery_failed")  # down's, after every retry
        secrets = [shop["secret"], URL_PASSWORD, URL_TOKEN, SECRET_HEADER, ADMIN_TOKEN, INGEST_TOKEN, VIEWER_TOKEN]
        secrets += [(await _api(http, daemon.url, "GET", f"/v1/endpoints/{n}/secret"))["secret"] for n in ("down",)]

        page = browser(daemon)
        await page.sign_in(VIEWER_TOKEN)
        seen: set[str] = set()
        queue = ["/", "/ui/endpoints", "/ui/deliveries", "/ui/events"]
        while queue:
            path = queue.pop(0)
            if path in seen:
                continue
            seen.add(path)
            assert len(seen) <= MAX_PAGES, sorted(seen)
            await page.open(path)
            await _check_read_only(page, secrets)
            queue += await _links(page)
        for expected in ("/ui/endpoints/shop", "/ui/endpoints/down", "/ui/deliveries/1", "/ui/deliveries/3"):
            assert expected in seen, sorted(seen)
        assert any(p.startswith("/ui/events/msg_") for p in seen), sorted(seen)

        await page.open("/ui/endpoints/shop/edit")  # not linked for a viewer: it holds the values as they are
        assert "may only read" in await page.text("[data-error=page]")
        assert not [s for s in secrets if s in page.driver.page_source]

        await page.open("/ui/endpoints/shop")
        await page.click("[data-action=preview]")
        await page.wait("[data-preview=request]")
        await _check_read_only(page, secrets)
        assert "***" in await page.text("[data-field=preview-headers]")
        # Of the url, the origin only (a chat webhook's token is its path), as on its page.
        assert await page.text("[data-field=preview-line]") == f"POST {origin(shop['url'])}"

        # A change forged with the viewer's own session and form token is refused.
        cookie = page.driver.get_cookie("tillhook_session")
        assert cookie is not None
        csrf = page.driver.page_source.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        deliveries = (await _api(http, daemon.url, "GET", "/v1/deliveries"))["data"]
        failed = next(d for d in deliveries if d["state"] == "failed")
        async with aiohttp.ClientSession(cookies={"tillhook_session": cookie["value"]}) as forged:
            for path in (
                "/ui/endpoints/shop/disable",
                "/ui/endpoints/shop/delete",
                f"/ui/deliveries/{failed['id']}/retry",
                "/ui/endpoints/shop/secret",
            ):
                async with forged.post(
                    f"{daemon.url}{path}",
                    data={"csrf": csrf, "confirm": "yes"},
                    headers={"Origin": daemon.url},
                    allow_redirects=False,
                ) as response:
                    assert response.status == 403, path
                    assert "viewer token, which may only read" in await response.text()
        assert (await _api(http, daemon.url, "GET", "/v1/endpoints/shop"))["enabled"] is True
        assert (await _api(http, daemon.url, "GET", f"/v1/deliveries/{failed['id']}"))["state"] == "failed"
        await page.click("[data-action=sign-out]")
        await page.wait("#token")
