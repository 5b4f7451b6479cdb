"""GET /v1/endpoints/{id}/secret: how the receiver's developer reads the secrets an endpoint
signs with, including the generated one of a config-managed endpoint."""

from __future__ import annotations

from tests.integration.conftest import make_config
from tests.integration.test_admin_api import api, post
from tillhook.rules import new_secret


async def test_a_config_managed_endpoints_generated_secret_verifies_its_deliveries(
    tmp_path, receivers, make_harness, clock
):
    receiver = await receivers()
    config = make_config(tmp_path, [{"name": "from-file", "url": receiver.url, "events": ["sale.*"]}])
    h = await make_harness(config, clock=clock)
    code, body = await api(h, "GET", "/v1/endpoints/from-file/secret")
    assert code == 200, body
    assert body == {
        "endpoint_id": h.endpoint_id("from-file"),
        "name": "from-file",
        "secret": body["secret"],
        "previous": [],
    }
    assert body["secret"].startswith("whsec_")
    receiver.secret = body["secret"]
    await post(h, "sale.completed", total=3)
    await h.step()
    assert [r.verified for r in receiver.received] == [True]
    # By id too, like every endpoint route.
    assert (await api(h, "GET", f"/v1/endpoints/{body['endpoint_id']}/secret"))[1] == body


async def test_a_rotated_out_secret_is_listed_until_its_grace_ends(tmp_path, receivers, make_harness, clock):
    receiver = await receivers()
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    first = new_secret()
    code, _ = await api(h, "POST", "/v1/endpoints", {"name": "shop", "url": receiver.url, "secret": first})
    assert code == 201
    code, rotated = await api(h, "POST", "/v1/endpoints/shop/rotate-secret", {"grace": "1h"})
    assert code == 200
    code, body = await api(h, "GET", "/v1/endpoints/shop/secret")
    assert code == 200 and body["secret"] == rotated["secret"]
    assert body["previous"] == [{"secret": first, "expires_at": rotated["previous_secret_expires_at"]}]
    clock.advance(3601)
    code, body = await api(h, "GET", "/v1/endpoints/shop/secret")
    assert code == 200 and body["previous"] == []


async def test_an_unknown_endpoint_is_a_404(tmp_path, make_harness, clock):
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    code, body = await api(h, "GET", "/v1/endpoints/nope/secret")
    assert code == 404 and "nope" in body["detail"]
