"""Credentials of an endpoint's URL kept out of what tillhook writes."""

from __future__ import annotations

import base64

import pytest

from tillhook.redact import Scrubber, origin, redact_url


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
