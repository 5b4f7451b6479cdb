"""One table of endpoint settings, judged by the config file ([[endpoints]]), by the admin API's
POST body and by its PATCH body: all three accept the same values, and refuse the same ones
naming the same field in the same words."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest

from tillhook.api.parsing import validate
from tillhook.api.schemas import EndpointIn, EndpointPatch
from tillhook.config import validate_config
from tillhook.endpoint_rules import url_policy
from tillhook.errors import ConfigError, InvalidInput

BASE = {"name": "shop", "url": "https://hooks.example.com/x"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LONG_URL = "https://hooks.example.com/" + "p" * (2048 - len("https://hooks.example.com/"))
OK = None

# Each row: the settings over BASE, then None (accepted) or the field refused and the start of
# its words. The words are what a person reads in check-config, a 422 and beside a form field.
TABLE: list[tuple[dict[str, Any], tuple[str, str] | None]] = [
    ({}, OK),
    # name: 1 to 64 of letters, digits, _ . -, said as such rather than as a regex
    ({"name": "x" * 64}, OK),
    ({"name": "x" * 65}, ("name", "must be 1 to 64 letters, digits, _ . or -")),
    ({"name": "bad name"}, ("name", "must be 1 to 64 letters, digits, _ . or -")),
    # url: absolute https with a host, at most 2048 characters, a public address here
    ({"url": LONG_URL}, OK),
    ({"url": LONG_URL + "p"}, ("url", "must have at most 2048 characters")),
    ({"url": "ftp://hooks.example.com/x"}, ("url", "must be an absolute https:// URL with a host")),
    ({"url": "http://hooks.example.com/x"}, ("url", "http:// is refused")),
    ({"url": "https://hooks.example.com:99999/x"}, ("url", "has an invalid port")),
    ({"url": "https://127.0.0.1/x"}, ("url", "127.0.0.1 is a loopback address")),
    # events: 1 to 100 patterns
    ({"events": ["sale.*"] * 100}, OK),
    ({"events": ["sale.*"] * 101}, ("events", "must have at most 100 items")),
    ({"events": []}, ("events", "must name at least one event pattern")),
    ({"events": ["a.**.b"]}, ("events", "'a.**.b' is not a pattern: ** may only end one")),
    ({"events": "sale.*"}, ("events", "must be an array")),
    # secret: whsec_ and 24 to 64 bytes of base64
    ({"secret": SECRET}, OK),
    ({"secret": "nope"}, ("secret", "must start with whsec_")),
    ({"secret": "whsec_AAAA"}, ("secret", "must hold 24 to 64 bytes of key after whsec_, not 3")),
    # max_in_flight: 1 to 1000
    ({"max_in_flight": 1000}, OK),
    ({"max_in_flight": 0}, ("max_in_flight", "must be at least 1")),
    ({"max_in_flight": 1001}, ("max_in_flight", "must be at most 1000")),
    ({"max_in_flight": 1.5}, ("max_in_flight", "must be a whole number, without a fractional part")),
    # rate_limit: more than 0, up to 100000 a second (the config took any number before)
    ({"rate_limit": 0.5}, OK),
    ({"rate_limit": 100000}, OK),
    ({"rate_limit": 0}, ("rate_limit", "must be more than 0")),
    ({"rate_limit": 100001}, ("rate_limit", "must be at most 100000")),
    ({"rate_limit": float("inf")}, ("rate_limit", "must be at most 100000")),
    # ordered: a real boolean, as delivery.allow_http
    ({"ordered": True}, OK),
    ({"ordered": "true"}, ("ordered", "must be true or false")),
    # headers: up to 50, valid names, none tillhook sets, no control characters
    ({"headers": {f"x-h{i}": "v" for i in range(50)}}, OK),
    ({"headers": {f"x-h{i}": "v" for i in range(51)}}, ("headers", "must have at most 50 entries")),
    ({"headers": {"Host": "y"}}, ("headers", "'Host' is set by tillhook itself")),
    ({"headers": {"bad name": "y"}}, ("headers", "'bad name' is not a valid HTTP header name")),
    ({"headers": {"x-a": "a\nb"}}, ("headers", "the value of 'x-a' may not contain line breaks")),
    (
        {"url": "https://user:pw@hooks.example.com/x", "headers": {"Authorization": "Bearer t"}},
        ("headers", "an authorization header cannot go with user info in the url"),
    ),
    # filter and transform: CEL, checked with the position of a mistake
    ({"filter": "data.amount > 100.0", "transform": '{"text": type}'}, OK),
    ({"filter": "data.amount >"}, ("filter", "line 1, column")),
    ({"transform": "amount"}, ("transform", "line 1, column 1")),
    # preset: one of the four
    ({"preset": "slack"}, OK),
    ({"preset": "slak"}, ("preset", "'slak' is not a preset")),
    # extra_signature: a header of its own, at most 128 characters, the one scheme
    ({"extra_signature": {"header": "x-hub-signature-256"}}, OK),
    ({"extra_signature": {"header": "webhook-id"}}, ("extra_signature.header", "'webhook-id' is set by tillhook")),
    ({"extra_signature": {"header": "x" * 129}}, ("extra_signature.header", "must have at most 128 characters")),
    (
        {"extra_signature": {"header": "X-Sig"}, "headers": {"x-sig": "1"}},
        ("extra_signature.header", "'X-Sig' is also one of the endpoint's headers"),
    ),
    ({"extra_signature": {"header": "x-sig", "scheme": "md5"}}, ("extra_signature.scheme", "must be one of")),
]


def config_says(settings: dict[str, Any]) -> list[str]:
    try:
        validate_config({"endpoints": [{**BASE, **settings}]}, "t.toml")
    except ConfigError as exc:
        return exc.errors
    return []


def api_says(model: type[EndpointIn] | type[EndpointPatch], body: dict[str, Any]) -> list[str]:
    """The API's errors in the config's form: a path under endpoints[0], a line a message line."""
    try:
        validate(model, body, "the body", context=url_policy(False, []))
    except InvalidInput as exc:
        return [f"endpoints[0].{e['field']}: {line}" for e in exc.errors or [] for line in e["message"].splitlines()]
    return []


def patchable(settings: dict[str, Any]) -> bool:
    return "secret" not in settings  # a secret changes by rotation only


@pytest.mark.parametrize(("settings", "refusal"), TABLE)
def test_the_config_and_the_api_agree(settings: dict[str, Any], refusal: tuple[str, str] | None) -> None:
    said = config_says(settings)
    assert api_says(EndpointIn, {**BASE, **settings}) == said
    if patchable(settings):
        assert api_says(EndpointPatch, settings) == said
    if refusal is None:
        assert said == []
    else:
        field, words = refusal
        assert said and all(line.startswith(f"endpoints[0].{field}: ") for line in said), said
        assert said[0].removeprefix(f"endpoints[0].{field}: ").startswith(words), said


def test_the_url_policy_is_the_delivery_section_s_in_both() -> None:
    url = "http://10.1.2.3/hook"
    lan = {"allow_http": True, "allow_networks": ["10.0.0.0/8"]}
    config = validate_config({"delivery": lan, "endpoints": [{"name": "lan", "url": url}]}, "t.toml")
    assert config.endpoints[0].url == url
    spec = validate(
        EndpointIn, {"name": "lan", "url": url}, "the body", context=url_policy(True, [ip_network("10.0.0.0/8")])
    )
    assert spec.url == url


@pytest.mark.parametrize("field", ["name", "url", "events", "headers", "ordered"])
def test_a_patch_may_not_null_what_needs_a_value(field: str) -> None:
    assert api_says(EndpointPatch, {field: None}) == [f"endpoints[0].{field}: may not be null"]


def test_the_source_names_an_unknown_key_in_its_own_terms() -> None:
    # The one difference, by design: a TOML file has keys, a JSON body has fields.
    assert config_says({"colour": 1}) == ["endpoints[0].colour: unknown key"]
    assert api_says(EndpointIn, {**BASE, "colour": 1}) == ["endpoints[0].colour: unknown field"]
