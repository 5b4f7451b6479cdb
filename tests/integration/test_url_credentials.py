"""Credentials of an endpoint (its URL's user info and query values, its static headers'
values) never reach the attempt log, whatever the HTTP library's error text quotes or the
receiver echoes."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.integration.conftest import VIEWER_TOKEN, make_config
from tests.integration.test_admin_api import api, create, post
from tests.integration.test_auth import call
from tests.support import FakeClock, deliveries_of, status
from tillhook.delivery import Deliverer, make_session
from tillhook.models import ClaimedDelivery, Endpoint, SigningSecret
from tillhook.rules import new_secret
from tillhook.targets import AddressPolicy

SECRETS = ("secret-pass", "secret-token", "secret%2Fcode", "secret/code")
CREDENTIALS = "user:secret-pass@"
QUERY = "?token=secret-token&code=secret%2Fcode"


def assert_clean(text: str | None) -> None:
    assert text is not None
    for secret in SECRETS:
        assert secret not in text, text


async def echo_url(request: web.Request, n: int) -> web.StreamResponse:
    return web.Response(status=404, text=f"no hook at {request.path_qs} for {request.headers.get('authorization')}")


async def attempt(
    url: str, headers: tuple[tuple[str, str], ...] = (), limit: int = 512
) -> tuple[str | None, str | None]:
    policy = AddressPolicy([ipaddress.ip_network("127.0.0.0/8")])
    session = make_session(policy)
    try:
        deliverer = Deliverer(session, policy, FakeClock(), timeout_s=5.0, allow_http=True, response_body_limit=limit)
        endpoint = Endpoint(
            id="ep_1", name="shop", url=url, events=("*",), secrets=(SigningSecret(new_secret()),), headers=headers
        )
        delivery = ClaimedDelivery(
            id=1, event_id="msg_1", endpoint_id="ep_1", attempts=0, first_attempt_at=None, body=b"{}"
        )
        result = await deliverer.attempt(endpoint, delivery)
    finally:
        await session.close()
    return result.error, result.response_excerpt


async def test_a_connection_error_names_the_host_without_the_credentials(closed_port: int):
    error, _ = await attempt(f"http://{CREDENTIALS}127.0.0.1:{closed_port}/h{QUERY}")
    assert_clean(error)
    assert f"127.0.0.1:{closed_port}" in error


async def test_an_error_quoting_the_request_url_is_scrubbed(not_http: int):
    error, _ = await attempt(f"http://{CREDENTIALS}127.0.0.1:{not_http}/h{QUERY}")
    assert_clean(error)
    assert f"127.0.0.1:{not_http}/h?token=***&code=***" in error  # still says where it went


async def test_an_invalid_url_is_quoted_redacted():
    # Only a URL stored before the checks existed can be this broken.
    error, _ = await attempt(f"http://{CREDENTIALS}[::1/h{QUERY}")
    assert_clean(error)
    assert error == "invalid URL: http://***@[::1/h?token=***&code=***"


async def test_a_receiver_echoing_the_url_does_not_put_it_in_the_excerpt(receivers):
    receiver = await receivers(behaviour=echo_url)
    error, excerpt = await attempt(f"http://{CREDENTIALS}127.0.0.1:{receiver.port}/h{QUERY}")
    assert error is None
    assert_clean(excerpt)
    assert excerpt.startswith("no hook at /h?token=***&code=***")


async def test_the_attempt_log_and_endpoint_health_hold_no_credential(tmp_path, make_harness, clock, not_http):
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    created = await create(h, f"http://{CREDENTIALS}127.0.0.1:{not_http}/h{QUERY}")
    event_id = await post(h)
    assert await h.step() == 1
    (row,) = await deliveries_of(h.services.store, event_id)
    code, delivery = await api(h, "GET", f"/v1/deliveries/{row.id}")
    assert code == 200
    (attempt_out,) = delivery["attempt_log"]
    for text in (attempt_out["error"], delivery["last_error"]):
        assert_clean(text)
        assert "127.0.0.1" in text
    code, status = await api(h, "GET", "/v1/status")
    (health,) = [e for e in status["endpoints"] if e["id"] == created["id"]]
    assert_clean(health["last_failure_reason"])


BASIC = base64.b64encode(b"till-user:till-pass-5e1f").decode()
HEADERS = (
    ("authorization", f"Basic {BASIC}"),
    ("x-api-key", "key-shop-9c4d27a1"),
    ("x-tenant", "shop"),  # no credential: left readable
)
HEADER_SECRETS = (BASIC, "key-shop-9c4d27a1", "till-user", "till-pass-5e1f")


async def echo_headers(request: web.Request, n: int) -> web.StreamResponse:
    """A receiver that refuses the request and says why with every header it got, the Basic
    credentials decoded too."""
    got = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
    decoded = base64.b64decode(BASIC).decode()
    return web.Response(status=401, text=f"not these ({decoded}):\n{got}")


@pytest.fixture
async def echo_in_status_line() -> AsyncIterator[int]:
    """A loopback server that answers with a broken status line holding the request's header
    lines: aiohttp's error then quotes them."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = [line for line in head.split(b"\r\n")[1:] if line.lower().startswith((b"authorization", b"x-"))]
        writer.write(b"HTTP/1.1 9xx " + b" ".join(lines) + b"\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def assert_no_header_value(text: str | None) -> None:
    assert text is not None
    for secret in HEADER_SECRETS:
        assert secret not in text, text


async def test_a_receiver_echoing_the_headers_does_not_put_their_values_in_the_excerpt(receivers):
    receiver = await receivers(behaviour=echo_headers)
    error, excerpt = await attempt(f"http://127.0.0.1:{receiver.port}/h", HEADERS)
    assert receiver.received[0].headers["x-api-key"] == "key-shop-9c4d27a1"  # sent as it is
    assert error is None
    assert_no_header_value(excerpt)
    assert "x-api-key: ***" in excerpt and "x-tenant: shop" in excerpt
    assert "authorization: ***" in excerpt.lower() and "(***)" in excerpt  # the decoded user:password


async def test_an_error_quoting_the_reply_holds_no_header_value(echo_in_status_line: int):
    error, excerpt = await attempt(f"http://127.0.0.1:{echo_in_status_line}/h", HEADERS)
    assert_no_header_value(error)
    assert "X-Api-Key: ***" in error or "x-api-key: ***" in error.lower(), error
    assert excerpt is None


async def test_the_stored_attempt_holds_no_header_value(tmp_path, make_harness, clock, receivers):
    receiver = await receivers(behaviour=echo_headers)
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    await create(h, receiver.url, name="echo", headers=dict(HEADERS))
    event_id = await post(h)
    assert await h.step() == 1
    (row,) = await deliveries_of(h.services.store, event_id)
    code, delivery = await api(h, "GET", f"/v1/deliveries/{row.id}")
    assert code == 200 and delivery["last_status"] == 401
    (attempt_out,) = delivery["attempt_log"]
    assert_no_header_value(attempt_out["response_excerpt"])
    assert "x-api-key: ***" in attempt_out["response_excerpt"].lower()


async def test_a_credential_crossing_the_excerpts_limit_is_masked_whole(receivers):
    # 36 characters, then the key from the 38th: the limit of 40 cuts it after "key".
    receiver = await receivers(behaviour=status(401, "a" * 36 + " key-shop-9c4d27a1 is not known"))
    _, excerpt = await attempt(f"http://127.0.0.1:{receiver.port}/h", HEADERS, limit=40)
    assert excerpt == "a" * 36 + " ***"
    _, excerpt = await attempt(f"http://127.0.0.1:{receiver.port}/h{QUERY}", limit=40)
    assert excerpt == "a" * 36 + " key"  # no such credential: cut as it is


SLACK_PATH = "/services/T0SLACK01/B0SLACK02/sl4ckT0kenXXXXXXXXXXXXX"


async def viewed_and_stored(h, delivery_id: int) -> tuple[str, str]:
    """The attempt's excerpt as the viewer and as the admin read it."""
    code, viewed = await call(h, VIEWER_TOKEN, "GET", f"/v1/deliveries/{delivery_id}")
    assert code == 200, viewed
    code, stored = await api(h, "GET", f"/v1/deliveries/{delivery_id}")
    assert code == 200, stored
    return viewed["attempt_log"][0]["response_excerpt"], stored["attempt_log"][0]["response_excerpt"]


async def test_the_viewer_reads_no_header_value_stored_before_the_header_was_set(
    tmp_path, make_harness, clock, receivers
):
    # Stored before the endpoint had the header (as before header values were masked at all):
    receiver = await receivers(behaviour=status(401, "bad key key-shop-9c4d27a1"))
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    await create(h, receiver.url, name="echo")
    (row,) = await deliveries_of(h.services.store, await post(h))
    assert await h.step() == 1
    code, _ = await api(h, "PATCH", "/v1/endpoints/echo", {"headers": {"x-api-key": "key-shop-9c4d27a1"}})
    assert code == 200
    assert await viewed_and_stored(h, row.id) == ("bad key ***", "bad key key-shop-9c4d27a1")


async def test_the_viewer_reads_no_path_token_of_a_changed_or_deleted_endpoint(
    tmp_path, make_harness, clock, receivers
):
    receiver = await receivers(behaviour=status(404, f"no hook at {SLACK_PATH}"))
    h = await make_harness(make_config(tmp_path, []), clock=clock)
    await create(h, f"http://127.0.0.1:{receiver.port}{SLACK_PATH}", name="chat")
    (row,) = await deliveries_of(h.services.store, await post(h))
    assert await h.step() == 1
    assert (await viewed_and_stored(h, row.id))[0] == "no hook at /…"
    code, _ = await api(h, "PATCH", "/v1/endpoints/chat", {"url": f"http://127.0.0.1:{receiver.port}/in"})
    assert code == 200
    shown = "no hook at /services/T0SLACK01/B0SLACK02/…"
    assert await viewed_and_stored(h, row.id) == (shown, f"no hook at {SLACK_PATH}")
    code, _ = await api(h, "DELETE", "/v1/endpoints/chat")
    assert code == 204
    assert await viewed_and_stored(h, row.id) == (shown, f"no hook at {SLACK_PATH}")
