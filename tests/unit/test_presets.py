"""The chat presets on a table of events, ordinary and hostile: each output has the body
shape its service documents and stays within its limits, says the type in words, shows the
key fields and the time, and lets no data mention anyone or make a link."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import cel
import orjson
import pytest

from tillhook.expressions.functions import bind, make_context
from tillhook.expressions.presets import PRESETS

TIME = "2026-11-22T10:30:00Z"
TIME_TEXT = "2026-11-22 10:30:00 UTC"
HOSTILE = (
    "<!channel> <https://evil.example|click> @everyone @here <@123> <users/all> [x](https://evil.example) **b** `c`"
)
ENDPOINT = {"id": "ep_1", "name": "loyalty", "url": "https://loyalty.example.com/hooks"}


def event(event_type: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "msg_1", "type": event_type, "timestamp": TIME, "data": data, **extra}


def alert(event_type: str, summary: str, check: str, **fields: Any) -> dict[str, Any]:
    data = {"endpoint": ENDPOINT, "summary": summary, "check": check, **fields}
    if event_type == "tillhook.backlog.high":
        del data["endpoint"]
    return event(event_type, data)


SALE = event(
    "transaction.completed",
    {"amount": 55.39, "currency": "EUR", "customer_id": "c_1", "items": [{"sku": "A1", "qty": 2}]},
)
ALERTS = {
    "failing": alert(
        "tillhook.endpoint.failing",
        "Endpoint loyalty is failing: 5 attempts in a row failed, so it is tried once at a time until it answers.",
        "Is https://loyalty.example.com/hooks up? Last error: cannot connect (connection refused)",
        consecutive_failures=5,
        last_error="cannot connect (connection refused)",
    ),
    "recovered": alert(
        "tillhook.endpoint.recovered",
        "Endpoint loyalty answers again: its held deliveries go out now.",
        "Nothing to do.",
    ),
    "disabled": alert(
        "tillhook.endpoint.disabled",
        "Endpoint loyalty was disabled: it answered 410 Gone.",
        "Enable it again once https://loyalty.example.com/hooks takes deliveries.",
        reason="410",
    ),
    "delivery_failed": alert(
        "tillhook.delivery.failed",
        "3 deliveries to loyalty gave up in the last hour.",
        "Look at the failed deliveries of loyalty and retry them.",
        count=3,
    ),
    "backlog_high": alert(
        "tillhook.backlog.high",
        "120 deliveries are waiting; the oldest for 16 minutes.",
        "Are the endpoints up? See the status page.",
        backlog=120,
        oldest_pending_age_s=960,
    ),
    # A receiver's error text reaches the check: it is data too.
    "hostile_check": alert(
        "tillhook.endpoint.failing",
        "Endpoint loyalty is failing: " + HOSTILE,
        "Last error: " + HOSTILE,
        last_error=HOSTILE,
    ),
}
EVENTS = {
    "sale": SALE,
    "empty": event("customer.created", {}),
    "nested": event(
        "order.updated",
        {"order": {"id": "o_9", "lines": [1, 2, 3], "customer": {"id": "c_1"}}, "tags": ["a", "b", "c"], "ok": True},
    ),
    "huge_string": event("note.added", {"note": "x" * 100_000, "amount": 1}),
    "huge_hostile": event("note.added", {"note": "<&>*_[]\\" * 20_000, "emoji": "😀" * 20_000}),
    "unicode": event("kunde.angelegt", {"name": "Zoë Ærøskøbing 山田", "emoji": "🧾✅", "rtl": "abc\u202edef"}),
    "hostile": event("transaction.completed", {"note": HOSTILE, "<!channel>": "key", "multi": "a\n> quote\n# h\n- li"}),
    "wide": event("inventory.counted", {f"sku_{i:03}": i for i in range(40)}),
    "long_keys": event("x.y", {("k" * 500) + str(i): "v" * 2000 for i in range(30)}),
    "nulls": event("refund.created", {"amount": None, "reason": "", "flag": False, "ratio": float("inf")}),
    "ping": event("tillhook.ping", {"message": "a test event from tillhook"}, test=True),
    "sale_test": {**SALE, "test": True},
    # Every part at its longest, in characters each service escapes: the worst case of
    # each limit.
    "worst": event(
        "tillhook.endpoint.failing." + "x" * 100,
        {
            "summary": "*<" * 5000,
            "check": "_[" * 5000,
            **{f"{i:02}" + "*" * 300: "`|" * 5000 for i in range(30)},
        },
        id="msg_" + "*" * 300,
    ),
    **{f"alert_{name}": value for name, value in ALERTS.items()},
}

CONTEXT = make_context()
PROGRAMS = {name: cel.compile(source) for name, source in PRESETS.items()}


def run(preset: str, ev: dict[str, Any]) -> Any:
    body = PROGRAMS[preset].execute(bind(CONTEXT, ev))
    # What the sandbox does with it: it must be JSON, and the same after a round trip.
    assert orjson.loads(orjson.dumps(body)) == body
    return body


def units(text: str) -> int:
    """UTF-16 code units: Discord's count, never below the code points others count."""
    return len(text.encode("utf-16-le")) // 2


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def text_of(body: Any) -> str:
    return "\n".join(strings(body))


def within(text: Any, low: int, high: int) -> bool:
    return isinstance(text, str) and low <= units(text) <= high


# --- The shape each service documents ------------------------------------------------------


def mrkdwn(obj: Any, high: int) -> None:
    assert obj["type"] == "mrkdwn" and obj["verbatim"] is True, obj
    assert within(obj["text"], 1, high), units(obj["text"])


def valid_slack(body: Any) -> None:
    """Incoming webhook: text (fallback) + blocks; header plain_text ≤ 150; section text ≤ 3000
    or 1–10 fields ≤ 2000; context 1–10 elements; ≤ 50 blocks."""
    assert set(body) == {"text", "blocks"}
    assert within(body["text"], 1, 3000)
    assert 1 <= len(body["blocks"]) <= 50
    for block in body["blocks"]:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and within(block["text"]["text"], 1, 150)
        elif block["type"] == "section":
            assert ("text" in block) != ("fields" in block), block
            if "text" in block:
                mrkdwn(block["text"], 3000)
            else:
                assert 1 <= len(block["fields"]) <= 10
                for field in block["fields"]:
                    mrkdwn(field, 2000)
        else:
            assert block["type"] == "context" and 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                mrkdwn(element, 3000)
    assert body["blocks"][0]["type"] == "header" and body["blocks"][-1]["type"] == "context"


def valid_discord(body: Any) -> None:
    """Execute webhook: allowed_mentions parse [], ≤ 10 embeds; title ≤ 256, description
    ≤ 4096, ≤ 25 fields (name ≤ 256, value ≤ 1024, neither empty), footer ≤ 2048, ISO 8601
    timestamp, ≤ 6000 characters in all."""
    assert body["allowed_mentions"] == {"parse": []}
    assert "content" not in body or within(body["content"], 0, 2000)
    assert 1 <= len(body["embeds"]) <= 10
    for embed in body["embeds"]:
        assert within(embed["title"], 1, 256)
        assert "description" not in embed or within(embed["description"], 1, 4096)
        assert len(embed["fields"]) <= 25
        for field in embed["fields"]:
            assert within(field["name"], 1, 256) and within(field["value"], 1, 1024), field
            assert isinstance(field["inline"], bool)
        assert within(embed["footer"]["text"], 1, 2048)
        assert datetime.fromisoformat(embed["timestamp"]).tzinfo is not None
        assert isinstance(embed["color"], int) and 0 <= embed["color"] <= 0xFFFFFF
        total = units(embed["title"]) + units(embed.get("description", "")) + units(embed["footer"]["text"])
        total += sum(units(f["name"]) + units(f["value"]) for f in embed["fields"])
        assert total <= 6000, total


def valid_teams(body: Any) -> None:
    """A message with one Adaptive Card 1.4 attachment: TextBlocks and a FactSet."""
    assert body["type"] == "message" and set(body) == {"type", "attachments"}
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "contentUrl" in attachment and attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["type"] == "TextBlock"
    for element in card["body"]:
        if element["type"] == "TextBlock":
            assert within(element["text"], 1, 2000) and element["wrap"] is True
            assert element.get("color", "Default") in {"Default", "Good", "Attention", "Warning"}
        else:
            assert element["type"] == "FactSet" and 1 <= len(element["facts"]) <= 25
            for fact in element["facts"]:
                assert set(fact) == {"title", "value"}
                assert within(fact["title"], 1, 200) and within(fact["value"], 1, 1000)
    # Teams refuses a message over about 28 KB.
    assert len(orjson.dumps(body)) <= 28_000


def valid_google_chat(body: Any) -> None:
    """A text message: {"text": …}, at most 4096 characters."""
    assert set(body) == {"text"} and within(body["text"], 1, 4096)


VALIDATORS = {"slack": valid_slack, "discord": valid_discord, "teams": valid_teams, "google-chat": valid_google_chat}


def test_every_service_has_a_preset_and_a_validator() -> None:
    assert set(PRESETS) == set(VALIDATORS) == {"slack", "discord", "teams", "google-chat"}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("name", sorted(EVENTS))
def test_output_has_the_documented_shape_within_limits(preset: str, name: str) -> None:
    VALIDATORS[preset](run(preset, EVENTS[name]))


# --- What a person reads -------------------------------------------------------------------


def shown_time(preset: str, body: Any) -> bool:
    if preset == "discord":
        # Discord shows the embed's timestamp in each reader's zone.
        return bool(body["embeds"][0]["timestamp"] == TIME)
    if preset == "slack":
        # Slack's date token, with the UTC text as its fallback.
        return "<!date^1795343400^{date_short_pretty} {time_secs}|2026-11-22 10:30:00 UTC>" in text_of(body)
    return TIME_TEXT in text_of(body)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_sale_shows_its_type_in_words_its_key_fields_and_the_time(preset: str) -> None:
    body = run(preset, SALE)
    text = text_of(body)
    assert "Transaction completed" in text
    for name, value in [("Amount", "55.39"), ("Currency", "EUR"), ("Customer id", "c_1"), ("Items", "1 item")]:
        assert name in text and value in text, (name, value)
    assert shown_time(preset, body)


def test_the_sale_in_each_service_is_laid_out_as_its_readers_expect() -> None:
    slack = run("slack", SALE)
    assert slack["blocks"][0]["text"]["text"] == "Transaction completed"
    assert [f["text"] for f in slack["blocks"][1]["fields"]] == [
        "*Amount*\n55.39",
        "*Currency*\nEUR",
        "*Customer id*\nc_1",
        "*Items*\n1 item",
    ]
    assert slack["text"] == "Transaction completed: Amount 55.39 · Currency EUR · Customer id c_1 · Items 1 item"
    (embed,) = run("discord", SALE)["embeds"]
    assert embed["title"] == "Transaction completed"
    assert [(f["name"], f["value"]) for f in embed["fields"]][:2] == [("Amount", "55.39"), ("Currency", "EUR")]
    facts = run("teams", SALE)["attachments"][0]["content"]["body"][1]["facts"]
    assert facts[0] == {"title": "Amount", "value": "55.39"}
    assert run("google-chat", SALE)["text"].splitlines() == [
        "*Transaction completed*",
        "*Amount:* `55.39`",
        "*Currency:* `EUR`",
        "*Customer id:* `c_1`",
        "*Items:* `1 item`",
        "2026-11-22 10:30:00 UTC · transaction.completed · msg_1",
    ]


def test_an_admins_test_says_so_where_the_message_is_named_and_nothing_else_does() -> None:
    test = EVENTS["sale_test"]
    slack = run("slack", test)
    assert slack["blocks"][0]["text"]["text"] == "[test] Transaction completed"
    assert slack["text"].startswith("[test] Transaction completed: Amount 55.39")
    assert run("discord", test)["embeds"][0]["title"] == "[test] Transaction completed"
    assert run("teams", test)["attachments"][0]["content"]["body"][0]["text"] == "[test] Transaction completed"
    assert run("google-chat", test)["text"].splitlines()[0] == "*[test] Transaction completed*"
    assert "[test] Tillhook ping" in text_of(run("slack", EVENTS["ping"]))
    # The rest is the sale's message as it is; an event without the marker, or with any
    # value there but true, has none.
    assert slack["blocks"][1:] == run("slack", SALE)["blocks"][1:]
    for preset in PRESETS:
        for plain in (SALE, {**SALE, "test": False}, {**SALE, "test": "yes"}):
            assert "[test]" not in text_of(run(preset, plain)), preset


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_empty_data_still_makes_a_message_with_the_type_and_time(preset: str) -> None:
    body = run(preset, EVENTS["empty"])
    assert "Customer created" in text_of(body) and shown_time(preset, body)
    if preset == "slack":
        assert [b["type"] for b in body["blocks"]] == ["header", "context"]
    if preset == "discord":
        assert body["embeds"][0]["fields"] == []
    if preset == "teams":
        assert [e["type"] for e in body["attachments"][0]["content"]["body"]] == ["TextBlock", "TextBlock"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_nested_values_are_summarised_not_dumped(preset: str) -> None:
    text = text_of(run(preset, EVENTS["nested"]))
    assert "3 items" in text  # tags
    assert "customer: 1 field" in text and "lines: 3 items" in text  # the order, on one line
    assert "Ok" in text and "true" in text


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_100_kb_value_is_cut_with_an_ellipsis(preset: str) -> None:
    body = run(preset, EVENTS["huge_string"])
    text = text_of(body)
    assert "xxxxxxxxxx…" in text and "x" * 2000 not in text
    assert len(orjson.dumps(body)) < 12_000


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_unicode_comes_through_and_direction_overrides_do_not(preset: str) -> None:
    text = text_of(run(preset, EVENTS["unicode"]))
    assert "Kunde angelegt" in text
    assert "Zoë Ærøskøbing 山田" in text and "🧾✅" in text
    assert "\u202e" not in text and "abcdef" in text


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_more_fields_than_fit_end_in_a_count_of_the_rest(preset: str) -> None:
    text = text_of(run(preset, EVENTS["wide"]))
    assert "Sku 000" in text and "Sku 008" in text and "Sku 009" not in text.split("31 more")[0]
    assert "31 more: Sku 009, Sku 010" in text


# --- Data cannot mention, link or format ----------------------------------------------------


def test_slack_escapes_so_data_cannot_mention_or_link() -> None:
    for name in ("hostile", "alert_hostile_check", "huge_hostile"):
        body = run("slack", EVENTS[name])
        for text in strings(body):
            # The only `<…>` left is the preset's own date token.
            assert "<" not in re.sub(r"<!date\^\d+\^\{date_short_pretty\} \{time_secs\}\|[^<>|]*>", "", text), text
            assert ">" not in text.replace("UTC>", "")
            assert re.search(r"&(?!amp;|lt;|gt;)", text) is None, text  # no raw or half entity
    text = text_of(run("slack", EVENTS["hostile"]))
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt;" in text
    assert "*&lt;!channel&gt;*" in text  # a key is data too


def test_discord_stops_mentions_and_markdown() -> None:
    body = run("discord", EVENTS["hostile"])
    assert body["allowed_mentions"] == {"parse": []}
    values = {f["name"]: f["value"] for f in body["embeds"][0]["fields"]}
    assert values["Note"] == (
        "\\<!channel> \\<https://evil.example\\|click> @everyone @here \\<@123> \\<users/all> "
        "\\[x\\](https://evil.example) \\*\\*b\\*\\* \\`c\\`"
    )
    assert values["Multi"] == "a > quote # h - li"  # one line: no quote, heading or list
    description = run("discord", EVENTS["alert_hostile_check"])["embeds"][0]["description"]
    assert "\\[x\\](https://evil.example)" in description and "\\<@123>" in description


def test_teams_keeps_data_plain() -> None:
    body = run("teams", EVENTS["hostile"])
    facts = {f["title"]: f["value"] for f in body["attachments"][0]["content"]["body"][1]["facts"]}
    assert "\\[x\\](https://evil.example) \\*\\*b\\*\\*" in facts["Note"]
    assert "<users/all>" in facts["Note"]  # no meaning in a card: mentions need msteams entities


def test_google_chat_cannot_mention_all_or_link() -> None:
    for name in ("hostile", "alert_hostile_check", "huge_hostile"):
        text = run("google-chat", EVENTS[name])["text"]
        assert "<" not in text and ">" not in text
    text = run("google-chat", EVENTS["hostile"])["text"]
    assert "‹users/all›" in text and "‹https://evil.example|click›" in text
    # Each value stays inside its `code`: a backquote in data cannot end it.
    assert "*Note:* `‹!channel› " in text and "**b** ˋcˋ`" in text


# --- Alerts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("kind", sorted(set(ALERTS) - {"hostile_check"}))
def test_an_alert_leads_with_a_sign_its_summary_and_its_check(preset: str, kind: str) -> None:
    ev = ALERTS[kind]
    body = run(preset, ev)
    text = text_of(body)
    sign = "✅" if kind == "recovered" else "⚠️"
    heading = (
        sign
        + " "
        + {"delivery_failed": "Delivery failed", "backlog_high": "Backlog high"}.get(kind, "Endpoint " + kind)
    )
    assert heading in text
    summary, check = ev["data"]["summary"], ev["data"]["check"]
    if preset == "slack":
        assert body["text"].startswith(sign + " " + summary[:20])
        assert body["blocks"][0]["text"]["text"] == heading
        assert body["blocks"][1]["text"]["text"] == f"*{summary}*"
        assert body["blocks"][2]["text"]["text"] == check
    elif preset == "discord":
        embed = body["embeds"][0]
        assert embed["title"] == heading
        assert embed["description"].startswith("**" + summary)
        assert embed["color"] == (0x57F287 if kind == "recovered" else 0xE67E22)
    elif preset == "teams":
        blocks = body["attachments"][0]["content"]["body"]
        assert blocks[0]["text"] == heading and blocks[0]["color"] == ("Good" if kind == "recovered" else "Attention")
        assert blocks[1]["text"] == summary and blocks[2]["text"] == check
    else:
        lines = body["text"].splitlines()
        assert lines[:3] == [f"*{heading}*", f"*{summary}*", check]
    # The summary and the check are said once, up top, not again as fields.
    assert text.count(summary[:30]) == 1 if preset != "slack" else text.count(summary[:30]) == 2
    assert "Summary" not in text and "Check" not in text
    assert shown_time(preset, body)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_an_alert_shows_its_endpoint_and_its_own_fields(preset: str) -> None:
    text = text_of(run(preset, ALERTS["failing"]))
    assert "Consecutive failures" in text and "5" in text
    assert "name: loyalty" in text and "https://loyalty.example.com/hooks" in text
    backlog = text_of(run(preset, ALERTS["backlog_high"]))
    assert "Oldest pending age s" in backlog and "960" in backlog and "loyalty" not in backlog.split("Backlog high")[0]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_tillhook_event_that_is_no_alert_is_shown_as_an_event(preset: str) -> None:
    text = text_of(run(preset, EVENTS["ping"]))
    assert "Tillhook ping" in text and "a test event from tillhook" in text
    assert "⚠️" not in text
