"""tillhook's CEL functions as tables, called the way a transform calls them (through CEL,
by their documented names), with odd values of every type CEL can hand over: none raises,
and every string they return stays within its length."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import cel
import pytest

from tillhook.expressions.functions import FIELDS, FUNCTIONS, bind, fields, make_context
from tillhook.expressions.text import MAX_OUTPUT

CONTEXT = make_context()


def call(source: str, **variables: Any) -> Any:
    """Evaluate `source` with `variables` bound, through the context presets use."""
    CONTEXT.update(variables)
    return cel.compile(source).execute(CONTEXT)


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- words, title ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("transaction.completed", "Transaction completed"),
        ("customer_id", "Customer id"),
        ("refund-issued", "Refund issued"),
        ("customerId", "Customer id"),  # camelCase humps are word breaks
        ("orderID", "Order ID"),  # words in capitals stay so
        ("SKU", "SKU"),
        ("oldest_pending_age_s", "Oldest pending age s"),
        ("a..b__c", "A b c"),  # runs of separators are one space
        ("", ""),
        ("...", ""),
        ("line\nbreak", "Line break"),
        ("kunde.angelegt.ä", "Kunde angelegt ä"),
        (5, "5"),  # not a string: displayed first
        (None, "Null"),
        ([1, 2], "2 items"),
    ],
)
def test_words(value: Any, expected: str) -> None:
    assert call("words(v)", v=value) == expected


def test_words_is_at_most_200_characters() -> None:
    assert units(call("words(v)", v="ab." * 10_000)) == 200
    assert call("words(v)", v="ab." * 10_000).endswith("…")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("transaction.completed", "Transaction completed"),
        ("tillhook.endpoint.failing", "⚠️ Endpoint failing"),
        ("tillhook.endpoint.disabled", "⚠️ Endpoint disabled"),
        ("tillhook.delivery.failed", "⚠️ Delivery failed"),
        ("tillhook.backlog.high", "⚠️ Backlog high"),
        ("tillhook.endpoint.recovered", "✅ Endpoint recovered"),
        ("tillhook.ping", "Tillhook ping"),  # not an alert: no sign
        ("", "Event"),
        (None, "Null"),
    ],
)
def test_title(value: Any, expected: str) -> None:
    assert call("title(v)", v=value) == expected


# --- display, truncate ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("two\nlines\tand\x00nul", "two lines and nul"),
        ("abc\u202edef\u2066", "abcdef"),  # direction overrides dropped
        ("", ""),
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-12, "-12"),
        (55.39, "55.39"),
        (1e21, "1e+21"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        ([], "no items"),
        ([1], "1 item"),
        ([1, [2], {}], "3 items"),
        ({}, "no fields"),
        ({"name": "loyalty", "id": "ep_1"}, "id: ep_1, name: loyalty"),  # sorted by key
        ({"b": {"x": 1}, "a": [1, 2], "c": None}, "a: 2 items, b: 1 field, c: null"),
        ({"note": "a\nb"}, "note: a b"),
        (b"\x00\xff", "2 bytes"),
    ],
)
def test_display(value: Any, expected: str) -> None:
    assert call("display(v)", v=value) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('display(timestamp("2026-11-22T10:30:00Z"))', "2026-11-22 10:30:00 UTC"),
        ('display(duration("90s"))', "90s"),
        ("display(7u)", "7"),
        ('display(b"abc")', "3 bytes"),
        ('display("x", 0)', "x"),  # a length below 1 counts as 1
        ('display("xyz", 2)', "x…"),
    ],
)
def test_display_of_cel_only_types(source: str, expected: str) -> None:
    assert call(source) == expected


def test_display_of_a_huge_string_or_map_is_cut() -> None:
    assert call("display(v)", v="y" * 100_000) == "y" * 999 + "…"
    wide = call("display(v)", v={f"k{i:05}": i for i in range(50_000)})
    assert wide.startswith("k00000: 0, k00001: 1, ") and wide.endswith(", …") and units(wide) <= 1000


@pytest.mark.parametrize(
    ("value", "max_length", "expected"),
    [
        ("hello", 10, "hello"),
        ("hello", 5, "hello"),  # exactly fits: untouched
        ("hello world", 6, "hello…"),
        ("hello world", 7, "hello…"),  # the space before the cut goes
        ("a\nb\nc", 100, "a\nb\nc"),  # line breaks kept
        ("😀😀😀", 4, "😀…"),  # an emoji is two units and never split in half
        ("😀😀😀", 2, "…"),
        ("abc", 1, "…"),
        ("abc", 0, "…"),  # below 1 counts as 1
        ("abcdef", -5, "…"),
        ("abc", "2", "abc"),  # not a number: the default, 1000
        ("abc", None, "abc"),
        ("abcdef", 3.9, "ab…"),  # a double is taken whole
        ("abcdef", True, "abcdef"),  # a bool is no length
        (12345, 3, "12…"),
        (None, 10, "null"),
    ],
)
def test_truncate(value: Any, max_length: Any, expected: str) -> None:
    assert call("truncate(v, m)", v=value, m=max_length) == expected


def test_truncate_caps_any_asked_length() -> None:
    assert units(call("truncate(v, 10000000)", v="z" * 200_000)) == MAX_OUTPUT


# --- fields ---------------------------------------------------------------------------------

SALE = {"amount": 55.39, "currency": "EUR", "customer_id": "c_1", "items": [{"sku": "A1", "qty": 2}]}


def test_fields_of_a_sale_simple_values_first_in_key_order() -> None:
    assert call("fields(data)", data=SALE) == [
        {"name": "Amount", "value": "55.39"},
        {"name": "Currency", "value": "EUR"},
        {"name": "Customer id", "value": "c_1"},
        {"name": "Items", "value": "1 item"},
    ]


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ("fields(data)", {}, []),
        ("fields(data)", None, []),
        ("fields(data)", {"z": 1, "a": {"k": 1}, "m": [1]}, [["Z", "1"], ["A", "k: 1"], ["M", "1 item"]]),
        ("fields(data)", {"b": "", "a": None}, [["A", "null"], ["B", "(empty)"]]),
        ("fields(data)", {"": 1}, [["(no name)", "1"]]),
        ("fields(data)", {"Zeta": 1, "alpha": 2}, [["Alpha", "2"], ["Zeta", "1"]]),  # case-blind order
        ('fields(data, ["summary", "check"])', {"summary": "s", "check": "c", "n": 5}, [["N", "5"]]),
        ("fields(data, 7)", {"n": 5}, [["N", "5"]]),  # a skip that is no list skips nothing
        ("fields(data, [], 2)", {"a": 1, "b": 2}, [["A", "1"], ["B", "2"]]),
        ("fields(data, [], 2)", {"a": 1, "b": 2, "c": 3}, [["A", "1"], ["More", "2 more: B, C"]]),
        ("fields(data, [], 0)", {"a": 1, "b": 2}, [["More", "2 more: A, B"]]),
        ('fields(data, [], "x")', {"a": 1}, [["A", "1"]]),
        ("fields(data)", [1, 2, 3], [["Value", "3 items"]]),
        ("fields(data)", "text", [["Value", "text"]]),
        ("fields(data)", "", [["Value", "(empty)"]]),
    ],
)
def test_fields(source: str, data: Any, expected: list[list[str]]) -> None:
    assert [[f["name"], f["value"]] for f in call(source, data=data)] == expected


def test_fields_are_at_most_ten_by_default_and_25_at_most() -> None:
    wide = {f"k{i:02}": i for i in range(40)}
    ten = call("fields(data)", data=wide)
    assert len(ten) == 10 and ten[-1] == {"name": "More", "value": "31 more: K09, K10, K11, K12, K13, K14"}
    assert len(call("fields(data, [], 100)", data=wide)) == 25


def test_fields_cut_names_and_values() -> None:
    (entry,) = call("fields(data)", data={"k" * 1000: "v" * 100_000})
    assert units(entry["name"]) == 64 and units(entry["value"]) == 256
    assert entry["name"].endswith("…") and entry["value"].endswith("…")


def test_fields_of_a_huge_map_are_quick() -> None:
    data = {f"key{i:06}": i for i in range(200_000)}
    started = time.perf_counter()
    result = fields(data)
    assert time.perf_counter() - started < 2.0
    assert result[0] == {"name": "Key000000", "value": "0"} and result[-1]["value"].startswith("199991 more")


# --- get ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('get(data, "a")', 1),
        ('get(data, "zz")', None),
        ('get(data, "zz", "none")', "none"),
        ('data.get("a")', 1),  # also as a method
        ('get(data, "nested").x', [1]),
        ("get([10, 20], 1)", 20),
        ("get([10, 20], 2)", None),
        ("get([10, 20], -1)", None),
        ("get([10, 20], true, 0)", 0),
        ('get(data, ["a"], 0)', 0),  # a list is no key of any map
        ('get(null, "a", 0)', 0),
        ('get("text", "a", 0)', 0),
        ('has(data.a) && get(data, "a") == data.a', True),
    ],
)
def test_get(source: str, expected: Any) -> None:
    assert call(source, data={"a": 1, "nested": {"x": [1]}}) == expected


# --- time -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text", "iso"),
    [
        ("2026-11-22T10:30:00Z", "2026-11-22 10:30:00 UTC", "2026-11-22T10:30:00Z"),
        ("2026-11-22T10:30:00.123Z", "2026-11-22 10:30:00 UTC", "2026-11-22T10:30:00Z"),
        ("2026-11-22t10:30:00z", "2026-11-22 10:30:00 UTC", "2026-11-22T10:30:00Z"),
        ("2026-11-22T12:30:00+02:00", "2026-11-22 10:30:00 UTC", "2026-11-22T10:30:00Z"),
        (datetime(2026, 11, 22, 10, 30, tzinfo=UTC), "2026-11-22 10:30:00 UTC", "2026-11-22T10:30:00Z"),
        (datetime(2026, 11, 22, 10, 30), "2026-11-22 10:30:00 UTC", "2026-11-22T10:30:00Z"),  # naive: UTC
        ("yesterday", "yesterday", None),
        ("", "", None),
        (None, "null", None),
        (1795343400, "1795343400", None),
        ("9" * 500, "9" * 63 + "…", None),
    ],
)
def test_format_time_and_iso_time(value: Any, text: str, iso: str | None) -> None:
    assert call("formatTime(v)", v=value) == text
    assert call("isoTime(v)", v=value) == iso


def test_time_of_a_cel_timestamp_and_of_the_first_year_east_of_utc() -> None:
    assert call('formatTime(timestamp("2026-11-22T10:30:00Z"))') == "2026-11-22 10:30:00 UTC"
    first = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    assert call("formatTime(v)", v=first) == "0001-01-01T00:00:00+05:00"
    assert call("isoTime(v)", v=first) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-22T10:30:00Z", "<!date^1795343400^{date_short_pretty} {time_secs}|2026-11-22 10:30:00 UTC>"),
        ("<!channel>", "&lt;!channel&gt;"),  # not a time: shown, escaped
        (None, "null"),
    ],
)
def test_slack_time(value: Any, expected: str) -> None:
    assert call("slackTime(v)", v=value) == expected


# --- escaping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('slackEscape("<!channel> & <https://e|x>")', "&lt;!channel&gt; &amp; &lt;https://e|x&gt;"),
        ('slackEscape("*bold* _it_ :smile:")', "*bold* _it_ :smile:"),  # formatting is harmless
        ('slackEscape("a\\nb")', "a\nb"),
        ('slackEscape("<<<<", 9)', "&lt;&lt;…"),
        ('slackEscape("<<<<", 7)', "&lt;…"),  # never half an entity
        ('slackEscape("a<b", 5)', "a…"),
        ('slackEscape("&&&&&&", 12)', "&amp;&amp;…"),
        ("slackEscape(v)", "&lt;: &gt;"),  # not a string: displayed first
        ("slackEscape(null)", "null"),
    ],
)
def test_slack_escape(source: str, expected: str) -> None:
    assert call(source, v={"<": ">"}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "**bold** __u__ ~~s~~ `c` ||spoiler||",
            "\\*\\*bold\\*\\* \\_\\_u\\_\\_ \\~\\~s\\~\\~ \\`c\\` \\|\\|spoiler\\|\\|",
        ),
        ("[click](https://evil)", "\\[click\\](https://evil)"),
        ("<@123> <@&9> <#1> <t:1:R> @everyone", "\\<@123> \\<@&9> \\<#1> \\<t:1:R> @everyone"),
        ("c_1 ep_1 snake_case", "c_1 ep_1 snake_case"),  # inside a word, _ is no emphasis
        ("_it_", "\\_it\\_"),
        ("a\\b", "a\\\\b"),
        (
            "# big\n## less\n-# small\n> quote\n- li\n+ li\n1. one\n2) two",
            "\\# big\n\\## less\n\\-# small\n\\> quote\n\\- li\n\\+ li\n1\\. one\n2\\) two",
        ),
        ("#123 -5 55.39 1.5x", "#123 -5 55.39 1.5x"),  # no heading, no list
        (42, "42"),
    ],
)
def test_discord_escape(value: Any, expected: str) -> None:
    assert call("discordEscape(v)", v=value) == expected


def test_discord_and_teams_cuts_never_end_in_a_lone_backslash() -> None:
    for name in ("discordEscape", "teamsEscape"):
        for max_length in range(1, 40):
            for value in ("\\" * 50, "*" * 50, "a\\*" * 20):
                out = call(f"{name}(v, {max_length})", v=value)
                assert units(out) <= max_length
                body = out.removesuffix("…")
                assert (len(body) - len(body.rstrip("\\"))) % 2 == 0, (name, max_length, out)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("**b** _i_ [l](https://evil)", "\\*\\*b\\*\\* \\_i\\_ \\[l\\](https://evil)"),
        ("- li\n1. one\n10) ten", "\\- li\n1\\. one\n10\\) ten"),
        ("# not a heading in a card", "# not a heading in a card"),
        ("c_1 -5 55.39", "c_1 -5 55.39"),
        (None, "null"),
    ],
)
def test_teams_escape(value: Any, expected: str) -> None:
    assert call("teamsEscape(v)", v=value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<users/all> <https://evil|click>", "‹users/all› ‹https://evil|click›"),
        ("a `code` b", "a ˋcodeˋ b"),
        ("*b* _i_ ~s~", "*b* _i_ ~s~"),
        ("a\nb", "a\nb"),
        (None, "null"),
    ],
)
def test_google_chat_escape(value: Any, expected: str) -> None:
    assert call("googleChatEscape(v)", v=value) == expected


@pytest.mark.parametrize(
    ("name", "default"),
    [("slackEscape", 3000), ("discordEscape", 1024), ("teamsEscape", 1000), ("googleChatEscape", 4096)],
)
def test_escapes_cut_to_their_default_and_to_what_is_asked(name: str, default: int) -> None:
    for value in ("<" * 50_000, "😀" * 50_000, "q" * 50_000):
        out = call(f"{name}(v)", v=value)
        assert units(out) <= default and out.endswith("…")
        assert units(call(f"{name}(v, 10)", v=value)) <= 10


# --- any value, any function ----------------------------------------------------------------

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -(2**63),
    2**63 - 1,
    1.5,
    float("nan"),
    float("-inf"),
    "",
    "x" * 100_000,
    "😀" * 40_000,
    "\x00\n\r\t\u202e\ufeff",
    [],
    [None, [[]], {}],
    {},
    {"a": {"b": {"c": {"d": [1, {"e": None}]}}}},
    {"": None, "k" * 10_000: "v" * 10_000},
    {f"k{i}": i for i in range(5000)},
]
CEL_ONLY = ["1u", 'b"\\x00\\xff"', 'duration("-1h")', 'timestamp("0001-01-01T00:00:00Z")', "[1, 2.5, null]"]
STRING_RESULTS = {"words": 200, "title": 200, "display": 1000, "truncate": 1000, "formatTime": 64,
                  "isoTime": 20, "slackEscape": 3000, "slackTime": 100, "discordEscape": 1024,
                  "teamsEscape": 1000, "googleChatEscape": 4096}  # fmt: skip


ARGUMENTS = {"words": 1, "title": 1, "display": 2, "fields": 3, "truncate": 2, "get": 3,
             "formatTime": 1, "isoTime": 1, "slackEscape": 2, "slackTime": 1, "discordEscape": 2,
             "teamsEscape": 2, "googleChatEscape": 2}  # fmt: skip


def check_result(name: str, result: Any) -> None:
    if name in STRING_RESULTS:
        assert result is None or isinstance(result, str), (name, result)
        if isinstance(result, str):
            assert units(result) <= STRING_RESULTS[name], (name, units(result))
    if name == "fields":
        assert isinstance(result, list) and len(result) <= 10
        assert all(units(f["name"]) <= 64 and 1 <= units(f["value"]) <= 256 for f in result)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_no_function_raises_on_an_odd_value(name: str) -> None:
    for value in ODD_VALUES:
        for count in range(2 if name == "get" else 1, ARGUMENTS[name] + 1):
            check_result(name, call(f"{name}({', '.join(['v'] * count)})", v=value))
    for literal in CEL_ONLY:
        check_result(name, call(f"{name}({literal}, {literal})" if name == "get" else f"{name}({literal})"))


def test_every_function_documents_its_call() -> None:
    for name, function in FUNCTIONS.items():
        doc = function.__doc__ or ""
        assert doc.startswith(f"{name}("), name
        assert len(doc.splitlines()) >= 3, name


def test_bind_sets_the_event_fields_and_null_for_a_missing_one() -> None:
    context = make_context()
    bind(context, {"id": "msg_1", "type": "a.b", "data": {"n": 1}})
    program = cel.compile("[id, type, timestamp, data.n, test]")
    assert program.execute(context) == ["msg_1", "a.b", None, 1, False]
    bind(context, {"id": "msg_2", "type": "c", "timestamp": "t", "data": {"n": 2}, "test": True})
    assert program.execute(context) == ["msg_2", "c", "t", 2, True]
    assert FIELDS == ("id", "type", "timestamp", "data", "test")


@pytest.mark.parametrize("stored", [{}, {"test": None}, {"test": False}, {"test": 1}, {"test": "true"}])
def test_test_is_false_for_every_event_but_an_admins_test(stored: dict[str, object]) -> None:
    """Only the envelope of an admin's test says `"test": true`; whatever else is there, an
    expression can use `test` as a bool, as in `test ? … : …`."""
    context = make_context()
    bind(context, {"id": "msg_0", "type": "a", "data": {}, "test": True})  # a context is reused
    bind(context, {"id": "msg_1", "type": "a", "data": {}, **stored})
    assert cel.compile('test ? "test" : "event"').execute(context) == "event"
