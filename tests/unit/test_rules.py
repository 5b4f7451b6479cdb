"""Endpoint field rules shared by the config file and the admin API."""

from __future__ import annotations

import base64
import ipaddress
import re

import pytest
from pydantic import ValidationError

from tillhook.config import EndpointConfig
from tillhook.rules import (
    ENDPOINT_NAME_PATTERN,
    RESERVED_HEADERS,
    SECRET_PREFIX,
    check_category,
    check_description,
    check_headers,
    check_patterns,
    check_secret,
    check_url,
    check_url_with_headers,
    new_secret,
    pattern_matches,
    secret_key,
    subscribes,
)

net = ipaddress.ip_network


def secret_of(n_bytes: int) -> str:
    return SECRET_PREFIX + base64.b64encode(bytes(range(n_bytes))).decode()


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("*", "a", True),  # "*" alone: everything, however many segments
        ("*", "transaction.completed", True),
        ("*", "a.b.c.d.e", True),
        ("transaction.completed", "transaction.completed", True),
        ("transaction.completed", "transaction.refunded", False),
        ("transaction.completed", "Transaction.completed", False),  # case matters
        ("transaction.*", "transaction.completed", True),
        ("transaction.*", "transaction", False),  # "*" is exactly one segment, never zero
        ("transaction.*", "transaction.card.completed", False),  # nor two
        ("transaction.*", "transactions.completed", False),
        ("transaction.*", "xtransaction.completed", False),
        ("*.completed", "transaction.completed", True),
        ("*.completed", "order.completed", True),
        ("*.completed", "completed", False),
        ("*.completed", "a.b.completed", False),
        ("*.*", "a.b", True),
        ("*.*", "a", False),
        ("*.*", "a.b.c", False),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.c", False),
        ("a.*.c", "a.b.x.c", False),
        ("customer.created", "customer.created.v2", False),  # no prefix matching
        ("customer", "customer.created", False),
        # A final ** is one or more segments, never zero.
        ("transaction.**", "transaction.completed", True),
        ("transaction.**", "transaction.card.completed", True),
        ("transaction.**", "transaction", False),
        ("transaction.**", "transactions.completed", False),
        ("*.**", "a.b", True),
        ("*.**", "a.b.c.d", True),
        ("*.**", "a", False),
        ("a.*.**", "a.b.c", True),
        ("a.*.**", "a.b", False),
        ("**", "a", True),  # alone, like * alone: everything
        ("**", "a.b.c", True),
        # tillhook's own events: only through a first segment written as tillhook.
        ("*", "tillhook.endpoint.failing", False),
        ("**", "tillhook.endpoint.failing", False),
        ("*", "tillhook.ping", False),
        ("*.*", "tillhook.ping", False),
        ("*.*.*", "tillhook.endpoint.failing", False),
        ("*.**", "tillhook.endpoint.failing", False),
        ("*.endpoint.failing", "tillhook.endpoint.failing", False),
        ("*", "tillhook", False),
        ("tillhook.**", "tillhook.endpoint.failing", True),
        ("tillhook.**", "tillhook.backlog.high", True),
        ("tillhook.**", "tillhook.ping", True),
        ("tillhook.**", "tillhook", False),
        ("tillhook.endpoint.*", "tillhook.endpoint.failing", True),
        ("tillhook.endpoint.*", "tillhook.delivery.failed", False),
        ("tillhook.*.failed", "tillhook.delivery.failed", True),
        ("tillhook.delivery.failed", "tillhook.delivery.failed", True),
        ("tillhook.ping", "tillhook.ping", True),
        ("Tillhook.*", "Tillhook.ping", True),  # case matters: not tillhook's own
        ("*", "Tillhook.ping", True),
        ("*.tillhook", "shop.tillhook", True),  # only the first segment is tillhook's
        ("*", "tillhooks.ping", True),
    ],
)
def test_pattern_matches(pattern: str, event_type: str, matches: bool) -> None:
    assert check_patterns([pattern]) == [pattern]  # every row is a valid pattern
    assert pattern_matches(pattern, event_type) is matches


@pytest.mark.parametrize(
    ("patterns", "event_type", "matches"),
    [
        (("transaction.*", "customer.created"), "customer.created", True),
        (("transaction.*", "customer.created"), "transaction.voided", True),
        (("transaction.*", "customer.created"), "customer.deleted", False),
        (("*",), "tillhook.ping", False),
        (("*", "tillhook.endpoint.*"), "tillhook.endpoint.failing", True),
        (("*", "tillhook.endpoint.*"), "tillhook.backlog.high", False),
        (("*", "tillhook.endpoint.*"), "sale.completed", True),
        ((), "anything", False),
    ],
)
def test_subscribes_to_any_of(patterns: tuple[str, ...], event_type: str, matches: bool) -> None:
    assert subscribes(patterns, event_type) is matches


@pytest.mark.parametrize(
    "patterns",
    [
        ["*"],
        ["a"],
        ["a.b", "c.*"],
        ["*.*.*"],
        ["A-Z_09.x-y"],
        ["transaction.*", "customer.created"],
        ["**"],
        ["tillhook.**"],
        ["a.*.**"],
        ["tillhook.endpoint.*", "*"],
    ],
)
def test_good_patterns(patterns: list[str]) -> None:
    assert check_patterns(patterns) == patterns


@pytest.mark.parametrize(
    "patterns",
    [
        [],  # nothing subscribed is a mistake; ["*"] is how to say everything
        [""],
        ["a."],
        [".a"],
        ["a..b"],
        ["a b"],
        ["a*"],
        ["a**"],
        ["**.a"],  # ** only at the end
        ["a.**.b"],
        ["a.**.**"],
        ["*.**.*"],
        ["transaction.*ed"],
        ["a.#"],
        ["a", "b/c"],  # one bad pattern spoils the list
        ["é"],
    ],
)
def test_bad_patterns(patterns: list[str]) -> None:
    with pytest.raises(ValueError):
        check_patterns(patterns)


def test_a_double_star_before_the_end_is_refused_saying_where_it_may_go() -> None:
    with pytest.raises(ValueError, match=r"\*\* may only end one \(like transaction\.\*\*"):
        check_patterns(["transaction.**.completed"])


@pytest.mark.parametrize("n_bytes", [24, 32, 48, 64])
def test_secrets_of_24_to_64_bytes(n_bytes: int) -> None:
    secret = secret_of(n_bytes)
    assert check_secret(secret) == secret
    assert len(secret_key(secret)) == n_bytes


@pytest.mark.parametrize(
    ("secret", "said"),
    [
        (secret_of(23), "not 23"),
        (secret_of(65), "not 65"),
        ("whsec_", "not 0"),
        (secret_of(32).removeprefix(SECRET_PREFIX), "whsec_"),  # the prefix is required
        ("WHSEC_" + secret_of(32).removeprefix(SECRET_PREFIX), "whsec_"),
        ("whsk_" + secret_of(32).removeprefix(SECRET_PREFIX), "whsec_"),
        (secret_of(32).rstrip("="), "base64"),  # 32 bytes need one "=" of padding
        ("whsec_" + "!" * 44, "base64"),
        ("whsec_" + base64.urlsafe_b64encode(b"\xff" * 32).decode(), "base64"),  # url-safe alphabet is not it
        ("whsec_ " + secret_of(32).removeprefix(SECRET_PREFIX), "base64"),
    ],
)
def test_bad_secrets(secret: str, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        check_secret(secret)


def test_new_secret_round_trips() -> None:
    seen = set()
    for _ in range(200):
        secret = new_secret()
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret), secret
        assert check_secret(secret) == secret
        assert len(secret_key(secret)) == 32  # the contract: 32 random bytes
        seen.add(secret)
    assert len(seen) == 200


@pytest.mark.parametrize("name", sorted(RESERVED_HEADERS))
@pytest.mark.parametrize("spell", [str, str.upper, str.title])
def test_reserved_headers_are_refused_in_any_case(name: str, spell: object) -> None:
    header = spell(name)  # type: ignore[operator]
    with pytest.raises(ValueError, match="set by tillhook itself"):
        check_headers({"x-api-key": "k", header: "v"})


def test_reserved_headers_cover_what_tillhook_sets() -> None:
    assert {"content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature"} <= RESERVED_HEADERS


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "k"},
        {"X-Api-Key": "k", "Authorization": "Bearer t"},
        {"x-empty": ""},
        {"x!#$%&'*+.^_`|~": "v"},
    ],
)
def test_good_headers(headers: dict[str, str]) -> None:
    assert check_headers(headers) == headers


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ({"": "v"}, "not a valid HTTP header name"),
        ({"x api": "v"}, "not a valid HTTP header name"),
        ({"x:api": "v"}, "not a valid HTTP header name"),
        ({"x-é": "v"}, "not a valid HTTP header name"),
        ({"x-a": "one\r\nx-b: injected"}, "line breaks"),  # header injection
        ({"x-a": "one\nx-b: injected"}, "line breaks"),
        ({"x-a": "one\r"}, "line breaks"),
    ],
)
def test_bad_headers(headers: dict[str, str], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        check_headers(headers)


@pytest.mark.parametrize("value", ["a\x00b", "a\x01", "\x1b[31m", "a\x7fb", "a\x0bb"])
def test_control_characters_in_header_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        check_headers({"x-a": value})


@pytest.mark.parametrize(
    ("check", "value"), [("header", "x-a\n"), ("pattern", "order\n"), ("pattern", "order.completed\n")]
)
def test_a_trailing_newline_is_refused(check: str, value: str) -> None:
    with pytest.raises(ValueError):
        check_headers({value: "v"}) if check == "header" else check_patterns([value])


def test_a_tab_and_non_ascii_text_are_valid_header_values() -> None:
    # RFC 9110 field values may hold HTAB and obs-text; aiohttp sends both.
    assert check_headers({"x-a": "a\tb", "x-b": "café €"}) == {"x-a": "a\tb", "x-b": "café €"}


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example",
        "https://a.example/hooks?x=1",
        "https://a.example:8443/h",
        "https://93.184.215.14/h",
        "https://[2606:4700::1111]/h",
        "HTTPS://A.EXAMPLE/h",
        "https://u:p@a.example/h",
    ],
)
@pytest.mark.parametrize("allow_http", [False, True])
def test_https_urls_are_always_fine(url: str, allow_http: bool) -> None:
    assert check_url(url, allow_http, []) == url


@pytest.mark.parametrize("url", ["http://a.example/h", "http://192.168.1.5:8080/h", "HTTP://a.example"])
def test_http_urls_need_allow_http(url: str) -> None:
    with pytest.raises(ValueError, match="allow_http"):
        check_url(url, allow_http=False, allow_networks=[net("192.168.0.0/16")])
    assert check_url(url, allow_http=True, allow_networks=[net("192.168.0.0/16")]) == url


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://", "with a host"),
        ("https:///path", "with a host"),
        ("//a.example/h", "with a host"),
        ("a.example/h", "with a host"),
        ("ftp://a.example/h", "with a host"),
        ("ws://a.example/h", "with a host"),
        ("file:///etc/passwd", "with a host"),
        ("https://a.example:99999/h", "invalid port"),
        ("https://a.example:port/h", "invalid port"),
    ],
)
@pytest.mark.parametrize("allow_http", [False, True])
def test_bad_urls(url: str, said: str, allow_http: bool) -> None:
    with pytest.raises(ValueError, match=said):
        check_url(url, allow_http, [])


_HINT = " to delivery.allow_networks, like "


@pytest.mark.parametrize(
    ("url", "said"),
    [
        # Literal addresses of the classes the connect-time policy refuses:
        (
            "https://127.0.0.1/h",
            "127.0.0.1 is a loopback address: add a network covering it" + _HINT + '"127.0.0.1/32"',
        ),
        ("https://127.8.9.10:8443/h", "loopback address: add a network covering it" + _HINT + '"127.8.9.10/32"'),
        ("https://[::1]/h", "::1 is a loopback address: add a network covering it" + _HINT + '"::1/128"'),
        ("https://[::ffff:127.0.0.1]/h", '"127.0.0.1/32"'),  # judged as the IPv4 inside
        ("https://169.254.169.254/latest", "169.254.169.254 is a link-local address"),
        ("https://[fe80::1%25eth0]/h", "link-local address"),
        ("https://10.0.0.5/h", "10.0.0.5 is a private address: add a network covering it" + _HINT + '"10.0.0.5/32"'),
        ("https://192.168.1.5/h", "192.168.1.5 is a private address"),
        ("https://[fd00::1]/h", "private address"),
        ("https://0.0.0.0/h", "unspecified address"),
        ("https://224.0.0.1/h", "multicast address"),
        ("https://127.0.0.1./h", "loopback address"),  # a final dot changes nothing
        # Names that never leave the machine:
        ("https://localhost/h", "localhost is a loopback name: add a network covering 127.0.0.1" + _HINT),
        ("https://LOCALHOST:8443/h", "loopback name"),
        ("https://localhost./h", "loopback name"),
        ("https://api.localhost/h", "api.localhost is a loopback name"),
        # IPv4 addresses in a spelling only resolvers understand: refused however allowed.
        ("https://127.1/h", "127.1 is read as the IPv4 address 127.0.0.1: write the address as a.b.c.d"),
        ("https://2130706433/h", "is read as the IPv4 address 127.0.0.1"),
        ("https://0x7f.0.0.1/h", "is read as the IPv4 address 127.0.0.1"),
        ("https://0177.0.0.1/h", "is read as the IPv4 address 127.0.0.1"),
        ("https://0x7f000001/h", "is read as the IPv4 address 127.0.0.1"),
        ("https://127.0.0.01/h", "is read as the IPv4 address 127.0.0.1"),
        ("https://010.8.8.8/h", "is read as the IPv4 address 8.8.8.8"),  # octal 010 is 8
        ("https://1.2.3/h", "is read as the IPv4 address 1.2.0.3"),
        ("https://12345/h", "is read as the IPv4 address 0.0.48.57"),
    ],
)
def test_undeliverable_targets_are_refused_naming_the_setting(url: str, said: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_url(url, True, [])
    assert said in str(refused.value)


@pytest.mark.parametrize(
    ("url", "networks"),
    [
        ("https://127.0.0.1/h", ["127.0.0.0/8"]),
        ("https://[::ffff:127.0.0.1]/h", ["127.0.0.1/32"]),
        ("https://[::1]/h", ["::1/128"]),
        ("https://10.0.0.5/h", ["10.0.0.0/8"]),
        ("http://192.168.1.5:8080/h", ["192.168.1.0/24"]),
        ("https://169.254.169.254/h", ["169.254.0.0/16"]),
        # localhost counts as covered when 127.0.0.1 or ::1 is:
        ("https://localhost/h", ["127.0.0.0/8"]),
        ("https://localhost/h", ["127.0.0.1/32"]),
        ("https://localhost/h", ["::1/128"]),
        ("https://api.localhost/h", ["127.0.0.0/8"]),
        # Names are judged on the address connected to, not here:
        ("https://printer.lan/h", []),
        ("https://a.example/h", []),
        ("https://127.0.0.1.nip.io/h", []),
    ],
)
def test_covered_by_allow_networks_or_a_name(url: str, networks: list[str]) -> None:
    assert check_url(url, True, [net(n) for n in networks]) == url


@pytest.mark.parametrize("url", ["https://127.1/h", "https://2130706433/h", "https://0x7f.0.0.1/h"])
def test_non_canonical_ipv4_is_refused_even_inside_allow_networks(url: str) -> None:
    with pytest.raises(ValueError, match=r"write the address as a\.b\.c\.d"):
        check_url(url, True, [net("0.0.0.0/0")])


def test_localhost_is_refused_when_only_other_networks_are_allowed() -> None:
    with pytest.raises(ValueError, match="loopback name"):
        check_url("https://localhost/h", True, [net("192.168.1.0/24"), net("127.0.0.2/32")])


@pytest.mark.parametrize(
    ("url", "headers", "ok"),
    [
        ("https://user:pass@a.example/h", {"authorization": "Bearer x"}, False),
        ("https://user:pass@a.example/h", {"Authorization": "Bearer x"}, False),
        ("https://user@a.example/h", {"AUTHORIZATION": "Bearer x"}, False),
        ("https://user:pass@a.example/h", {"x-api-key": "k"}, True),
        ("https://a.example/h", {"authorization": "Bearer x"}, True),
        ("https://a.example/h?token=t", {"authorization": "Bearer x"}, True),
        ("https://a.example/h?email=a@b.example", {"authorization": "Bearer x"}, True),  # @ in the query
        ("https://[::1/h", {"authorization": "Bearer x"}, True),  # the url's own check names it
    ],
)
def test_user_info_and_an_authorization_header_conflict(url: str, headers: dict[str, str], ok: bool) -> None:
    if ok:
        check_url_with_headers(url, headers)
    else:
        with pytest.raises(ValueError, match="authorization header cannot go with user info"):
            check_url_with_headers(url, headers)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("loyalty", True),
        ("a", True),
        ("A.b_c-9", True),
        ("9lives", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("-a", False),
        (".a", False),
        ("a b", False),
        ("a/b", False),
        ("é", False),
        ("a\n", False),
    ],
)
def test_endpoint_names(name: str, ok: bool) -> None:
    # Names are checked by pydantic (Rust regex, where "$" is the very end) in both the config
    # file and the API; the config model is the one reachable without a server.
    try:
        EndpointConfig(name=name, url="https://a.example")
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert accepted is ok
    assert ENDPOINT_NAME_PATTERN.startswith("^") and ENDPOINT_NAME_PATTERN.endswith("$")


@pytest.mark.parametrize("category", ["Loyalty", "kitchen-displays", "a", "Web shop 2", "v1.2_x", "x" * 64])
def test_good_categories(category: str) -> None:
    assert check_category(category) == category


@pytest.mark.parametrize(
    "category",
    ["", " ", " Loyalty", "Loyalty ", "x" * 65, "Loyalty/App", "Küche", "a\tb", "two\nlines", "Loyalty\n"],
)
def test_bad_categories_say_what_a_category_is(category: str) -> None:
    with pytest.raises(ValueError, match="must be 1 to 64 letters, digits, spaces"):
        check_category(category)


@pytest.mark.parametrize("description", ["Points for the app", "x" * 500, "Ümlauts, € and emoji 🧾 are text"])
def test_good_descriptions(description: str) -> None:
    assert check_description(description) == description


@pytest.mark.parametrize(
    ("description", "said"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 501, "at most 500 characters"),
        ("two\nlines", "control characters"),
        ("tab\there", "control characters"),
        ("nul\x00", "control characters"),
        ("c1\x85", "control characters"),
    ],
)
def test_bad_descriptions(description: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        check_description(description)
