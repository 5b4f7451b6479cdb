"""Functions that tillhook adds to CEL, for presets and for anyone's transforms. They run in
the sandbox process only, on values CEL already holds.

Each takes any value CEL can hand over (a map arrives as a dict in no particular order, a
list as a list, int/uint as int, double as float, null as None, timestamp as datetime,
duration as timedelta, bytes as bytes) and never raises on an odd one: what it cannot use it
shows as text or replaces with its default. Every string it returns has a bounded length,
counted in UTF-16 code units (what Discord counts; never fewer than the code points Slack
counts), so a limit holds whichever way a service counts. The docstrings are the reference
users read: the first line is the call, the rest what it does."""

from __future__ import annotations

import functools
import heapq
import re
from collections.abc import Callable
from typing import Any

import cel
from cel import stdlib

from tillhook.expressions import text
from tillhook.expressions.text import (
    MAX_OUTPUT,
    clip,
    display,
    limit,
    moment,
    one_line,
    utc_iso,
    utc_text,
)

# What an expression sees of an event. `test` is true for an admin's test alone, whose stored
# envelope says `"test": true` (the POS's envelopes never hold the key), false for any other.
FIELDS = ("id", "type", "timestamp", "data", "test")

WORDS_MAX = 200
NAME_MAX = 64
VALUE_MAX = 256
FIELDS_DEFAULT = 10
FIELDS_MAX = 25
# The ones a person must act on get a warning sign; the one that says all is well, a tick.
ALERT_ICONS = {
    "tillhook.endpoint.failing": "⚠️",
    "tillhook.endpoint.disabled": "⚠️",
    "tillhook.delivery.failed": "⚠️",
    "tillhook.backlog.high": "⚠️",
    "tillhook.endpoint.recovered": "✅",
}
_SEPARATORS = re.compile(r"[._\-\s]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def words(value: Any) -> str:
    """words(s) -> string

    An event type or a key in words: "transaction.completed" -> "Transaction completed",
    "customer_id" -> "Customer id", "orderID" -> "Order ID". `.`, `_`, `-` and camelCase
    humps become spaces and the first letter a capital; words in capitals stay so. Any other
    value is shown first (see display). At most 200 characters."""
    # Event types and keys repeat from event to event: each is worked out once.
    return _cached_words(value) if isinstance(value, str) and len(value) <= WORDS_MAX else _words(value)


def _words(value: Any) -> str:
    source = value if isinstance(value, str) else display(value)
    parts: list[str] = []
    for chunk in _SEPARATORS.split(one_line(source[: WORDS_MAX * 2])):
        parts.extend(piece for piece in _CAMEL.split(chunk) if piece)
    if not parts:
        return ""
    joined = " ".join([parts[0]] + [p if p.isupper() else p[:1].lower() + p[1:] for p in parts[1:]])
    return clip(joined[:1].upper() + joined[1:], WORDS_MAX)


_cached_words = functools.lru_cache(maxsize=4096)(_words)


def title(event_type: Any) -> str:
    """title(type) -> string

    The heading for an event: its type in words, and for tillhook's alerts without the
    "tillhook." and with a sign: "⚠️ Endpoint failing" (failing, disabled, delivery failed,
    backlog high), "✅ Endpoint recovered". "Event" when the type is empty. At most 200
    characters."""
    if isinstance(event_type, str) and event_type in ALERT_ICONS:
        return f"{ALERT_ICONS[event_type]} {words(event_type.removeprefix('tillhook.'))}"
    return words(event_type) or "Event"


def show(value: Any, max_length: Any = 1000) -> str:
    """display(value) -> string, display(value, max) -> string

    Any value on one line, for a person: strings as they are (line breaks and other control
    characters as spaces, direction overrides dropped), numbers as JSON writes them (and NaN,
    Infinity), true, false, null, a list as "3 items", a map as "key: value, …" of its simple values (sorted by
    key; nested ones as "2 items" or "4 fields"), a timestamp as formatTime does. Cut to `max`
    characters (default 1000) with "…" at the end."""
    return display(value, limit(max_length, 1000))


def fields(data: Any, skip: Any = None, count: Any = FIELDS_DEFAULT) -> list[dict[str, str]]:
    """fields(data) -> list, fields(data, skip) -> list, fields(data, skip, count) -> list

    The key fields of a map, as a list of {"name": …, "value": …} maps of strings: the name
    in words (at most 64 characters), the value shown as display does (at most 256). Simple
    values come first, then nested ones, each group in alphabetical order of key; the keys
    listed in `skip` are left out. At most `count` entries (default 10, at most 25): when
    there are more, the last one is {"name": "More", "value": "12 more: …"} naming some of
    the rest. A value that is not a map gives one entry named "Value"; null gives none."""
    wanted = limit(count, FIELDS_DEFAULT, FIELDS_MAX)
    if data is None:
        return []
    if not isinstance(data, dict):
        return [{"name": "Value", "value": display(data, VALUE_MAX) or "(empty)"}]
    left_out = {str(key) for key in skip} if isinstance(skip, (list, tuple)) else set()
    keys = [(isinstance(v, (dict, list)), str(k), v) for k, v in data.items() if str(k) not in left_out]
    # Only the first few in order are needed: heapq takes them without sorting a huge map.
    first = heapq.nsmallest(wanted + 5, keys, key=lambda entry: (entry[0], entry[1].lower(), entry[1]))
    shown = first if len(keys) <= wanted else first[: wanted - 1]
    entries = [{"name": _name(key), "value": display(value, VALUE_MAX) or "(empty)"} for _, key, value in shown]
    if len(keys) > wanted:
        rest = len(keys) - len(shown)
        names = ", ".join(_name(key) for _, key, _ in first[len(shown) :])
        entries.append({"name": "More", "value": clip(f"{rest} more: {names}", VALUE_MAX)})
    return entries


def _name(key: str) -> str:
    return clip(words(key), NAME_MAX) or "(no name)"


def truncate(value: Any, max_length: Any = 1000) -> str:
    """truncate(s, max) -> string

    `s` cut to at most `max` characters (counted as UTF-16 code units, never splitting a
    character's pair), ending in "…" when something was cut. Line breaks are kept. Any other
    value is shown first (see display)."""
    source = value if isinstance(value, str) else display(value, MAX_OUTPUT)
    return clip(source, limit(max_length, 1000))


def get(container: Any, key: Any, default: Any = None) -> Any:
    """get(map, key) -> value, get(map, key, default) -> value, map.get(key) -> value

    The value at `key` of a map (or at index `key` of a list), or `default` (null if not
    given) when there is none, or when `map` is not a map or list at all: unlike `map.key`,
    never an error."""
    if isinstance(container, dict):
        try:
            return container.get(key, default)
        except TypeError:  # an unhashable key (a list, a map) is in no map
            return default
    if isinstance(container, list) and isinstance(key, int) and not isinstance(key, bool):
        return container[key] if 0 <= key < len(container) else default
    return default


def format_time(value: Any) -> str:
    """formatTime(t) -> string

    A time for a person, in UTC: "2026-11-22 10:30:00 UTC", from an RFC 3339 string (like
    `timestamp`) or a CEL timestamp. Anything else is shown as it is (see display), cut to 64
    characters."""
    when = moment(value)
    return display(value, 64) if when is None else utc_text(when)


def iso_time(value: Any) -> str | None:
    """isoTime(t) -> string or null

    The same time as RFC 3339 / ISO 8601 in UTC to the second: "2026-11-22T10:30:00Z" (what
    Discord's embed timestamp takes), or null when `t` is not a time."""
    when = moment(value)
    return None if when is None else utc_iso(when)


def slack_escape(value: Any, max_length: Any = 3000) -> str:
    """slackEscape(s) -> string, slackEscape(s, max) -> string

    `s` safe inside Slack mrkdwn: `&`, `<` and `>` become `&amp;`, `&lt;`, `&gt;`, so the
    text cannot mention @channel or @here (`<!channel>`), a person (`<@U…>`) or make a link
    (`<https://…|click>`). Cut to `max` characters (default 3000, a section's limit) without
    breaking an entity. Any other value is shown first (see display)."""
    return text.slack_escape(value, limit(max_length, 3000))


def slack_time(value: Any) -> str:
    """slackTime(t) -> string

    A time that each Slack reader sees in their own time zone ("Nov 22, 2026 10:30:00 AM",
    "Today …"): Slack's `<!date^…|…>` with formatTime's text as the fallback. When `t` is
    not a time, the input shown and escaped (see slackEscape)."""
    when = moment(value)
    if when is None:
        return text.slack_escape(display(value, 64), 100)
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time_secs}}|{utc_text(when)}>"


def discord_escape(value: Any, max_length: Any = 1024) -> str:
    """discordEscape(s) -> string, discordEscape(s, max) -> string

    `s` shown as plain text by Discord's markdown: each of `` \\ * ~ ` | < [ ] `` and an
    underscore at the edge of a word gets a backslash (no bold, underline, spoilers, masked
    links, mention or timestamp tags; "c_1" stays as it is), and so do `#`, `>`, `-`, `+` and
    "1." at the start of a line (no headings, quotes, lists). Cut to `max` characters (default
    1024, a field value's limit) without leaving a lone backslash. Mentions are stopped for
    good by the message's `allowed_mentions`, which the preset sets."""
    return text.discord_escape(value, limit(max_length, 1024))


def teams_escape(value: Any, max_length: Any = 1000) -> str:
    """teamsEscape(s) -> string, teamsEscape(s, max) -> string

    `s` shown as plain text in an Adaptive Card TextBlock or FactSet, whose text is a subset
    of Markdown: each of `` \\ * [ ] `` and an underscore at the edge of a word gets a
    backslash (no bold, italics, links), and so do `-`, `+` and "1." at the start of a line
    (no lists). Cut to `max` characters (default 1000) without leaving a lone backslash."""
    return text.teams_escape(value, limit(max_length, 1000))


def google_chat_escape(value: Any, max_length: Any = 4096) -> str:
    """googleChatEscape(s) -> string, googleChatEscape(s, max) -> string

    `s` safe in a Google Chat text message, which has no escape character: `<` and `>` become
    the look-alikes `‹` and `›` (no `<users/all>` mention, no `<https://…|click>` link) and a
    backquote becomes `ˋ`, so a value set in `code` stays in it. Cut to `max` characters
    (default 4096, the safe length of a whole message)."""
    return text.google_chat_escape(value, limit(max_length, 4096))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "words": words,
    "title": title,
    "display": show,
    "fields": fields,
    "truncate": truncate,
    "get": get,
    "formatTime": format_time,
    "isoTime": iso_time,
    "slackEscape": slack_escape,
    "slackTime": slack_time,
    "discordEscape": discord_escape,
    "teamsEscape": teams_escape,
    "googleChatEscape": google_chat_escape,
}


def make_context() -> cel.Context:
    """CEL's extended standard library and tillhook's functions, made once per process:
    registering them costs more than an evaluation."""
    context = cel.Context()
    stdlib.add_stdlib_to_context(context)
    for name, function in FUNCTIONS.items():
        context.add_function(name, function)
    return context


def bind(context: cel.Context, event: dict[str, Any]) -> cel.Context:
    """The event's fields as the expression's variables, `test` always a bool."""
    context.update(
        {
            "id": event.get("id"),
            "type": event.get("type"),
            "timestamp": event.get("timestamp"),
            "data": event.get("data"),
            "test": event.get("test") is True,
        }
    )
    return context
