"""Credentials of an endpoint (its URL's user info and query values, its static headers'
credentials) kept out of everything tillhook writes: logs, the attempt log, endpoint health; and
what a viewer reads of where an endpoint delivers: its origin only. Pure."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote, unquote_plus

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
    """`text` as a viewer may read it: every URL it quotes cut to its origin; the path of `url`
    (the endpoint's) wherever else it appears, in any case, and each of its segments that may
    be a token (16 characters or more, or 8 or more unless a lower-case word like "services");
    and whatever the endpoint, any path segment after a "/" that looks like a token (16
    characters or more of letters, digits, "-" and "_", holding both letters and digits), so a
    deleted endpoint's path, or its path before the URL was changed, is cut too: each replaced
    by "…". Applied to what is stored already scrubbed, so credentials of the user info and
    query are gone before; this takes the path, where chat webhooks keep theirs."""
    if not text:
        return text
    text = _QUOTED_URL.sub(lambda m: origin(m.group()), text)
    if url is not None:
        text = _own_path(url)(text)
    return _TOKEN_IN_PATH.sub(_cut_token, text)


# A path segment this long may be a token (Slack's is 24 characters, Discord's 68); the
# names around them ("services", "webhooks", "api") are shorter.
_TOKEN_SEGMENT = 16
# A segment of the endpoint's own path this long is cut too unless it is a lower-case word:
# the ids beside a token (Slack's T…/B…, 9 to 11 characters) say whose the webhook is.
_ID_SEGMENT = 8
_WORD = re.compile(r"[a-z]+")
# After a "/", in any text: what _cut_token cuts if it mixes letters and digits.
_TOKEN_IN_PATH = re.compile(rf"(?<=/)[A-Za-z0-9_-]{{{_TOKEN_SEGMENT},}}(?![A-Za-z0-9_-])")
_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"[0-9]")


def _cut_token(match: re.Match[str]) -> str:
    found = match.group()
    return "…" if _LETTER.search(found) and _DIGIT.search(found) else found


@lru_cache(maxsize=256)
def _own_path(url: str) -> _Replacer:
    pieces = _path_pieces(url)
    # The host stays readable even where the path is part of it ("/hook" of hooks.example).
    keep = {part.lower() for part in _host_parts(url)}
    return _Replacer(pieces | keep, keep, "…", re.IGNORECASE)


class _Replacer:
    """Replaces each of `pieces` but those in `keep` (compared in lower case) with `mask`,
    the longest first."""

    def __init__(self, pieces: set[str], keep: set[str], mask: str, flags: int = 0) -> None:
        self._keep = keep
        self._mask = mask
        tokens = sorted(pieces, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, tokens)), flags) if pieces - keep else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        found = match.group()
        return found if found.lower() in self._keep else self._mask


def _path_pieces(url: str) -> set[str]:
    _, _, path, _, _ = _split(url)
    whole = path.strip("/")
    if len(whole) < _MIN_LONE_SECRET:
        return set()
    pieces = {whole, *(s for s in whole.split("/") if _may_be_token(s))}
    found: set[str] = set()
    for piece in pieces:
        decoded = unquote(piece)
        found.update((piece, decoded, quote(decoded), quote(decoded, safe=""), piece.replace("/", "\\/")))
    found.discard("")
    return found


def _may_be_token(segment: str) -> bool:
    if len(segment) >= _TOKEN_SEGMENT:
        return True
    return len(segment) >= _ID_SEGMENT and _WORD.fullmatch(segment) is None


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
    masked wherever else it appears: the URL's, and the values of the headers whose name or
    value says they are one (see _header_credentials). Of the other headers (`x-version: 2024`,
    `accept: application/json`) only a value that looks like a token is masked, and only where
    it stands alone: a version or a tenant's name inside a date or a word stays readable. The
    host is kept even if a credential is part of it: the message must still say where the
    attempt went."""

    def __init__(self, url: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        in_url = _credentials(url)
        credentials, tokens = _header_credentials(headers)
        secrets = {s for s in in_url | credentials if len(s) >= _MIN_LONE_SECRET}
        self._keep = _host_parts(url)
        alone = tokens - secrets
        # Longest first, so that a value is masked whole rather than a part of it.
        pieces = sorted(secrets | alone | self._keep, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(_WHOLE_RUN.format(re.escape(p)) if p in alone else re.escape(p) for p in pieces))
            if secrets or alone
            else None
        )
        self._url_has_credentials = bool(in_url)
        # How far past a cut a credential begun before it may reach: a text cut to a limit
        # is scrubbed with this much more, then cut.
        self.reach = max(map(len, secrets | alone), default=0)

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


@lru_cache(maxsize=256)
def scrubber(url: str, headers: tuple[tuple[str, str], ...] = ()) -> Scrubber:
    """The Scrubber of an endpoint, built once per URL and headers."""
    return Scrubber(url, headers)


# A value masked only where it stands alone: not inside a longer run of letters and digits.
_WHOLE_RUN = "(?<![A-Za-z0-9]){}(?![A-Za-z0-9])"


def _host_parts(url: str) -> set[str]:
    """The host, with and without its port, as written and in lower case."""
    _, authority, _, _, _ = _split(url)
    hostport = (authority or "").rpartition("@")[2]
    host = hostport.rsplit(":", 1)[0] if not hostport.endswith("]") else hostport
    return {part for part in (hostport, host, hostport.lower(), host.lower()) if part}


# The schemes of an Authorization-style value whose token part is a credential by itself.
_AUTH_SCHEME = re.compile(r"(?:bearer|basic|token|bot)\s+(\S.*)", re.IGNORECASE | re.DOTALL)
# A header whose name has one of these holds a credential, whatever its value looks like.
_CREDENTIAL_NAME = re.compile(r"auth|key|token|secret|pass|cookie|session|signature|credential|api", re.IGNORECASE)
# Another header's value is taken for a token when it is this long, one run without spaces,
# with letters and digits both: an id or a key someone put under a plain name.
_TOKEN_LIKE = 20


def _header_credentials(headers: Iterable[tuple[str, str]]) -> tuple[set[str], set[str]]:
    """The static headers' values to mask, each as sent, as a JSON reply quotes it (PHP's
    json_encode writes "/" as "\\/") and percent-encoded: first those masked wherever they
    appear, the values of headers named for a credential and of Authorization-style ones
    (their token too, and a Basic one's decoded user and password); then the other headers'
    token-like values, masked where they stand alone."""
    credentials: list[str] = []
    tokens: list[str] = []
    for name, value in headers:
        value = value.strip()
        scheme = _AUTH_SCHEME.fullmatch(value)
        if scheme is None and _CREDENTIAL_NAME.search(name) is None:
            if _looks_like_token(value):
                tokens.append(value)
            continue
        credentials.append(value)
        if scheme is None:
            continue
        token = scheme.group(1).strip()
        credentials.append(token)
        if value[:5].lower() == "basic":
            try:
                decoded = base64.b64decode(token, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue
            user, _, password = decoded.partition(":")
            credentials += [decoded, user, password]
    return _header_variants(credentials), _header_variants(tokens)


def _looks_like_token(value: str) -> bool:
    return (
        len(value) >= _TOKEN_LIKE
        and not any(c.isspace() for c in value)
        and _LETTER.search(value) is not None
        and _DIGIT.search(value) is not None
    )


def _header_variants(raw: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for piece in raw:
        escaped = json.dumps(piece)[1:-1]
        found.update((piece, escaped, escaped.replace("/", "\\/"), quote(piece, safe=""), quote_plus(piece)))
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
