"""Who may call what: the one rule behind the API and the dashboard, as a table."""

from __future__ import annotations

import pytest

from tillhook.api.auth import allowed
from tillhook.api.routes import ROUTES

READ_ONLY = "the viewer token may only read; use the admin token to change anything"
NO_SECRETS = "the viewer token may not read secrets; use the admin token"
INGEST_ONLY = "the ingest token may only POST /v1/events; use the admin token here"


@pytest.mark.parametrize(
    ("role", "method", "pattern", "refusal"),
    [
        # The admin token may do everything.
        ("admin", "GET", "/v1/endpoints/{id}/secret", None),
        ("admin", "POST", "/v1/endpoints", None),
        ("admin", "DELETE", "/v1/endpoints/{id}", None),
        ("admin", "POST", "/v1/events", None),
        # The viewer token reads every route...
        ("viewer", "GET", "/v1/status", None),
        ("viewer", "GET", "/v1/endpoints", None),
        ("viewer", "GET", "/v1/endpoints/{id}", None),
        ("viewer", "GET", "/v1/deliveries/{id}", None),
        ("viewer", "GET", "/v1/events", None),
        ("viewer", "GET", "/metrics", None),
        ("viewer", "HEAD", "/v1/status", None),
        ("viewer", "GET", "/nope", None),  # then a 404, as for the admin token
        ("viewer", "POST", "/v1/endpoints/{id}/preview", None),  # stores and sends nothing
        # ...but never a secret, and changes nothing.
        ("viewer", "GET", "/v1/endpoints/{id}/secret", NO_SECRETS),
        ("viewer", "POST", "/v1/endpoints", READ_ONLY),
        ("viewer", "PATCH", "/v1/endpoints/{id}", READ_ONLY),
        ("viewer", "DELETE", "/v1/endpoints/{id}", READ_ONLY),
        ("viewer", "POST", "/v1/endpoints/{id}/rotate-secret", READ_ONLY),
        ("viewer", "POST", "/v1/deliveries/{id}/retry", READ_ONLY),
        ("viewer", "POST", "/v1/events", READ_ONLY),
        ("viewer", "PUT", "/v1/status", READ_ONLY),
        ("viewer", "OPTIONS", "/v1/status", READ_ONLY),
        # The ingest token only posts events.
        ("ingest", "POST", "/v1/events", None),
        ("ingest", "GET", "/v1/events", INGEST_ONLY),
        ("ingest", "GET", "/v1/status", INGEST_ONLY),
        ("ingest", "POST", "/v1/endpoints", INGEST_ONLY),
        ("ingest", "GET", "/v1/endpoints/{id}/secret", INGEST_ONLY),
        # A role the rule does not know gets nothing.
        ("guest", "GET", "/v1/status", "no route is open to the role 'guest'"),
    ],
)
def test_allowed(role: str, method: str, pattern: str, refusal: str | None) -> None:
    assert allowed(role, method, pattern) == refusal


def test_the_viewer_may_read_every_route_but_the_secret_and_change_none() -> None:
    readable = {(r.method, r.path) for r in ROUTES if not r.public and allowed("viewer", r.method, r.path) is None}
    gets = {(r.method, r.path) for r in ROUTES if not r.public and r.method == "GET"}
    previews = {("POST", "/v1/endpoints/{id}/preview")}
    assert readable == gets - {("GET", "/v1/endpoints/{id}/secret")} | previews
