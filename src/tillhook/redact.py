"""Credentials in an endpoint's URL (user info, query values) kept out of everything
tillhook writes: logs, the attempt log, endpoint health. Pure."""

from __future__ import annotations

import base64
import re
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
    """Replaces the credential parts of one URL with *** wherever they appear in a text
    (an HTTP library's error message quotes the URL, decoded or re-encoded, or sends the
    user info as a Basic authorization). Every URL quoted in the text is redacted whole;
    then each credential of at least four characters is masked wherever else it appears.
    The host is kept even if a credential is part of it: the message must still say where
    the attempt went."""

    def __init__(self, url: str) -> None:
        secrets = {s for s in _credentials(url) if len(s) >= _MIN_LONE_SECRET}
        _, authority, _, _, _ = _split(url)
        hostport = (authority or "").rpartition("@")[2]
        host = hostport.rsplit(":", 1)[0] if not hostport.endswith("]") else hostport
        self._keep = {part for part in (hostport, host, hostport.lower(), host.lower()) if part}
        tokens = sorted(secrets | self._keep, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, tokens))) if secrets else None
        self._has_credentials = bool(_credentials(url))

    def __call__(self, text: str) -> str:
        if not self._has_credentials or not text:
            return text
        text = _QUOTED_URL.sub(lambda m: redact_url(m.group()), text)
        if self._pattern is None:
            return text
        return self._pattern.sub(self._mask, text)

    def _mask(self, match: re.Match[str]) -> str:
        found = match.group()
        return found if found in self._keep else MASK


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
