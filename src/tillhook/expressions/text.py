"""Text for chat messages, pure: any value shown on one line, cut to a length counted in
UTF-16 code units, and escaped for each service's markup so that data cannot format,
link or mention. functions.py offers them to CEL."""

from __future__ import annotations

import heapq
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

ELLIPSIS = "…"
# No string a function returns is longer, whatever `max` a transform asks for.
MAX_OUTPUT = 65536
# How many members of a map its one-line summary names before giving up.
_SUMMARY_MEMBERS = 12

# Line breaks, tabs and other C0/C1 controls become spaces; the marks that reverse the
# direction of text (which can make "100.00" read as "00.001") are dropped.
_CONTROLS = dict.fromkeys([*range(32), *range(127, 160)], " ")
_CONTROLS.update(dict.fromkeys([*range(8234, 8239), *range(8294, 8298)]))
_KEEP_NEWLINES = {code: value for code, value in _CONTROLS.items() if code != 0x0A}


def limit(value: Any, default: int, ceiling: int = MAX_OUTPUT) -> int:
    """A length argument as a whole number in 1..ceiling; anything else gives `default`."""
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return default
    return max(1, min(value, ceiling))


def units(text: str) -> int:
    """The length of `text` in UTF-16 code units: a character beyond U+FFFF counts two."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clip(text: str, max_units: int, *, keep: Any = None) -> str:
    """`text` in at most `max_units` UTF-16 units, ending in "…" when it was cut. `keep`
    repairs the cut end (an entity or escape cut in half) before the "…" goes on."""
    if len(text) * 2 <= max_units or units(text) <= max_units:
        return text
    head = text.encode("utf-16-le", "surrogatepass")[: (max_units - 1) * 2]
    # A pair cut in half leaves a lone high surrogate at the end, which "ignore" drops.
    cut = head.decode("utf-16-le", "ignore")
    if keep is not None:
        cut = keep(cut)
    return cut.rstrip() + ELLIPSIS


def one_line(text: str, *, newlines: bool = False) -> str:
    """Controls as spaces (line breaks too, unless `newlines`), direction marks dropped."""
    if text.isascii() and text.isprintable():
        return text
    return text.translate(_KEEP_NEWLINES if newlines else _CONTROLS)


def display(value: Any, max_units: int = 1000) -> str:
    """Any value on one line for a person, in at most `max_units`."""
    if isinstance(value, str):
        # Only the head can be shown: never translate the whole of a 100 KB string.
        return clip(one_line(value[: max_units + 1]), max_units)
    return clip(_scalar(value) if not isinstance(value, dict) else _summary(value, max_units), max_units)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # CEL's are 64-bit; a Python caller's could be too long for str() to write.
        return str(value) if value.bit_length() <= 256 else "(a very large number)"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, list | tuple):
        return _count(len(value), "item")
    if isinstance(value, dict):
        return _count(len(value), "field")
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, bytes | bytearray):
        return _count(len(value), "byte")
    return f"({type(value).__name__})"


def _count(number: int, noun: str) -> str:
    if number == 0:
        return f"no {noun}s"
    return f"1 {noun}" if number == 1 else f"{number} {noun}s"


def _summary(mapping: dict[Any, Any], max_units: int) -> str:
    """ "key: value, key: value" of a map's members, nested ones counted, not opened."""
    if not mapping:
        return "no fields"
    members = heapq.nsmallest(_SUMMARY_MEMBERS, mapping.items(), key=lambda item: str(item[0]))
    parts: list[str] = []
    length = 0
    for key, value in members:
        shown = display(value, 100) if isinstance(value, str) else _scalar(value)
        parts.append(f"{one_line(str(key)[:100])}: {shown}")
        length += len(parts[-1]) + 2
        if length > max_units:
            break
    more = ", …" if len(parts) < len(mapping) else ""
    return ", ".join(parts) + more


def moment(value: Any) -> datetime | None:
    """An RFC 3339 string or a datetime as an aware datetime; None for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows a lower-case t and z
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def utc_text(when: datetime) -> str:
    """ "2026-11-22 10:30:00 UTC": to the second, because a person reads it."""
    try:
        return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError):  # year 1 in a zone east of UTC has no UTC time
        return when.isoformat()


def utc_iso(when: datetime) -> str | None:
    """ "2026-11-22T10:30:00Z", or None for a time UTC cannot hold."""
    try:
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError):
        return None


def _text(value: Any, max_units: int) -> str:
    """A string argument with its line breaks, or any other value displayed; only the part
    that can be shown (escaping never shortens, so `max_units` + 1 characters tell)."""
    if isinstance(value, str):
        return one_line(value[: max_units + 1], newlines=True)
    return display(value, max_units)


_SLACK = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;"}


def _whole_entity(cut: str) -> str:
    amp = cut.rfind("&", -5)
    return cut[:amp] if amp != -1 and ";" not in cut[amp:] else cut


def slack_escape(value: Any, max_units: int) -> str:
    return clip(_text(value, max_units).translate(_SLACK), max_units, keep=_whole_entity)


def _whole_escape(cut: str) -> str:
    trailing = len(cut) - len(cut.rstrip("\\"))
    return cut[:-1] if trailing % 2 else cut


# Markers that mean something only at the start of a line, and (but for a quote) only with
# a space after them: headings, Discord's "-#" small text, quotes, lists ("-5" and "55.39"
# are no list).
_END = r"(?=[ \t]|$)"
_LINE_MARKERS = re.compile(rf"^([ \t]*)(#{{1,6}}{_END}|-#|>|[+-]{_END}|\d+(?=[.)]{_END}))", re.MULTILINE)
_LINE_MARKERS_TEAMS = re.compile(rf"^([ \t]*)([+-]{_END}|\d+(?=[.)]{_END}))", re.MULTILINE)
# An underscore inside a word ("c_1", "ep_1") starts no emphasis in either markup: only one
# at the edge of a word is escaped.
_EDGE_UNDERSCORE = r"_(?![A-Za-z0-9])|(?<![A-Za-z0-9])_"
_DISCORD_INLINE = re.compile(rf"([\\*~`|<\[\]]|{_EDGE_UNDERSCORE})")
_TEAMS_INLINE = re.compile(rf"([\\*\[\]]|{_EDGE_UNDERSCORE})")


def _mark_line_start(match: re.Match[str]) -> str:
    indent, marker = match.group(1), match.group(2)
    # "1." is escaped at its dot, "#", "-", … at themselves.
    return f"{indent}{marker}\\" if marker[0].isdigit() else f"{indent}\\{marker}"


def discord_escape(value: Any, max_units: int) -> str:
    text = _DISCORD_INLINE.sub(r"\\\1", _text(value, max_units))
    return clip(_LINE_MARKERS.sub(_mark_line_start, text), max_units, keep=_whole_escape)


def teams_escape(value: Any, max_units: int) -> str:
    text = _TEAMS_INLINE.sub(r"\\\1", _text(value, max_units))
    return clip(_LINE_MARKERS_TEAMS.sub(_mark_line_start, text), max_units, keep=_whole_escape)


_GOOGLE_CHAT = {ord("<"): "‹", ord(">"): "›", ord("`"): "ˋ"}


def google_chat_escape(value: Any, max_units: int) -> str:
    return clip(_text(value, max_units).translate(_GOOGLE_CHAT), max_units)
