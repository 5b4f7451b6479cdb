"""Credentials of an endpoint (its URL's user info and query values, its static headers'
values) kept out of everything tillhook writes: logs, the attempt log, endpoint health; and
what a viewer reads of where an endpoint delivers: its origin only. Pure."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, unquote_plus

MASK = "***"
# RFC 3986, appendix B: splits any string, so a URL too broken to parse is still redacted.
_PARTS = re.compile(r"(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.DOTALL)


def redact_url(url: str) -> str:
    """`url` with its user info and every query value replaced by ***; scheme, host, port,
    path and query keys stay, so a message about it still says where it went."""
    scheme, authority, path, query, fragment = _split(url)
    out = "" if scheme is None else f"{scheme}:"
    if authority is not None:
        _, at, hostport = authority.rpartition("@")
        out += "//" + (f"{MASK}@" if at else "") + hostport
    out += path
    if query is not None:
        out += "?" + "&".join(_redact_param(param) for param in query.split("&"))
    if fragment is not None:
        out += "#" + fragment
    return out


def origin(url: str) -> str:
    """Scheme, host and port, then "/…" for the rest: what a message to somebody else (an
    alert) may say of where an endpoint delivers. Chat webhooks carry their token in the path
    (hooks.slack.com/services/T…/B…/token), which redact_url keeps."""
    scheme, authority, path, query, _ = _split(url)
    hostport = (authority or "").rpartition("@")[2]
    head = f"{scheme}://{hostport}" if scheme is not None else hostport
    return head + ("/…" if path.strip("/") or query else "")


def origins_only(text: str, url: str | None = None) -> str:
    """`text` as a viewer may read it: every URL it quotes cut to its origin, and the path of
    `url` (the endpoint's), wherever else it appears, and each of its segments long enough to
    be a token, replaced by "…". Applied to what is stored already scrubbed, so credentials of
    the user info and query are gone before; this takes the path, where chat webhooks keep
    theirs."""
    if not text:
        return text
    text = _QUOTED_URL.sub(lambda m: origin(m.group()), text)
    if url is None:
        return text
    pieces = _path_pieces(url)
    if not pieces:
        return text
    # The host stays readable even where the path is part of it ("/hook" of hooks.example).
    keep = _host_parts(url)
    pattern = "|".join(map(re.escape, sorted(pieces | keep, key=len, reverse=True)))
    return re.sub(pattern, lambda m: m.group() if m.group() in keep else "…", text)


# A path segment this long may be a token (Slack's is 24 characters, Discord's 68); the
# names around them ("services", "webhooks", "api") are shorter.
_TOKEN_SEGMENT = 16


def _path_pieces(url: str) -> set[str]:
    _, _, path, _, _ = _split(url)
    whole = path.strip("/")
    if len(whole) < _MIN_LONE_SECRET:
        return set()
    pieces = {whole, *(s for s in whole.split("/") if len(s) >= _TOKEN_SEGMENT)}
    found: set[str] = set()
    for piece in pieces:
        decoded = unquote(piece)
        found.update((piece, decoded, quote(decoded)))
    found.discard("")
    return found


def _redact_param(param: str) -> str:
    key, eq, value = param.partition("=")
    if not eq:
        return MASK if key else key  # a bare value, like "?s3cr3t"
    return f"{key}={MASK}" if value else param


def _split(url: str) -> tuple[str | None, str | None, str, str | None, str | None]:
    match = _PARTS.fullmatch(url)
    assert match is not None  # every part is optional: any string matches
    scheme, authority, path, query, fragment = match.groups()
    return scheme, authority, path, query, fragment


# Any URL quoted in a text, up to the quote, bracket or space that ends it.
_QUOTED_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# Credentials shorter than this are masked only where they stand inside a quoted URL:
# masking every "1" of "?v=1" would garble addresses and durations in the message.
_MIN_LONE_SECRET = 4


class Scrubber:
    """Replaces the credentials of one endpoint with *** wherever they appear in a text: those
    of its URL (an HTTP library's error message quotes the URL, decoded or re-encoded, or sends
    the user info as a Basic authorization) and its static headers' values (a receiver may
    echo the request's headers in its reply). Every URL quoted in the text is redacted whole
    when the URL holds a credential; then each credential of at least four characters is
    masked wherever else it appears. The host is kept even if a credential is part of it: the
    message must still say where the attempt went."""

    def __init__(self, url: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        in_url = _credentials(url)
        secrets = {s for s in in_url | _header_credentials(headers) if len(s) >= _MIN_LONE_SECRET}
        self._keep = _host_parts(url)
        tokens = sorted(secrets | self._keep, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, tokens))) if secrets else None
        self._url_has_credentials = bool(in_url)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._url_has_credentials:
            text = _QUOTED_URL.sub(lambda m: redact_url(m.group()), text)
        if self._pattern is None:
            return text
        return self._pattern.sub(self._mask, text)

    def _mask(self, match: re.Match[str]) -> str:
        found = match.group()
        return found if found in self._keep else MASK


def _host_parts(url: str) -> set[str]:
    """The host, with and without its port, as written and in lower case."""
    _, authority, _, _, _ = _split(url)
    hostport = (authority or "").rpartition("@")[2]
    host = hostport.rsplit(":", 1)[0] if not hostport.endswith("]") else hostport
    return {part for part in (hostport, host, hostport.lower(), host.lower()) if part}


# The schemes of an Authorization-style value whose token part is a credential by itself.
_AUTH_SCHEME = re.compile(r"(?:bearer|basic|token|bot)\s+(\S.*)", re.IGNORECASE | re.DOTALL)


def _header_credentials(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Each static header's value as sent and as a JSON reply quotes it; for an
    Authorization-style value its token too, and a Basic one's decoded user and password."""
    raw: list[str] = []
    for _, value in headers:
        value = value.strip()
        raw.append(value)
        scheme = _AUTH_SCHEME.fullmatch(value)
        if scheme is None:
            continue
        token = scheme.group(1).strip()
        raw.append(token)
        if value[:5].lower() == "basic":
            try:
                decoded = base64.b64decode(token, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue
            user, _, password = decoded.partition(":")
            raw += [decoded, user, password]
    found: set[str] = set()
    for piece in raw:
        found.update((piece, json.dumps(piece)[1:-1]))
    found.discard("")
    return found


def _credentials(url: str) -> set[str]:
    """Each credential of `url` as written, percent-decoded and re-encoded."""
    _, authority, _, query, _ = _split(url)
    raw: list[str] = []
    userinfo, at, _ = (authority or "").rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        raw += [userinfo, user, password]
        basic = f"{unquote(user)}:{unquote(password)}".encode()
        raw.append(base64.b64encode(basic).decode())
    for param in (query or "").split("&"):
        key, eq, value = param.partition("=")
        raw.append(value if eq else key)
    found: set[str] = set()
    for piece in raw:
        decoded = unquote(piece)
        found.update((piece, decoded, unquote_plus(piece), quote(decoded, safe=""), quote(decoded)))
    found.discard("")
    return found
