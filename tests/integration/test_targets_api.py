"""Targets that can never be delivered to are refused when an endpoint is created or updated
through the admin API, naming the setting that would allow them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import make_config
from tests.integration.test_admin_api import api, create, post
from tests.support import deliveries_of
from tillhook.models import Endpoint, SigningSecret
from tillhook.rules import new_secret


@pytest.fixture
async def h(tmp_path, make_harness, clock):
    # The test config allows http and 127.0.0.0/8, as every other integration test does.
    return await make_harness(make_config(tmp_path, []), clock=clock)


async def names(h) -> list[str]:
    return [e["name"] for e in (await api(h, "GET", "/v1/endpoints"))[1]["data"]]


@pytest.mark.parametrize(
    ("body", "field", "said"),
    [
        (
            {"url": "https://10.0.0.5/h"},
            "url",
            '10.0.0.5 is a private address: add a network covering it to delivery.allow_networks, like "10.0.0.5/32"',
        ),
        ({"url": "https://[::1]:8443/h"}, "url", 'like "::1/128"'),  # 127.0.0.0/8 says nothing about IPv6
        ({"url": "https://169.254.169.254/latest/meta-data"}, "url", "169.254.169.254 is a link-local address"),
        (
            {"url": "http://127.1:8080/h"},
            "url",
            "127.1 is read as the IPv4 address 127.0.0.1: write the address as a.b.c.d",
        ),
        ({"url": "http://2130706433/h"}, "url", "write the address as a.b.c.d"),
        ({"url": "http://0x7f.0.0.1/h"}, "url", "write the address as a.b.c.d"),
        ({"url": "http://0177.0.0.1/h"}, "url", "write the address as a.b.c.d"),
        (
            {"url": "https://user:pass@hooks.example/h", "headers": {"Authorization": "Bearer t"}},
            "headers",
            "an authorization header cannot go with user info in the url",
        ),
    ],
)
async def test_create_refuses_undeliverable_targets(h, body: dict[str, Any], field: str, said: str):
    code, problem = await api(h, "POST", "/v1/endpoints", {"name": "shop", **body})
    assert code == 422, problem
    assert [e["field"] for e in problem["errors"]] == [field]
    assert said in problem["errors"][0]["message"] and said in problem["detail"]
    assert await names(h) == []  # nothing created


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/h",
        "http://127.8.9.10:9/h",
        "http://localhost:9/h",
        "http://api.localhost:9/h",
        "https://user:pass@hooks.example/h",
        "https://hooks.example/h?token=t",
        "https://8.8.8.8/h",
    ],
)
async def test_create_accepts_what_allow_networks_covers_and_names(h, url: str):
    created = await create(h, url)
    assert created["url"] == url


async def test_create_accepts_a_private_address_once_allow_networks_covers_it(tmp_path, make_harness, clock):
    config = make_config(tmp_path, [], delivery={"allow_networks": ["127.0.0.0/8", "10.0.0.0/8", "::1/128"]})
    h = await make_harness(config, clock=clock)
    assert (await create(h, "https://10.0.0.5/h"))["url"] == "https://10.0.0.5/h"
    assert (await create(h, "https://[::1]:8443/h", name="v6"))["url"] == "https://[::1]:8443/h"


async def test_patch_refuses_an_undeliverable_url_and_changes_nothing(h):
    await create(h, "http://127.0.0.1:9/h")
    for url, said in [("https://192.168.1.5/h", "delivery.allow_networks"), ("http://127.1/h", "a.b.c.d")]:
        code, problem = await api(h, "PATCH", "/v1/endpoints/shop", {"url": url, "events": ["x.*"]})
        assert code == 422 and problem["errors"][0]["field"] == "url" and said in problem["detail"]
    shown = (await api(h, "GET", "/v1/endpoints/shop"))[1]
    assert shown["url"] == "http://127.0.0.1:9/h" and shown["events"] == ["*"]


@pytest.mark.parametrize(
    ("created", "patch", "field"),
    [
        # A new url with user info against the stored authorization header:
        (
            {"url": "https://hooks.example/h", "headers": {"authorization": "Bearer t"}},
            {"url": "https://u:p@hooks.example/h"},
            "url",
        ),
        # A new authorization header against the stored url with user info:
        (
            {"url": "https://u:p@hooks.example/h", "headers": {"x-shop": "7"}},
            {"headers": {"Authorization": "Bearer t"}},
            "headers",
        ),
        # Both in the patch:
        (
            {"url": "https://hooks.example/h"},
            {"url": "https://u:p@hooks.example/h", "headers": {"authorization": "Bearer t"}},
            "headers",
        ),
    ],
)
async def test_patch_refuses_user_info_with_an_authorization_header(h, created, patch, field):
    before = await create(h, created.pop("url"), **created)
    code, problem = await api(h, "PATCH", "/v1/endpoints/shop", patch)
    assert code == 422, problem
    assert [e["field"] for e in problem["errors"]] == [field]
    assert "authorization header cannot go with user info" in problem["detail"]
    after = (await api(h, "GET", "/v1/endpoints/shop"))[1]
    assert (after["url"], after["headers"]) == (before["url"], before["headers"])


async def test_patch_may_resolve_the_conflict_by_changing_both(h):
    await create(h, "https://hooks.example/h", headers={"authorization": "Bearer t"})
    code, updated = await api(h, "PATCH", "/v1/endpoints/shop", {"url": "https://u:p@hooks.example/h", "headers": {}})
    assert code == 200 and updated["url"] == "https://u:p@hooks.example/h" and updated["headers"] == {}


async def test_an_endpoint_stored_with_a_refused_url_still_loads_and_is_refused_at_attempt_time(h):
    # Stored before the url was checked at creation: it loads, and each attempt says why it fails.
    stored = Endpoint(
        id="", name="old", url="https://10.0.0.5/h", events=("*",), secrets=(SigningSecret(new_secret()),)
    )
    created = await h.services.store.create_endpoint(stored, h.clock.now())
    h.services.registry.put(created)
    assert await names(h) == ["old"]
    event_id = await post(h)
    assert await h.step() == 1
    (row,) = await deliveries_of(h.services.store, event_id)
    assert row.state == "pending" and "refused to connect to 10.0.0.5" in row.last_error
    # It can be fixed through the API, with a url that is allowed.
    code, fixed = await api(h, "PATCH", "/v1/endpoints/old", {"url": "https://hooks.example/h"})
    assert code == 200 and fixed["url"] == "https://hooks.example/h"
