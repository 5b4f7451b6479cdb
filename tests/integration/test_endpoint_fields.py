"""An endpoint's filter, transform, preset and extra signature through the admin API: set when
created, checked (a mistake is a 422 naming the field, with where in the expression), changed
and cleared by PATCH, and refused on an endpoint the config file owns."""

from __future__ import annotations

import re

import pytest

from tests.integration.conftest import ADMIN_TOKEN, VIEWER_TOKEN, Harness, api, make_config

FIELDS = {
    "filter": "data.amount > 100.0",
    "transform": '{"text": type}',
    "preset": "slack",
    "extra_signature": {"header": "x-hub-signature-256", "scheme": "sha256-hex"},
}


@pytest.fixture
async def url(receivers) -> str:
    return str((await receivers()).url)


@pytest.fixture
async def h(tmp_path, url, make_harness, clock):
    config = make_config(tmp_path, [{"name": "from-file", "url": url, "events": ["config.*"]}])
    return await make_harness(config, clock=clock)


def _names(h: Harness) -> list[str]:
    return sorted(e.name for e in h.services.registry.all())


@pytest.mark.parametrize("field", list(FIELDS))
async def test_each_field_is_set_when_created_and_shown(h, url, field):
    code, created = await api(h, "POST", "/v1/endpoints", {"name": "shop", "url": url, field: FIELDS[field]})
    assert code == 201, created
    for token in (ADMIN_TOKEN, VIEWER_TOKEN):
        code, shown = await api(h, "GET", "/v1/endpoints/shop", token=token)
        assert code == 200 and shown[field] == FIELDS[field]
        assert all(shown[other] is None for other in FIELDS if other != field)
    stored = h.services.registry.by_name("shop")
    assert stored is not None
    value = getattr(stored, field)
    assert (value.header if field == "extra_signature" else value) == (
        FIELDS[field]["header"] if field == "extra_signature" else FIELDS[field]
    )


@pytest.mark.parametrize("field", ["filter", "transform"])
async def test_an_expression_that_does_not_parse_is_a_422_naming_the_field_and_where(h, url, field):
    source = "data.amount >" if field == "filter" else '{"a": '
    code, problem = await api(h, "POST", "/v1/endpoints", {"name": "shop", "url": url, field: source})
    assert code == 422
    (error,) = problem["errors"]
    assert error["field"] == field
    # Where: line 1, at the end of the source (however the checker words it).
    column = len(source) + 1
    assert re.search(rf"\b1\b\D+\b{column}\b", error["message"]), error["message"]
    assert _names(h) == ["from-file"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"preset": "myspace"}, "preset", "slack"),
        ({"extra_signature": {"header": "webhook-signature"}}, "extra_signature.header", "set by tillhook"),
        ({"extra_signature": {"header": "X-Sig"}, "headers": {"x-sig": "1"}}, "extra_signature.header", "also one of"),
        ({"extra_signature": {"header": "bad header"}}, "extra_signature.header", "not a valid"),
        ({"extra_signature": {"header": "x-sig", "scheme": "md5"}}, "extra_signature.scheme", "sha256-hex"),
    ],
)
async def test_bad_presets_and_signature_headers_are_refused_in_words(h, url, body, field, words):
    code, problem = await api(h, "POST", "/v1/endpoints", {"name": "shop", "url": url, **body})
    assert code == 422, problem
    assert [e["field"] for e in problem["errors"]] == [field]
    assert words in problem["errors"][0]["message"]
    assert _names(h) == ["from-file"]


@pytest.mark.parametrize("field", list(FIELDS))
async def test_patch_sets_and_null_clears_each_field(h, url, field):
    assert (await api(h, "POST", "/v1/endpoints", {"name": "shop", "url": url}))[0] == 201
    code, updated = await api(h, "PATCH", "/v1/endpoints/shop", {field: FIELDS[field]})
    assert code == 200 and updated[field] == FIELDS[field]
    assert (await api(h, "GET", "/v1/endpoints/shop"))[1][field] == FIELDS[field]
    code, updated = await api(h, "PATCH", "/v1/endpoints/shop", {field: None})
    assert code == 200 and updated[field] is None
    stored = h.services.registry.by_name("shop")
    assert stored is not None and getattr(stored, field) is None


async def test_the_signature_scheme_may_be_left_out(h, url):
    body = {"name": "shop", "url": url, "extra_signature": {"header": "x-sig"}}
    code, created = await api(h, "POST", "/v1/endpoints", body)
    assert code == 201 and created["extra_signature"] == {"header": "x-sig", "scheme": "sha256-hex"}
    code, updated = await api(h, "PATCH", "/v1/endpoints/shop", {"extra_signature": {"header": "x-other"}})
    assert code == 200 and updated["extra_signature"] == {"header": "x-other", "scheme": "sha256-hex"}


async def test_patch_checks_the_signature_header_against_the_headers_both_ways(h, url):
    body = {"name": "shop", "url": url, "extra_signature": {"header": "x-sig"}}
    assert (await api(h, "POST", "/v1/endpoints", body))[0] == 201
    code, problem = await api(h, "PATCH", "/v1/endpoints/shop", {"headers": {"X-Sig": "mine"}})
    assert code == 422 and problem["errors"][0]["field"] == "extra_signature.header"
    code, problem = await api(h, "PATCH", "/v1/endpoints/shop", {"filter": "data.amount >"})
    assert code == 422 and problem["errors"][0]["field"] == "filter"
    code, shown = await api(h, "GET", "/v1/endpoints/shop")
    assert shown["headers"] == {} and shown["filter"] is None  # nothing of a refused patch applied


async def test_a_config_managed_endpoint_refuses_them(h, url):
    for field, value in FIELDS.items():
        code, problem = await api(h, "PATCH", "/v1/endpoints/from-file", {field: value})
        assert code == 409 and problem["type"].endswith("config-managed"), field
    code, shown = await api(h, "GET", "/v1/endpoints/from-file")
    assert all(shown[field] is None for field in FIELDS)
