"""Credentials of an endpoint's URL kept out of what tillhook writes."""

from __future__ import annotations

import base64

import pytest

from tillhook.redact import Scrubber, origin, origins_only, redact_url


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://a.example/hooks", "https://a.example/hooks"),
        ("https://user:pass@a.example/h", "https://***@a.example/h"),
        ("https://user@a.example:8443/h", "https://***@a.example:8443/h"),
        ("https://u:p%40ss@a.example/h", "https://***@a.example/h"),
        ("https://a.example/h?token=s3cret", "https://a.example/h?token=***"),
        ("https://a.example/h?a=1&b=two&c=", "https://a.example/h?a=***&b=***&c="),  # an empty value hides nothing
        ("https://a.example/h?s3cret", "https://a.example/h?***"),  # a bare value
        ("https://a.example/h?", "https://a.example/h?"),
        ("https://u:p@[::1]:8443/h?k=v#part", "https://***@[::1]:8443/h?k=***#part"),
        ("http://u:p@127.0.0.1:9/h?token=t", "http://***@127.0.0.1:9/h?token=***"),
        # Too broken for urlsplit, still redacted:
        ("http://user:secret@[::1/h?token=t", "http://***@[::1/h?token=***"),
        ("not a url?key=v", "not a url?key=***"),
        ("", ""),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


URL = "https://user:secret-pass@hooks.example:8443/in?token=secret-token&v=1"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        # The URL as given, as an error message quotes it:
        (f"invalid URL: {URL}", "invalid URL: https://***@hooks.example:8443/in?token=***&v=***"),
        # As aiohttp prints the request URL (user info moved to an authorization header):
        (
            "400, message='Bad status line', url='https://hooks.example:8443/in?token=secret-token&v=1'",
            "400, message='Bad status line', url='https://hooks.example:8443/in?token=***&v=***'",
        ),
        # Each part alone, and the Basic credential aiohttp derives from the user info:
        ("password secret-pass refused", "password *** refused"),
        ("user:secret-pass", "***"),
        ("Basic " + base64.b64encode(b"user:secret-pass").decode(), "Basic ***"),
        # The host stays readable even where a short query value appears inside it:
        (
            "cannot connect to hooks.example:8443: Connect call failed ('10.0.0.1', 8443)",
            "cannot connect to hooks.example:8443: Connect call failed ('10.0.0.1', 8443)",
        ),
        # A short value is masked inside a quoted URL, and left alone elsewhere:
        ("timed out after 15s", "timed out after 15s"),
        ("nothing secret here", "nothing secret here"),
        ("", ""),
    ],
)
def test_scrubber(text: str, scrubbed: str) -> None:
    assert Scrubber(URL)(text) == scrubbed


@pytest.mark.parametrize(
    ("url", "text", "scrubbed"),
    [
        # Percent-encoded in the URL, decoded in the message, or the reverse:
        ("https://someone:p%40ss%20w@a.example/h", "login p@ss w failed", "login *** failed"),
        ("https://a.example/h?t=a%2Fb", "url=https://a.example/h?t=a/b", "url=https://a.example/h?t=***"),
        ("https://a.example/h?t=a b", "url=https://a.example/h?t=a%20b", "url=https://a.example/h?t=***"),
        ("https://a.example/h?t=ab+cd", "token ab cd", "token ***"),
        # Any URL quoted in the text is redacted whole, short values too:
        ("https://a.example/h?k=v1", "url='https://a.example/h?k=v1&x=1'", "url='https://a.example/h?k=***&x=***'"),
        # A URL without credentials leaves every text alone:
        ("https://a.example/h", "cannot connect to a.example:443", "cannot connect to a.example:443"),
        # The host is kept, whatever the credentials:
        (
            "https://example:pw@example.com/h",
            "cannot connect to example.com:443 as example",
            "cannot connect to example.com:443 as ***",
        ),
        ("https://EXAMPLE.com/h?k=example", "cannot connect to example.com:443", "cannot connect to example.com:443"),
    ],
)
def test_scrubber_variants(url: str, text: str, scrubbed: str) -> None:
    assert Scrubber(url)(text) == scrubbed


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXX", "https://hooks.slack.com/…"),
        ("https://discord.com/api/webhooks/123/token-abc", "https://discord.com/…"),
        ("https://user:pw@h.example:8443/in?token=t", "https://h.example:8443/…"),
        ("https://h.example", "https://h.example"),
        ("https://h.example/", "https://h.example"),
    ],
)
def test_origin_says_where_an_endpoint_goes_and_nothing_of_its_path(url: str, said: str) -> None:
    assert origin(url) == said


BASIC = base64.b64encode(b"till-user:till-pass-77").decode()
HEADERS = (("authorization", "Bearer bt-0123456789"), ("x-api-key", "key-shop-42"), ("x-short", "abc"))


@pytest.mark.parametrize(
    ("headers", "text", "scrubbed"),
    [
        # A receiver echoing the request's headers, as sent and as a JSON reply quotes them:
        (HEADERS, "got authorization: Bearer bt-0123456789", "got authorization: ***"),
        (HEADERS, '{"x-api-key": "key-shop-42"}', '{"x-api-key": "***"}'),
        # An Authorization-style value's token alone, whatever its scheme's case:
        (HEADERS, "token bt-0123456789 is not known", "token *** is not known"),
        ((("Authorization", "token tk-abcdef"),), "TOKEN tk-abcdef", "TOKEN ***"),
        # A Basic one's credentials, encoded and decoded, together and apart:
        ((("authorization", f"Basic {BASIC}"),), f"header Basic {BASIC}", "header ***"),
        ((("authorization", f"Basic {BASIC}"),), f"bad {BASIC}", "bad ***"),
        ((("authorization", f"Basic {BASIC}"),), "user till-user, password till-pass-77", "user ***, password ***"),
        ((("authorization", f"Basic {BASIC}"),), "till-user:till-pass-77", "***"),
        # A value with quotes, as JSON escapes it:
        ((("x-signature", 'a"quoted"b'),), '{"x-signature": "a\\"quoted\\"b"}', '{"x-signature": "***"}'),
        # A value under four characters is left alone, like a short query value:
        (HEADERS, "abc is fine", "abc is fine"),
        # A value that is not Basic base64 is masked as it is, nothing decoded:
        ((("authorization", "Basic not!base64"),), "Basic not!base64 refused", "*** refused"),
        ((), "nothing to mask", "nothing to mask"),
    ],
)
def test_scrubber_masks_the_static_headers_values(
    headers: tuple[tuple[str, str], ...], text: str, scrubbed: str
) -> None:
    assert Scrubber("https://a.example/h", headers)(text) == scrubbed


PLAIN = (("x-version", "2024"), ("x-tenant", "shop"), ("accept", "application/json"), ("x-request-source", "pos"))


@pytest.mark.parametrize(
    ("headers", "text", "scrubbed"),
    [
        # A plain header's value stays readable, inside other words and alone:
        (PLAIN, "since 2024-01-02 for shopify", "since 2024-01-02 for shopify"),
        (PLAIN, "x-tenant: shop, x-version: 2024", "x-tenant: shop, x-version: 2024"),
        (PLAIN, '{"accept": "application/json"}', '{"accept": "application/json"}'),
        # A header named for a credential is masked whatever its value, four characters too:
        ((("x-shop-key", "k9z4"),), "x-shop-key: k9z4", "x-shop-key: ***"),
        ((("Cookie", "sid=abcd"),), "cookie sid=abcd", "cookie ***"),
        ((("X-Session", "s-77"),), "session s-77 unknown", "session *** unknown"),
        # An Authorization-style value under any name, its token alone too:
        ((("x-forward", "Bearer fw-0123"),), "fw-0123 refused", "*** refused"),
        # A plain header's value that looks like a token is masked where it stands alone:
        ((("x-tenant", "tn4f9c2e7a1b3d5e8f0a"),), "tenant tn4f9c2e7a1b3d5e8f0a unknown", "tenant *** unknown"),
        ((("x-tenant", "tn4f9c2e7a1b3d5e8f0a"),), '{"x-tenant":"tn4f9c2e7a1b3d5e8f0a"}', '{"x-tenant":"***"}'),
        # ... not inside a longer word, nor a long value without digits:
        ((("x-tenant", "tn4f9c2e7a1b3d5e8f0a"),), "tn4f9c2e7a1b3d5e8f0a99", "tn4f9c2e7a1b3d5e8f0a99"),
        ((("x-app", "my-shop-application-name"),), "app my-shop-application-name", "app my-shop-application-name"),
    ],
)
def test_scrubber_masks_credentials_and_leaves_plain_header_values_readable(
    headers: tuple[tuple[str, str], ...], text: str, scrubbed: str
) -> None:
    assert Scrubber("https://a.example/h", headers)(text) == scrubbed


@pytest.mark.parametrize(
    ("headers", "text", "scrubbed"),
    [
        # As PHP's json_encode writes it, "/" escaped:
        ((("authorization", "Bearer ab/cd+ef="),), '{"auth":"Bearer ab\\/cd+ef="}', '{"auth":"***"}'),
        ((("authorization", "Bearer ab/cd+ef="),), '{"token":"ab\\/cd+ef="}', '{"token":"***"}'),
        # Percent-encoded, as a query string or a form quotes it:
        ((("authorization", "Bearer ab/cd+ef="),), "token=ab%2Fcd%2Bef%3D&x=1", "token=***&x=1"),
        ((("authorization", "Bearer ab/cd+ef="),), "h=Bearer+ab%2Fcd%2Bef%3D", "h=***"),
        ((("authorization", "Bearer ab/cd+ef="),), "h=Bearer%20ab%2Fcd%2Bef%3D", "h=***"),
        ((("x-api-key", "k/9 z"),), "key=k%2F9+z", "key=***"),
    ],
)
def test_scrubber_masks_a_header_value_escaped_or_percent_encoded(
    headers: tuple[tuple[str, str], ...], text: str, scrubbed: str
) -> None:
    assert Scrubber("https://a.example/h", headers)(text) == scrubbed


def test_a_scrubbers_reach_is_its_longest_credential() -> None:
    assert Scrubber("https://a.example/h").reach == 0
    assert Scrubber("https://a.example/h?t=abcd", (("x-api-key", "key-shop-42"),)).reach == len("key-shop-42")


def test_scrubber_masks_the_url_and_the_headers_together() -> None:
    scrub = Scrubber(URL, HEADERS)
    text = "url='https://hooks.example:8443/in?token=secret-token&v=1' sent key-shop-42 to hooks.example"
    assert scrub(text) == "url='https://hooks.example:8443/in?token=***&v=***' sent *** to hooks.example"


SLACK = "https://hooks.slack.com/services/T0SLACK01/B0SLACK02/sl4ckT0kenXXXXXXXXXXXXX"
DISCORD = "https://discord.com/api/webhooks/1234567890/d1sc0rdT0ken-abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize(
    ("url", "text", "shown"),
    [
        # Every URL quoted is cut to its origin, the endpoint's and any other:
        (
            SLACK,
            f"400, message='Bad status line', url='{SLACK}'",
            "400, message='Bad status line', url='https://hooks.slack.com/…'",
        ),
        (SLACK, "moved to https://elsewhere.example:8443/x/y?z=1", "moved to https://elsewhere.example:8443/…"),
        (None, f"url='{DISCORD}'", "url='https://discord.com/…'"),
        # The path alone, as a receiver's reply echoes it, with or without its leading slash:
        (SLACK, "no hook at /services/T0SLACK01/B0SLACK02/sl4ckT0kenXXXXXXXXXXXXX", "no hook at /…"),
        (DISCORD, "api/webhooks/1234567890/d1sc0rdT0ken-abcdefghijklmnopqrstuvwxyz unknown", "… unknown"),
        # A segment long enough to be a token, alone:
        (DISCORD, '{"message": "d1sc0rdT0ken-abcdefghijklmnopqrstuvwxyz is invalid"}', '{"message": "… is invalid"}'),
        # The short segments around it, and a short path, stay:
        (DISCORD, "cannot connect to discord.com:443 for webhooks", "cannot connect to discord.com:443 for webhooks"),
        ("https://a.example/x", "HTTP 404 for /x", "HTTP 404 for /x"),
        # The host stays, even where the path is part of it:
        (
            "https://hooks.example/hook",
            "cannot connect to hooks.example:443 for /hook",
            "cannot connect to hooks.example:443 for /…",
        ),
        # The ids beside the token, alone, and the path in another case:
        (SLACK, "workspace T0SLACK01, channel B0SLACK02", "workspace …, channel …"),
        (SLACK, "no hook at /services/t0slack01/b0slack02/sl4ckt0kenxxxxxxxxxxxxx", "no hook at /…"),
        (SLACK, "no hook at /services/t0slack01", "no hook at /services/…"),
        # Percent-encoded or JSON-escaped:
        (SLACK, '{"path":"services\\/T0SLACK01\\/B0SLACK02\\/sl4ckT0kenXXXXXXXXXXXXX"}', '{"path":"…"}'),
        # Whatever the endpoint (deleted, or its URL changed since), a token-like segment of a path:
        (
            None,
            "no hook at /services/T0SLACK01/B0SLACK02/sl4ckT0kenXXXXXXXXXXXXX",
            "no hook at /services/T0SLACK01/B0SLACK02/…",
        ),
        (
            "https://a.example/new",
            "no hook at /api/webhooks/123/d1sc0rdT0ken-abcdefgh",
            "no hook at /api/webhooks/123/…",
        ),
        # ... not a long word, nor a long number, nor a token not after a "/":
        (
            None,
            "see /docs/troubleshooting-webhooks and /id/12345678901234567890",
            "see /docs/troubleshooting-webhooks and /id/12345678901234567890",
        ),
        (None, "event msg_2a8f3c9e1b7d4f60 failed", "event msg_2a8f3c9e1b7d4f60 failed"),
        (SLACK, "", ""),
    ],
)
def test_origins_only_leaves_a_viewer_no_path(url: str | None, text: str, shown: str) -> None:
    assert origins_only(text, url) == shown
