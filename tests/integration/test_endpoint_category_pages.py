"""The endpoints page grouped by category, and the description and category on the forms and
the endpoint's page, over HTTP against the real app."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.conftest import ADMIN_TOKEN, Harness, make_config
from tillhook.api.dashboard.guard import SESSIONS


@pytest.fixture
async def url(receivers) -> str:
    return str((await receivers()).url)


@pytest.fixture
async def h(tmp_path, url, make_harness):
    return await make_harness(make_config(tmp_path, [{"name": "from-file", "url": url, "category": "Loyalty"}]))


def _signed_in(h: Harness, role: str = "admin") -> tuple[dict[str, str], str]:
    session = h.app[SESSIONS].create(role)
    return {"Cookie": f"tillhook_session={session.id}", "Origin": str(h.server.make_url("")).rstrip("/")}, session.csrf


async def _page(h: Harness, method: str, path: str, headers: dict[str, str], data: Any = None) -> tuple[int, str]:
    async with h.session.request(
        method, h.server.make_url(path), data=data, headers=headers, allow_redirects=False
    ) as response:
        return response.status, await response.text()


async def _create(h: Harness, name: str, **fields: Any) -> None:
    async with h.session.post(
        h.server.make_url("/v1/endpoints"),
        json={"name": name, "url": "http://127.0.0.1:9/hook", **fields},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as response:
        assert response.status == 201, await response.text()


def _groups(page: str) -> list[tuple[str, list[str]]]:
    """Each group's data-category, with the endpoints listed in it, in the page's order."""
    found = []
    for category, body in re.findall(
        r'<section class="endpoint-group" data-category="([^"]*)"(.*?)</section>', page, re.S
    ):
        found.append((category, re.findall(r'<tr [^>]*data-endpoint="([^"]+)"', body)))
    return found


async def test_the_list_groups_by_category_sorted_with_none_last(h):
    await _create(h, "bare")
    await _create(h, "erp", category="Back office")
    await _create(h, "app", category="Loyalty", description="Points <b>for</b> the app")
    await _create(h, "lower", category="loyalty")
    for role in ("admin", "viewer"):
        headers, _ = _signed_in(h, role)
        for path in ("/ui/endpoints", "/ui/endpoints?part=live"):
            status, page = await _page(h, "GET", path, headers)
            assert status == 200
            assert _groups(page) == [
                ("Back office", ["erp"]),
                ("Loyalty", ["from-file", "app"]),
                ("loyalty", ["lower"]),
                ("", ["bare"]),
            ]
            headings = re.findall(r'<h2 class="category"[^>]*>([^<]*)</h2>', page)
            assert headings == ["Back office", "Loyalty", "loyalty", "No category"]
            # The description is text, never markup.
            assert "Points &lt;b&gt;for&lt;/b&gt; the app" in page and "<b>for</b>" not in page


async def test_without_any_category_the_list_has_no_headings(tmp_path, url, make_harness):
    h = await make_harness(make_config(tmp_path, [{"name": "from-file", "url": url}]))
    headers, _ = _signed_in(h)
    status, page = await _page(h, "GET", "/ui/endpoints", headers)
    assert status == 200 and _groups(page) == [("", ["from-file"])]
    assert 'class="category"' not in page


async def test_the_add_and_edit_forms_set_them_and_say_what_is_wrong(h, url):
    headers, csrf = _signed_in(h)
    form = {"csrf": csrf, "name": "app", "url": url, "events": "*", "category": "Loyalty/App"}
    status, page = await _page(h, "POST", "/ui/endpoints", headers, form)
    assert status == 422 and 'data-error="category"' in page and "letters, digits, spaces" in page
    assert 'value="Loyalty/App"' in page
    assert h.services.registry.by_name("app") is None
    form.update(category="Loyalty", description="Points for the app")
    status, page = await _page(h, "POST", "/ui/endpoints", headers, form)
    assert status == 201, page
    app = h.services.registry.by_name("app")
    assert app is not None and (app.category, app.description) == ("Loyalty", "Points for the app")

    status, page = await _page(h, "GET", "/ui/endpoints/app/edit", headers)
    assert status == 200
    assert 'name="category" value="Loyalty"' in page and 'name="description" value="Points for the app"' in page
    assert '<option value="Loyalty">' in page  # the categories in use are offered
    edit = {"csrf": csrf, "url": url, "events": "*", "category": "Till", "description": "x" * 501}
    status, page = await _page(h, "POST", "/ui/endpoints/app/edit", headers, edit)
    assert status == 422 and 'data-error="description"' in page and "at most 500 characters" in page
    edit.update(description="")  # an empty field clears it
    status, _ = await _page(h, "POST", "/ui/endpoints/app/edit", headers, edit)
    assert status == 303
    app = h.services.registry.by_name("app")
    assert app is not None and (app.category, app.description) == ("Till", None)


async def test_the_endpoint_page_shows_them(h):
    await _create(h, "app", category="Loyalty", description="Points for the app")
    for role in ("admin", "viewer"):
        headers, _ = _signed_in(h, role)
        status, page = await _page(h, "GET", "/ui/endpoints/app", headers)
        assert status == 200
        assert '<p class="description" data-field="description">Points for the app</p>' in page
        assert '<dd data-field="category">Loyalty</dd>' in page
