"""The dashboard's side of filters, transforms, presets and the extra signature, over HTTP
against the real app: the form's fields and their errors beside them, what the endpoint page
shows, its preview (escaped text, never markup), each attempt's body sent on the delivery
page, and the endpoints a filter left out on the event page."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from tests.integration.conftest import Harness, make_config
from tests.integration.test_endpoint_pages import _page, _signed_in
from tillhook.redact import origin


@pytest.fixture
async def pages(tmp_path, receivers, make_harness, clock):
    receiver = await receivers()
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    return h, receiver


def _form(csrf: str, url: str, **fields: str) -> dict[str, str]:
    return {"csrf": csrf, "name": "shop", "url": url, "events": "*", "headers": "", **fields}


def _error(page: str, field: str) -> str:
    found = re.search(rf'<p class="error field-error" data-error="{field}">(.*?)</p>', page, re.DOTALL)
    assert found is not None, f"no error for {field}"
    return html.unescape(found[1])


async def _add(h: Harness, url: str, **fields: str) -> None:
    headers, csrf = _signed_in(h)
    status, page, _ = await _page(h, "POST", "/ui/endpoints", headers, _form(csrf, url, **fields))
    assert status == 201, page


async def test_the_add_form_refuses_each_field_in_words_beside_it(pages):
    h, receiver = pages
    headers, csrf = _signed_in(h)
    form = _form(
        csrf,
        receiver.url,
        filter="data.amount >",
        transform='{"a": ',
        preset="myspace",
        extra_signature="webhook-signature",
    )
    status, page, _ = await _page(h, "POST", "/ui/endpoints", headers, form)
    assert status == 422
    assert re.search(r"\b1\b\D+\b14\b", _error(page, "filter"))  # where in the expression
    assert re.search(r"\b1\b\D+\b6\b", _error(page, "transform"))  # the end, once stripped
    assert "slack" in _error(page, "preset")
    assert h.services.registry.all() == []
    # What was typed stays, so it can be fixed in place.
    assert ">data.amount &gt;</textarea>" in page and 'value="webhook-signature"' in page
    form.update(filter="data.amount > 1.0", transform="", preset="")
    status, page, _ = await _page(h, "POST", "/ui/endpoints", headers, form)
    assert status == 422 and "set by tillhook" in _error(page, "extra_signature")


async def test_the_endpoint_page_shows_them_and_the_edit_form_changes_and_clears_them(pages):
    h, receiver = pages
    await _add(
        h,
        receiver.url,
        filter="data.amount > 1.0",
        transform='{"t": "<b>" + type}',
        preset="slack",
        extra_signature="x-hub-signature-256",
    )
    headers, csrf = _signed_in(h)
    status, page, _ = await _page(h, "GET", "/ui/endpoints/shop", headers)
    assert status == 200
    assert '<pre class="expression">data.amount &gt; 1.0</pre>' in page
    assert "made by its transform (in place of the slack preset)" in page and "&lt;b&gt;" in page
    assert "<code>x-hub-signature-256: sha256=…</code>" in page
    status, page, _ = await _page(h, "GET", "/ui/endpoints/shop/edit", headers)
    assert '<option value="slack" selected>' in page and 'value="x-hub-signature-256"' in page
    form = _form(csrf, receiver.url, filter="", transform="", preset="discord", extra_signature="")
    del form["name"]
    status, _, response = await _page(h, "POST", "/ui/endpoints/shop/edit", headers, form)
    assert status == 303, await response.text()
    shop = h.services.registry.by_name("shop")
    assert shop is not None
    assert (shop.filter, shop.transform, shop.preset, shop.extra_signature) == (None, None, "discord", None)


async def test_the_preview_shows_the_request_as_text_the_verdict_or_the_mistake(pages):
    h, receiver = pages
    await _add(h, receiver.url, filter="data.amount > 1.0", transform='{"note": data.note}')
    headers, csrf = _signed_in(h)
    status, page, _ = await _page(h, "GET", "/ui/endpoints/shop", headers)
    assert 'data-action="preview"' in page and "transaction.completed" in page  # the sample to start from

    async def preview(**fields: str) -> tuple[int, str]:
        status, page, _ = await _page(h, "POST", "/ui/endpoints/shop/preview", headers, {"csrf": csrf, **fields})
        return status, page

    event = '{"type": "sale.completed", "data": {"amount": 5.0, "note": "<script>alert(1)</script>"}}'
    status, page = await preview(event=event)
    assert status == 200 and 'data-preview="request"' in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "The body is its transform's result." in page
    assert f"POST {receiver.url}" in page
    status, page = await preview(event='{"type": "sale.completed", "data": {"amount": 0.5}}')
    assert status == 200 and 'data-preview="filtered-out"' in page and "leaves this event out" in page
    status, page = await preview(event='{"type": "sale.completed", "data": {"note": "x"}}')
    assert status == 200 and 'data-preview="error"' in page and "filter" in page

    status, page = await preview(event="{nope")
    assert status == 422 and "the event is not valid JSON" in _error(page, "event")
    status, page = await preview(event='{"type": "no spaces", "data": {}}')
    assert status == 422 and "dot-separated" in _error(page, "event")
    status, page = await preview(event="")
    assert status == 422 and "event_id" in _error(page, "body")
    status, page = await preview(event=event, event_id="msg_nope")
    assert status == 404 and "msg_nope" in _error(page, "event_id")

    # A received event's id wins over the sample left in the event field.
    code, reply, _ = await h.post_events({"type": "sale.completed", "data": {"amount": 9.0, "note": "stored"}})
    assert code == 202
    status, page = await preview(event=event, event_id=reply["id"])
    assert status == 200 and f"for event {reply['id']}" in page and "stored" in page
    assert await h.step() == 1 and len(receiver.received) == 1  # the previews sent nothing

    # A viewer previews too (it changes nothing), and reads of the url the origin only.
    viewer, viewer_csrf = _signed_in(h, "viewer")
    status, page, _ = await _page(h, "GET", "/ui/endpoints/shop", viewer)
    assert 'data-action="preview"' in page
    status, page, _ = await _page(
        h, "POST", "/ui/endpoints/shop/preview", viewer, {"csrf": viewer_csrf, "event": event}
    )
    assert status == 200 and f"POST {origin(receiver.url)}<" in page and receiver.url not in page


async def test_the_delivery_page_shows_the_body_each_attempt_sent(pages):
    h, receiver = pages
    await _add(h, receiver.url, transform='{"text": "<i>" + type + "</i>"}')
    await _add_plain(h, receiver.url)
    code, _, _ = await h.post_events({"type": "sale.completed", "data": {"amount": 5.0}})
    assert code == 202
    await h.step()
    headers, _ = _signed_in(h)
    bodies: dict[str, Any] = {}
    for delivery in (1, 2):
        status, page, _ = await _page(h, "GET", f"/ui/deliveries/{delivery}", headers)
        assert status == 200
        found = re.search(r'<pre data-field="body-sent">(.*?)</pre>', page, re.DOTALL)
        endpoint = re.search(r'<dd class="name">(.*?)</dd>', page)
        assert endpoint is not None
        bodies[endpoint[1]] = found[1] if found else None
    assert bodies == {"shop": "{&#34;text&#34;:&#34;&lt;i&gt;sale.completed&lt;/i&gt;&#34;}", "plain": None}


async def _add_plain(h: Harness, url: str) -> None:
    headers, csrf = _signed_in(h)
    status, page, _ = await _page(h, "POST", "/ui/endpoints", headers, {**_form(csrf, url), "name": "plain"})
    assert status == 201, page


async def test_the_event_page_names_the_endpoints_whose_filter_left_it_out(pages):
    h, receiver = pages
    await _add(h, receiver.url, filter="data.amount > 100.0")
    code, reply, _ = await h.post_events({"type": "sale.completed", "data": {"amount": 5.0}})
    assert code == 202 and reply["deliveries"] == 0
    headers, _ = _signed_in(h)
    status, page, _ = await _page(h, "GET", f"/ui/events/{reply['id']}", headers)
    assert status == 200
    assert '<li data-filtered-out="shop"><a href="/ui/endpoints/shop">shop</a></li>' in page
    assert "left it out by its filter, so nothing was sent" in page
