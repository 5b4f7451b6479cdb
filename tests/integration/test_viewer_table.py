"""The viewer token against every operation /openapi.json describes, and a viewer session
against every page the dashboard routes: what the document marks `x-tillhook-viewer` answers
as it does for the admin, everything else is a 403 that changes nothing, and no reply (body
or header) holds a secret of the seeded endpoints or a token, nor the path of a chat
webhook's URL, nor a static header's value a receiver echoed. The table is the document's
and the router's, so a new route is in it from the start, and a path parameter nobody
seeded fails the test instead of being left out."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.integration.conftest import ADMIN_TOKEN, INGEST_TOKEN, VIEWER_TOKEN, Harness, make_config
from tillhook.catalogue import EventTypeSpec
from tillhook.redact import MASK, origin

READ_ONLY = "the viewer token may only read; use the admin token to change anything"
NO_SECRETS = "the viewer token may not read secrets; use the admin token"
SEEDED_TYPE = "sale.completed"
SECRET_ROUTE = ("GET", "/v1/endpoints/{id}/secret")
PREVIEW_ROUTE = ("POST", "/v1/endpoints/{id}/preview")
# The credentials an endpoint may hold, each long and unlike anything else in a reply.
SHOP_URL_USER, SHOP_URL_PASSWORD, SHOP_URL_TOKEN = "shop-user-5d1e", "pw-shop-7f3a9c21", "tk-shop-0b8e44d2"
SHOP_HEADERS = {"x-api-key": "key-shop-6a2f90c3", "x-till-token": "hv-shop-4e0a7b15"}
DOWN_URL_KEY, DOWN_BEARER = "qk-down-28f6b3d9", "hdr-down-3c7d18e5"
DOWN_HEADERS = {"authorization": f"Bearer {DOWN_BEARER}"}
GARBLED_USER, GARBLED_PASSWORD, GARBLED_SIG = "garbled-user-1d9c", "pw-garbled-5b7e02fa", "sg-garbled-c3a8e611"
# Chat webhooks, whose token is their URL's path, to a receiver that echoes the path and the
# headers in its refusal, and to one whose error quotes the URL.
SLACK_TOKEN = "sl4ck-2b9e71c0aa4f6d83e5c1"
SLACK_PATH = f"services/T0SLACK01/B0SLACK02/{SLACK_TOKEN}"
ECHO_USER, ECHO_PASSWORD, ECHO_KEY = "echo-user-70c3", "pw-echo-1f6b93d2", "ek-slack-8d2c41f7"
ECHO_BASIC = base64.b64encode(f"{ECHO_USER}:{ECHO_PASSWORD}".encode()).decode()
ECHO_HEADERS = {"authorization": f"Basic {ECHO_BASIC}", "x-echo-key": ECHO_KEY}
DISCORD_TOKEN = "d1sc0rd-7e3b1f9a0c4d2e8b6a5f90c1d2e3f4a5"
DISCORD_PATH = f"api/webhooks/1234567890123456789/{DISCORD_TOKEN}"


async def echo_request(request: web.Request, n: int) -> web.StreamResponse:
    """A receiver that refuses, saying what it got: the path, every header, the Basic
    credentials decoded."""
    basic = base64.b64decode(ECHO_BASIC).decode()
    return web.Response(status=403, text=f"no hook at {request.path} for {basic}; got {dict(request.headers)}")


@dataclass
class Seeded:
    h: Harness
    endpoints: dict[str, str]  # name -> id
    secrets: list[str]  # every value no viewer may see
    event_id: str
    delivery_ids: list[int]


async def call(
    h: Harness, method: str, path: str, *, token: str | None = None, body: Any = None, cookie: str | None = None
) -> tuple[int, str, dict[str, str]]:
    headers = {"Origin": str(h.server.make_url("")).rstrip("/")}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if cookie is not None:
        headers["Cookie"] = f"tillhook_session={cookie}"
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    async with h.session.request(
        method, h.server.make_url(path), data=data, headers=headers, allow_redirects=False
    ) as response:
        return response.status, await response.text(), dict(response.headers)


def leaked(secrets: list[str], text: str, headers: dict[str, str]) -> list[str]:
    shown = text + "\n" + json.dumps(headers)
    return [s for s in secrets if s in shown]


@pytest.fixture
async def seeded(
    tmp_path: Path, receivers: Any, make_harness: Any, clock: Any, closed_port: int, not_http: int
) -> Seeded:
    """Endpoints holding every kind of credential: "shop" (user info and a token in its url,
    two headers, an extra signature, a rotated secret still in its grace), delivered to,
    "down" (a key in its url, an authorization header) whose attempt failed, "garbled", whose
    attempt failed with an error that quotes its url, credentials and all, "slack" (a token in
    its path, two headers) refused by a receiver that echoes the path and the headers, and
    "discord" (a token in its path) whose error quotes its url."""
    receiver = await receivers()
    echo = await receivers(behaviour=echo_request)
    host = receiver.url.split("//", 1)[1].split("/", 1)[0]
    config = make_config(tmp_path, []).model_copy(
        update={
            "event_types": [
                EventTypeSpec.model_validate(
                    {
                        "name": SEEDED_TYPE,
                        "description": "A sale at the till",
                        "schema": {"type": "object", "properties": {"total": {"type": "number"}}},
                        "example": {"total": 12.5},
                    }
                )
            ]
        }
    )
    h = await make_harness(config, clock=clock)
    specs = {
        "shop": {
            "url": f"http://{SHOP_URL_USER}:{SHOP_URL_PASSWORD}@{host}/hook?token={SHOP_URL_TOKEN}",
            "headers": SHOP_HEADERS,
            "extra_signature": {"header": "x-hub-signature-256"},
        },
        "down": {
            "url": f"http://127.0.0.1:{closed_port}/x?key={DOWN_URL_KEY}",
            "headers": DOWN_HEADERS,
        },
        "garbled": {"url": f"http://{GARBLED_USER}:{GARBLED_PASSWORD}@127.0.0.1:{not_http}/x?sig={GARBLED_SIG}"},
        "slack": {"url": f"http://127.0.0.1:{echo.port}/{SLACK_PATH}", "headers": ECHO_HEADERS},
        "discord": {"url": f"http://127.0.0.1:{not_http}/{DISCORD_PATH}"},
    }
    endpoints, secrets = {}, []
    for name, spec in specs.items():
        code, text, _ = await call(h, "POST", "/v1/endpoints", token=ADMIN_TOKEN, body={"name": name, **spec})
        assert code == 201, text
        created = json.loads(text)
        endpoints[name] = created["id"]
        secrets.append(created["secret"])
    code, text, _ = await call(
        h, "POST", f"/v1/endpoints/{endpoints['shop']}/rotate-secret", token=ADMIN_TOKEN, body={"grace": "24h"}
    )
    assert code == 200, text
    secrets.append(json.loads(text)["secret"])
    code, text, _ = await call(h, "POST", "/v1/events", token=INGEST_TOKEN, body={"type": SEEDED_TYPE, "data": {}})
    assert code == 202, text
    assert await h.step() == 5
    await h.services.alerts.wait_idle()
    code, text, _ = await call(h, "GET", "/v1/deliveries", token=ADMIN_TOKEN)
    deliveries = json.loads(text)["data"]
    assert sorted(d["state"] for d in deliveries) == ["delivered", *["pending"] * 4], deliveries
    assert echo.received[0].headers["x-echo-key"] == ECHO_KEY  # sent as it is, masked where stored
    down = next(d for d in deliveries if d["endpoint_id"] == endpoints["down"])
    assert "cannot connect" in (down["last_error"] or ""), down
    garbled = next(d for d in deliveries if d["endpoint_id"] == endpoints["garbled"])
    assert f"sig={MASK}" in (garbled["last_error"] or ""), garbled  # the driver quotes the url, masked
    discord = next(d for d in deliveries if d["endpoint_id"] == endpoints["discord"])
    assert DISCORD_PATH in (discord["last_error"] or ""), discord  # the admin reads the path it quotes
    slack = next(d for d in deliveries if d["endpoint_id"] == endpoints["slack"])
    code, text, _ = await call(h, "GET", f"/v1/deliveries/{slack['id']}", token=ADMIN_TOKEN)
    (refused,) = json.loads(text)["attempt_log"]
    excerpt = refused["response_excerpt"] or ""
    assert SLACK_PATH in excerpt and f"'x-echo-key': '{MASK}'" in excerpt, excerpt  # stored masked, for all
    assert not [v for v in (ECHO_BASIC, ECHO_KEY, ECHO_USER, ECHO_PASSWORD) if v in excerpt], excerpt
    secrets += [SHOP_URL_USER, SHOP_URL_PASSWORD, SHOP_URL_TOKEN, *SHOP_HEADERS.values(), DOWN_URL_KEY, DOWN_BEARER]
    basic = base64.b64encode(f"{GARBLED_USER}:{GARBLED_PASSWORD}".encode()).decode()
    secrets += [GARBLED_USER, GARBLED_PASSWORD, GARBLED_SIG, basic, ADMIN_TOKEN, INGEST_TOKEN, VIEWER_TOKEN]
    secrets += [SLACK_TOKEN, SLACK_PATH, ECHO_BASIC, ECHO_KEY, ECHO_USER, ECHO_PASSWORD, DISCORD_TOKEN, DISCORD_PATH]
    return Seeded(h, endpoints, secrets, deliveries[0]["event_id"], [d["id"] for d in deliveries])


def path_values(s: Seeded) -> dict[tuple[str, str], list[str]]:
    """What fills each path parameter, by the collection it names: (segment before it, name)."""
    return {
        ("endpoints", "id"): list(s.endpoints.values()),
        ("endpoints", "name"): list(s.endpoints),  # the dashboard's pages
        ("events", "id"): [s.event_id],
        ("deliveries", "id"): [str(d) for d in s.delivery_ids],
        ("event-types", "name"): [SEEDED_TYPE],
    }


def filled(template: str, values: dict[tuple[str, str], list[str]]) -> list[str]:
    """Every path `template` stands for with the seeded values; an unknown parameter fails."""
    params = re.findall(r"([^/]+)/\{([^}]+)\}", template)
    if not params:
        return [template]
    ((collection, name),) = params  # every route has at most one
    if (collection, name) not in values:
        pytest.fail(f"{template}: nothing seeded for {{{name}}} of {collection}; add it to path_values()")
    return [template.replace(f"{{{name}}}", v) for v in values[(collection, name)]]


def bodies(s: Seeded) -> dict[tuple[str, str], Any]:
    """A body the admin token would have accepted, for each operation that takes one: a
    refused change is refused as itself, not as a malformed request."""
    return {
        ("POST", "/v1/events"): {"type": SEEDED_TYPE, "data": {"total": 1}},
        ("POST", "/v1/endpoints"): {"name": "third", "url": "http://127.0.0.1:9/x"},
        ("PATCH", "/v1/endpoints/{id}"): {"max_in_flight": 1, "headers": {}},
        ("POST", "/v1/endpoints/{id}/rotate-secret"): {"grace": "0s"},
        ("POST", "/v1/endpoints/{id}/replay"): {"since": "1h"},
        ("POST", "/v1/endpoints/{id}/test"): None,
        ("POST", "/v1/deliveries/retry"): {"endpoint": "down"},
        PREVIEW_ROUTE: {"event_id": s.event_id},
    }


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "patch", "delete", "head", "options")
    ]


async def snapshot(s: Seeded) -> dict[str, Any]:
    """Everything a change could touch, as the admin token reads it."""
    seen: dict[str, Any] = {}
    paths = ["/v1/endpoints", "/v1/deliveries", "/v1/events"]
    paths += [f"/v1/endpoints/{i}/secret" for i in s.endpoints.values()]
    for path in paths:
        code, text, _ = await call(s.h, "GET", path, token=ADMIN_TOKEN)
        assert code == 200, text
        seen[path] = json.loads(text)
    seen["counts"] = await s.h.services.store.count_by_state()
    return seen


async def sign_in_viewer(h: Harness) -> tuple[str, str]:
    """A viewer session through the sign-in form, and the form token its pages carry."""
    async with h.session.post(
        h.server.make_url("/ui/signin"),
        data={"token": VIEWER_TOKEN},
        headers={"Origin": str(h.server.make_url("")).rstrip("/")},
        allow_redirects=False,
    ) as response:
        assert response.status == 303, await response.text()
        cookie = response.cookies["tillhook_session"].value
    code, page, _ = await call(h, "GET", "/ui/endpoints", cookie=cookie)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert code == 200 and csrf is not None, page
    return cookie, csrf.group(1)


async def test_every_operation_answers_the_viewer_as_the_document_says_and_shows_no_secret(seeded: Seeded) -> None:
    s = seeded
    code, text, _ = await call(s.h, "GET", "/openapi.json")
    assert code == 200
    document = json.loads(text)
    table = operations(document)
    unmarked = [(m, p) for m, p, op in table if not isinstance(op.get("x-tillhook-viewer"), bool)]
    assert not unmarked, f"operations that do not say whether the viewer may call them: {unmarked}"
    # What the document allows the viewer, pinned: every read but the secret, and the preview.
    allowed = {(m, p) for m, p, op in table if op["x-tillhook-viewer"]}
    assert {(m, p) for m, p, _ in table if m == "GET"} - allowed == {SECRET_ROUTE}
    assert {(m, p) for m, p in allowed if m != "GET"} == {PREVIEW_ROUTE}

    values, given = path_values(s), bodies(s)
    cookie, _ = await sign_in_viewer(s.h)
    before = await snapshot(s)
    called = 0
    for method, template, operation in table:
        if operation.get("requestBody", {}).get("required") and (method, template) not in given:
            pytest.fail(f"{method} {template} needs a body: add one the admin would send to bodies()")
        body = given.get((method, template))
        for path in filled(template, values):
            where = f"{method} {path}"
            if "dashboard" in operation["tags"]:  # a page: it reads the session, not a token
                code, text, headers = await call(s.h, method, path, cookie=cookie)
            else:
                code, text, headers = await call(s.h, method, path, token=VIEWER_TOKEN, body=body)
            called += 1
            assert not leaked(s.secrets, text, headers), (where, leaked(s.secrets, text, headers), text)
            if operation["x-tillhook-viewer"]:
                ok = min(int(c) for c in operation["responses"] if c.startswith("2"))
                assert code == ok, (where, code, text)
            else:
                assert code == 403 and headers["Content-Type"].startswith("application/problem+json"), (where, text)
                detail = json.loads(text)["detail"]
                assert detail == (NO_SECRETS if (method, template) == SECRET_ROUTE else READ_ONLY), (where, detail)
    assert called >= len(table)
    await s.h.services.alerts.wait_idle()
    assert await snapshot(s) == before  # no refused call changed anything

    # The secrets are there to be found: the admin token reads them where the viewer's did not.
    shown = ""
    for endpoint_id in s.endpoints.values():
        for path in (f"/v1/endpoints/{endpoint_id}", f"/v1/endpoints/{endpoint_id}/secret"):
            shown += (await call(s.h, "GET", path, token=ADMIN_TOKEN))[1]
    found = [*s.secrets[:3], SHOP_URL_PASSWORD, SHOP_URL_TOKEN, DOWN_URL_KEY, SLACK_PATH, DISCORD_PATH]
    assert all(c in shown for c in found)
    assert all(v in shown for v in [*SHOP_HEADERS.values(), *DOWN_HEADERS.values(), *ECHO_HEADERS.values()])


async def test_the_viewer_sees_masks_where_the_admin_sees_credentials(seeded: Seeded) -> None:
    s = seeded
    shop = s.endpoints["shop"]
    code, text, _ = await call(s.h, "GET", f"/v1/endpoints/{shop}", token=VIEWER_TOKEN)
    shown = json.loads(text)
    assert code == 200 and shown["headers"] == dict.fromkeys(SHOP_HEADERS, MASK)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/…", shown["url"]), shown["url"]  # the origin only
    code, text, _ = await call(
        s.h, "POST", f"/v1/endpoints/{shop}/preview", token=VIEWER_TOKEN, body={"event_id": s.event_id}
    )
    request = json.loads(text)["request"]
    assert code == 200 and request["url"] == shown["url"]
    assert {name: request["headers"][name] for name in SHOP_HEADERS} == dict.fromkeys(SHOP_HEADERS, MASK)
    assert request["headers"]["webhook-signature"].startswith("v1,…")
    # A chat webhook's token is its path: neither the viewer token nor a viewer session sees it.
    cookie, _ = await sign_in_viewer(s.h)
    for name in ("slack", "discord"):
        endpoint_id = s.endpoints[name]
        admin_view = json.loads((await call(s.h, "GET", f"/v1/endpoints/{endpoint_id}", token=ADMIN_TOKEN))[1])
        assert admin_view["url"].endswith(SLACK_PATH if name == "slack" else DISCORD_PATH)  # as it is
        viewed = json.loads((await call(s.h, "GET", f"/v1/endpoints/{endpoint_id}", token=VIEWER_TOKEN))[1])
        assert viewed["url"] == origin(admin_view["url"]) and viewed["url"].endswith("/…"), viewed["url"]
        code, text, _ = await call(
            s.h, "POST", f"/v1/endpoints/{endpoint_id}/preview", token=VIEWER_TOKEN, body={"event_id": s.event_id}
        )
        assert code == 200 and json.loads(text)["request"]["url"] == viewed["url"]
        code, page, _ = await call(s.h, "GET", f"/ui/endpoints/{name}", cookie=cookie)
        assert code == 200 and f'<dd class="url">{viewed["url"]}</dd>' in page, page
    admin_preview = json.loads(
        (
            await call(
                s.h,
                "POST",
                f"/v1/endpoints/{s.endpoints['slack']}/preview",
                token=ADMIN_TOKEN,
                body={"event_id": s.event_id},
            )
        )[1]
    )
    assert admin_preview["request"]["url"].endswith(SLACK_PATH)  # the admin's preview as before


def dashboard_routes(app: web.Application) -> list[tuple[str, str]]:
    routes = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or isinstance(resource, web.StaticResource) or route.method == "HEAD":
            continue
        if resource.canonical == "/" or resource.canonical.startswith("/ui/"):
            routes.append((route.method, resource.canonical))
    return routes


# The pages refused to a viewer session on purpose: the edit form holds the values as they are.
VIEWER_REFUSED_PAGES = {"/ui/endpoints/{name}/edit"}
# The dashboard's posts a viewer session may make: they change nothing in the outbox.
VIEWER_POSTS = {"/ui/signout", "/ui/signin", "/ui/endpoints/{name}/preview"}


async def test_every_dashboard_page_shows_the_viewer_no_secret_and_refuses_every_change(seeded: Seeded) -> None:
    s = seeded
    values = path_values(s)
    cookie, csrf = await sign_in_viewer(s.h)
    routes = dashboard_routes(s.h.app)
    assert ("GET", "/ui/endpoints/{name}") in routes and ("POST", "/ui/endpoints/{name}/delete") in routes
    before = await snapshot(s)
    for method, template in routes:
        for path in filled(template, values):
            if method == "GET":
                code, page, headers = await call(s.h, "GET", path, cookie=cookie)
                assert code == (403 if template in VIEWER_REFUSED_PAGES else 200), (path, code, page)
                assert "data-readonly" in page or path == "/ui/signin", path
            elif template in VIEWER_POSTS:
                continue  # signing in and out, and the preview, are tried below
            else:
                form = {"csrf": csrf, "confirm": "yes", "since": "0", "until": "1e10", "name": "x", "url": "x"}
                async with s.h.session.post(
                    s.h.server.make_url(path),
                    data=form,
                    headers={
                        "Cookie": f"tillhook_session={cookie}",
                        "Origin": str(s.h.server.make_url("")).rstrip("/"),
                    },
                    allow_redirects=False,
                ) as response:
                    code, page, headers = response.status, await response.text(), dict(response.headers)
                assert code == 403 and "viewer token, which may only read" in page, (path, code, page)
            assert not leaked(s.secrets, page, headers), (path, leaked(s.secrets, page, headers))
    for name in s.endpoints:
        async with s.h.session.post(
            s.h.server.make_url(f"/ui/endpoints/{name}/preview"),
            data={"csrf": csrf, "event_id": s.event_id},
            headers={"Cookie": f"tillhook_session={cookie}", "Origin": str(s.h.server.make_url("")).rstrip("/")},
        ) as response:
            page = await response.text()
        assert response.status == 200 and 'id="preview-result"' in page, page
        assert not leaked(s.secrets, page, dict(response.headers)), (name, leaked(s.secrets, page, {}))
    await s.h.services.alerts.wait_idle()
    assert await snapshot(s) == before
