"""The endpoint pages over HTTP against the real app: form errors in words with a 422, what
a viewer session sees, the secret only on an explicit request, the config file's fields,
and the replay count agreeing with the replay."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.conftest import ADMIN_TOKEN, Harness, make_config
from tillhook.api.dashboard.guard import SESSIONS


@pytest.fixture
async def pages(tmp_path, receivers, make_harness, clock):
    receiver = await receivers()
    config = make_config(
        tmp_path,
        [{"name": "from-file", "url": receiver.url, "events": ["config.*"]}],
        delivery={"retry_schedule": ["1m"], "give_up_after": "10m"},
    )
    h = await make_harness(config, clock=clock)
    return h, receiver


def _signed_in(h: Harness, role: str = "admin") -> tuple[dict[str, str], str]:
    session = h.app[SESSIONS].create(role)
    return {"Cookie": f"tillhook_session={session.id}", "Origin": str(h.server.make_url("")).rstrip("/")}, session.csrf


async def _page(h: Harness, method: str, path: str, headers: dict[str, str], data: Any = None) -> tuple[int, str, Any]:
    async with h.session.request(
        method, h.server.make_url(path), data=data, headers=headers, allow_redirects=False
    ) as response:
        return response.status, await response.text(), response


async def _api(h: Harness, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with h.session.request(
        method, h.server.make_url(path), json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as response:
        return response.status, (await response.json() if response.status != 204 else None)


async def test_a_bad_add_form_says_why_beside_the_field_with_a_422_and_adds_nothing(pages):
    h, receiver = pages
    headers, csrf = _signed_in(h)
    form = {
        "csrf": csrf,
        "name": "bad name!",
        "url": "ftp://127.0.0.1/x",
        "events": "order.*",
        "headers": "no colon here",
        "max_in_flight": "many",
        "rate_limit": "",
    }
    status, page, response = await _page(h, "POST", "/ui/endpoints", headers, form)
    assert status == 422 and response.content_type == "text/html"
    assert 'data-error="headers"' in page and "line 1 is not `Name: value`" in page
    form["headers"] = "X-Shop: 7"
    status, page, _ = await _page(h, "POST", "/ui/endpoints", headers, form)
    assert status == 422
    for field in ("name", "url", "max_in_flight"):
        assert f'data-error="{field}"' in page, field
    assert "must be an absolute https:// URL with a host" in page
    assert 'value="bad name!"' in page  # what was typed stays in the form
    assert [e.name for e in h.services.registry.all()] == ["from-file"]
    form.update(name="from-file", url=receiver.url, max_in_flight="")
    status, page, _ = await _page(h, "POST", "/ui/endpoints", headers, form)
    assert status == 409 and "exists already" in page


async def test_the_secret_is_shown_only_when_asked_for_and_never_to_a_viewer(pages):
    h, receiver = pages
    headers, csrf = _signed_in(h)
    status, page, _ = await _page(
        h,
        "POST",
        "/ui/endpoints",
        headers,
        {"csrf": csrf, "name": "shop", "url": receiver.url, "events": "*", "headers": ""},
    )
    assert status == 201
    secret = re.search(r'id="secret" data-secret="current">(whsec_[^<]+)<', page)
    assert secret is not None
    status, page, _ = await _page(h, "GET", "/ui/endpoints/shop", headers)
    assert status == 200 and secret[1] not in page and 'data-action="show-secret"' in page
    status, page, response = await _page(h, "POST", "/ui/endpoints/shop/secret", headers, {"csrf": csrf})
    assert status == 200 and secret[1] in page and response.headers["Cache-Control"] == "no-store"

    viewer, viewer_csrf = _signed_in(h, "viewer")
    for path, reads in (("/ui/endpoints", []), ("/ui/endpoints/shop", ["preview"])):
        status, page, _ = await _page(h, "GET", path, viewer)
        assert status == 200 and secret[1] not in page and "data-readonly" in page
        assert re.findall(r'data-action="([^"]+)"', page) == ["sign-out", *reads], path  # no change buttons
        forms = re.findall(r'<form method="post" action="([^"]+)"', page)
        assert forms == ["/ui/signout", *(f"/ui/endpoints/shop/{r}#preview-result" for r in reads)], path
    status, page, _ = await _page(h, "GET", "/ui/endpoints/shop/edit", viewer)  # it holds the values as they are
    assert status == 403 and "may only read" in page and 'name="url"' not in page
    status, _, _ = await _page(h, "POST", "/ui/endpoints/shop/secret", viewer, {"csrf": viewer_csrf})
    assert status == 403


async def test_a_config_managed_endpoint_says_what_the_file_owns_and_offers_no_edit_or_delete(pages):
    h, _ = pages
    headers, csrf = _signed_in(h)
    status, page, _ = await _page(h, "GET", "/ui/endpoints/from-file", headers)
    assert status == 200 and "owns its url, events, headers, limits and ordered" in page
    assert 'data-action="edit"' not in page and 'data-action="delete"' not in page
    assert 'data-action="rotate-secret"' in page  # its secret is generated, not in the file
    status, page, _ = await _page(h, "GET", "/ui/endpoints/from-file/edit", headers)
    assert status == 409 and "config file" in page
    status, page, _ = await _page(
        h, "POST", "/ui/endpoints/from-file/delete", headers, {"csrf": csrf, "confirm": "yes"}
    )
    assert status == 409 and "config file" in page
    assert [e.name for e in h.services.registry.all()] == ["from-file"]
    status, page, _ = await _page(h, "GET", "/ui/endpoints/nowhere", headers)
    assert status == 404 and "there is no endpoint" in page


async def test_the_replay_count_is_what_the_replay_then_makes(pages):
    h, _ = pages
    for n in range(3):
        code, reply, _ = await h.post_events({"type": "config.changed", "data": {"n": n}})
        assert code == 202, reply
    await h.step()
    endpoint = h.services.registry.by_name("from-file")
    assert endpoint is not None
    now = h.services.clock.now()
    store = h.services.store
    for only_failed in (True, False):
        counted = await store.replay_count(endpoint, now - 3600, now + 1, only_failed)
        made = await store.replay(endpoint, now - 3600, now + 1, only_failed, now)
        assert counted == made == (0 if only_failed else 3)
    # Those three are under way now: neither counts nor makes them again.
    assert await store.replay_count(endpoint, now - 3600, now + 1, False) == 0
    assert await store.unfinished_count(endpoint.id) == 3
    status, reply = await _api(h, "POST", "/v1/endpoints/from-file/replay", {"since": "1h", "only_failed": False})
    assert status == 202 and reply["deliveries"] == 0
