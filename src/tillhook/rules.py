"""Pure checks of endpoint fields, over plain values; endpoint_rules.py builds the config's and
the admin API's field types from them."""

from __future__ import annotations

import base64
import binascii
import re
import secrets as _secrets
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from tillhook.targets import AddressPolicy, Network, target_refusal

SECRET_PREFIX = "whsec_"
ENDPOINT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_CATEGORY_CHARS = 64
MAX_DESCRIPTION_CHARS = 500
# Spaces inside only: categories are compared exactly, and "Kitchen " would be a second one.
CATEGORY_PATTERN = r"^[A-Za-z0-9_.-]([A-Za-z0-9 _.-]{0,62}[A-Za-z0-9_.-])?$"
_CATEGORY = re.compile(CATEGORY_PATTERN.removesuffix("$") + r"\Z")  # see _SEGMENT on \Z
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# \Z, not $: in Python's re, $ also matches before a final newline.
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+\Z")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
# Header values: visible characters, spaces and tabs (RFC 9110 field-value); no controls.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "user-agent",
        "host",
        "connection",
        "transfer-encoding",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def check_secret(secret: str) -> str:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("must start with whsec_ followed by base64 (leave it out to have one generated)")
    try:
        key = secret_key(secret)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"must hold 24 to 64 bytes of key after whsec_, not {len(key)}")
    return secret


def check_patterns(patterns: list[str]) -> list[str]:
    if not patterns:
        raise ValueError('must name at least one event pattern; use ["*"] for all events')
    for pattern in patterns:
        if pattern == "*":
            continue
        segments = pattern.split(".")
        for index, segment in enumerate(segments):
            if segment == "**" and index != len(segments) - 1:
                raise ValueError(
                    f"{pattern!r} is not a pattern: ** may only end one (like transaction.**, one or"
                    " more segments); use * for exactly one segment in the middle"
                )
            if segment not in ("*", "**") and not _SEGMENT.match(segment):
                raise ValueError(
                    f"{pattern!r} is not a pattern: dot-separated names of letters, digits, _ or -,"
                    " where * matches one segment and a final ** one or more"
                )
    return patterns


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid HTTP header name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"{name!r} is set by tillhook itself and cannot be overridden")
        if _CONTROL.search(value):
            raise ValueError(f"the value of {name!r} may not contain line breaks or other control characters")
    return headers


def check_url(url: str, allow_http: bool, allow_networks: Sequence[Network]) -> str:
    """A URL that can be delivered to under delivery.allow_http and delivery.allow_networks.
    The same policy judges the address actually connected to, so both checks agree."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an absolute https:// URL with a host")
    if parts.scheme == "http" and not allow_http:
        raise ValueError("http:// is refused; use https://, or set delivery.allow_http = true for LAN receivers")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    refusal = target_refusal(parts.hostname, AddressPolicy(allow_networks))
    if refusal is not None:
        raise ValueError(refusal)
    return url


def check_url_with_headers(url: str, headers: Mapping[str, str]) -> None:
    """aiohttp sends user info as Basic authorization and refuses a second authorization."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return  # the url's own check says what is wrong with it
    if "@" in netloc and any(name.lower() == "authorization" for name in headers):
        raise ValueError(
            "an authorization header cannot go with user info in the url (user:password@), which is"
            " sent as Basic authorization: keep one of the two"
        )


# The first segment of tillhook's own events (alerts, the test ping).
OWN_PREFIX = "tillhook"


def pattern_matches(pattern: str, event_type: str) -> bool:
    """`*` alone matches every type, and so does `**`; elsewhere `*` matches exactly one
    segment and a final `**` one or more. tillhook's own types (`tillhook.…`) match only a
    pattern that names `tillhook` as its first segment: an endpoint built for the shop's
    events never receives alerts it did not ask for."""
    have = event_type.split(".")
    own = have[0] == OWN_PREFIX
    if pattern in ("*", "**"):
        return not own
    want = pattern.split(".")
    if own and want[0] != OWN_PREFIX:
        return False
    if want[-1] == "**":
        want = want[:-1]
        if len(have) <= len(want):
            return False
        have = have[: len(want)]
    elif len(want) != len(have):
        return False
    return all(w == "*" or w == h for w, h in zip(want, have, strict=True))


def subscribes(patterns: tuple[str, ...], event_type: str) -> bool:
    return any(pattern_matches(p, event_type) for p in patterns)


PRESET_NAMES = ("slack", "discord", "teams", "google-chat")
SIGNATURE_SCHEMES = ("sha256-hex",)


def check_preset(preset: str) -> str:
    if preset not in PRESET_NAMES:
        raise ValueError(f"{preset!r} is not a preset; choose one of {', '.join(PRESET_NAMES)}")
    return preset


def check_signature_header(header: str) -> str:
    """A header name tillhook does not set itself."""
    if not _HEADER_NAME.match(header):
        raise ValueError(f"{header!r} is not a valid HTTP header name")
    if header.lower() in RESERVED_HEADERS:
        raise ValueError(f"{header!r} is set by tillhook itself; name another header")
    return header


def check_signature_apart(header: str, headers: Mapping[str, str]) -> None:
    """The extra signature's header is not also one of the endpoint's static headers."""
    if any(name.lower() == header.lower() for name in headers):
        raise ValueError(f"{header!r} is also one of the endpoint's headers; keep one of the two")


def check_extra_signature(header: str, scheme: str, headers: Mapping[str, str]) -> None:
    """A header of its own: neither one tillhook sets nor one of the endpoint's static headers."""
    check_signature_header(header)
    check_signature_apart(header, headers)
    if scheme not in SIGNATURE_SCHEMES:
        raise ValueError(f"scheme {scheme!r} is not known; the one scheme is sha256-hex")


def check_category(category: str) -> str:
    """A name endpoints are grouped under, compared exactly (case and all)."""
    if not _CATEGORY.match(category):
        raise ValueError(
            f"must be 1 to {MAX_CATEGORY_CHARS} letters, digits, spaces, _ . or -, not starting or ending"
            " with a space, like Loyalty or kitchen-displays"
        )
    return category


def check_description(description: str) -> str:
    """A line of text a person reads beside the endpoint's name."""
    if not description.strip():
        raise ValueError("must not be empty; leave it out (or null) for none")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ValueError(f"must have at most {MAX_DESCRIPTION_CHARS} characters")
    if _ANY_CONTROL.search(description):
        raise ValueError("must not hold control characters (such as a line break or a tab): one line of text")
    return description
