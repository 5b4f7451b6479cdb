"""The envelope: request bytes in, events out, and the exact body bytes every receiver gets."""

from __future__ import annotations

import base64
import json
import re
import sys
from typing import Any

import pytest

from tillhook.envelope import new_message_id, parse_body, to_new_events, to_test_event
from tillhook.errors import InvalidInput
from tillhook.models import MAX_BATCH, MAX_JSON_DEPTH, EventIn, format_time

NOW = 1_763_807_400.0  # 2025-11-22T10:30:00Z
ID_RE = re.compile(r"msg_[0-9a-hjkmnp-tv-z]{26}")  # Crockford base32, lower case
_FROM_CROCKFORD = bytes.maketrans(b"0123456789abcdefghjkmnpqrstvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def event(**fields: Any) -> dict[str, Any]:
    return {"type": "transaction.completed", "data": {"amount": 50.0}} | fields


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def refused(raw: bytes, idempotency_key: str | None = None) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_body(raw, idempotency_key)
    return caught.value


def nested(depth: int) -> Any:
    """A JSON value that is `depth` containers deep (0: a scalar), alternating objects and arrays."""
    value: Any = 1
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def millis_of(message_id: str) -> int:
    raw = base64.b32decode(message_id.removeprefix("msg_").encode().translate(_FROM_CROCKFORD) + b"======")
    return int.from_bytes(raw[:6], "big")


# -- parse_body: what is accepted ----------------------------------------------------------


def test_a_single_event() -> None:
    events, batch = parse_body(body(event(id="pos-9912", timestamp="2026-11-22T10:30:00Z")), None)
    assert batch is False
    assert events == [
        EventIn(type="transaction.completed", data={"amount": 50.0}, id="pos-9912", timestamp="2026-11-22T10:30:00Z")
    ]


def test_a_batch_keeps_its_order() -> None:
    events, batch = parse_body(body([event(type=f"t.e{i}", id=f"k{i}") for i in range(5)]), None)
    assert batch is True
    assert [(e.type, e.id) for e in events] == [(f"t.e{i}", f"k{i}") for i in range(5)]


def test_a_batch_of_one_is_still_a_batch() -> None:
    events, batch = parse_body(body([event()]), None)
    assert batch is True and len(events) == 1


def test_a_full_batch_is_accepted_and_one_more_is_not() -> None:
    events, _ = parse_body(body([event()] * MAX_BATCH), None)
    assert len(events) == MAX_BATCH == 1000
    error = refused(body([event()] * (MAX_BATCH + 1)))
    assert (error.status, error.slug) == (422, "invalid-event") and "1001" in error.message


def test_the_idempotency_header_becomes_the_id() -> None:
    (only,), _ = parse_body(body(event()), "pos-1")
    assert only.id == "pos-1"
    (same,), _ = parse_body(body(event(id="pos-1")), "pos-1")  # both, agreeing, is fine
    assert same.id == "pos-1"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-11-22T10:30:00Z", "2026-11-22T10:30:00Z"),
        ("2026-11-22t10:30:00Z", "2026-11-22T10:30:00Z"),  # RFC 3339 allows lower-case t and z
        ("2026-11-22T10:30:00z", "2026-11-22T10:30:00Z"),
        ("2026-11-22T10:30:00+02:00", "2026-11-22T08:30:00Z"),  # stored in UTC
        ("2026-11-22T00:30:00-01:30", "2026-11-22T02:00:00Z"),
        ("2026-11-22T10:30:00.5Z", "2026-11-22T10:30:00.500Z"),
        ("2026-11-22T10:30:00.123456Z", "2026-11-22T10:30:00.123Z"),  # milliseconds are kept
    ],
)
def test_timestamps_are_normalised_to_utc(given: str, stored: str) -> None:
    (only,), _ = parse_body(body(event(timestamp=given)), None)
    assert only.timestamp == stored


@pytest.mark.parametrize("depth", [1, 2, MAX_JSON_DEPTH - 2])
def test_deep_data_within_the_limit_is_accepted(depth: int) -> None:
    # The body's own object is level 1 and "data" level 2, so data may hold 30 more levels.
    events, _ = parse_body(body(event(data={"k": nested(depth)})), None)
    assert events[0].data == {"k": nested(depth)}


def test_exactly_32_levels_are_accepted_in_a_batch_too() -> None:
    events, _ = parse_body(body([event(data={"k": nested(MAX_JSON_DEPTH - 3)})]), None)
    assert len(events) == 1


# -- parse_body: what is refused, and how it is said ------------------------------------------


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b"", "not valid JSON"),
        (b"{bad", "not valid JSON"),
        (b'{"type": "a", "data": {}', "not valid JSON"),
        (b'{"type": "a", "data": {}} x', "not valid JSON"),  # trailing garbage
        (b"{'type': 'a'}", "not valid JSON"),
        (b'{"type": "a", "data": {"x": NaN}}', "NaN is not valid JSON"),  # Python extensions are not JSON
        (b'{"type": "a", "data": {"x": Infinity}}', "Infinity is not valid JSON"),
        (b'{"type": "a", "data": {"x": -Infinity}}', "Infinity is not valid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8 (byte 0)"),
        (b'{"type": "a", "data": {"x": "caf\xe9"}}', "not valid UTF-8 (byte 32)"),  # Latin-1, not UTF-8
        ('{"type": "a"}'.encode("utf-16"), "not valid UTF-8"),
        (b'\xef\xbb\xbf{"type": "a", "data": {}}', "not valid JSON"),  # a UTF-8 byte-order mark
    ],
)
def test_malformed_bodies_are_400(raw: bytes, said: str) -> None:
    error = refused(raw)
    assert (error.status, error.slug) == (400, "malformed-body")
    assert said in error.message


@pytest.mark.parametrize("raw", [b"5", b'"event"', b"null", b"true", b"1.5"])
def test_a_body_that_is_neither_object_nor_array_is_422(raw: bytes) -> None:
    error = refused(raw)
    assert (error.status, error.slug) == (422, "invalid-event")
    assert "one event (a JSON object) or an array of events" in error.message


def test_an_empty_batch_is_422() -> None:
    error = refused(b"[]")
    assert (error.status, error.slug) == (422, "invalid-event") and "not 0" in error.message


@pytest.mark.parametrize(
    ("document", "fields"),
    [
        ({"data": {}}, {"type": "is required"}),
        ({"type": "a"}, {"data": "is required"}),
        ({}, {"type": "is required", "data": "is required"}),
        (event(type="a b"), {"type": "must be dot-separated names"}),
        (event(type=""), {"type": "must be dot-separated names"}),
        (event(type="a."), {"type": "must be dot-separated names"}),
        (event(type=".a"), {"type": "must be dot-separated names"}),
        (event(type="a..b"), {"type": "must be dot-separated names"}),
        (event(type="a.*"), {"type": "must be dot-separated names"}),  # a pattern is not a type
        (event(type="x" * 129), {"type": "must have at most 128 characters"}),
        (event(type=5), {"type": "must be a string"}),
        (event(data=[]), {"data": "must be a JSON object"}),
        (event(data="x"), {"data": "must be a JSON object"}),
        (event(data=None), {"data": "must be a JSON object"}),
        (event(id=""), {"id": "must not be empty"}),
        (event(id="x" * 256), {"id": "must have at most 255 characters"}),
        (event(id=42), {"id": "must be a string"}),
        (event(timestamp="yesterday"), {"timestamp": "RFC 3339"}),
        (event(timestamp="2026-11-22T10:30:00"), {"timestamp": "time zone"}),  # no zone: ambiguous
        (event(timestamp="2026-11-22"), {"timestamp": "time zone"}),
        (event(timestamp=1763807400), {"timestamp": "string"}),
        (event(colour="red"), {"colour": "unknown field"}),
        (
            {"type": "a b", "data": [], "id": "", "timestamp": "x", "extra": 1},
            {"type": "", "data": "", "id": "", "timestamp": "", "extra": "unknown field"},
        ),
    ],
)
def test_invalid_single_events_name_each_field(document: dict[str, Any], fields: dict[str, str]) -> None:
    error = refused(body(document))
    assert (error.status, error.slug) == (422, "invalid-event")
    assert error.errors is not None
    assert [e["field"] for e in error.errors] == list(fields)
    for problem in error.errors:
        assert fields[problem["field"]] in problem["message"]
        assert f"{problem['field']}: {problem['message']}" in error.message


def test_valid_limits_of_single_fields() -> None:
    (only,), _ = parse_body(body(event(type="x" * 128, id="k" * 255, data={})), None)
    assert len(only.type) == 128 and len(only.id or "") == 255 and only.data == {}


def test_a_batch_names_each_bad_item_by_index() -> None:
    error = refused(body([event(), 5, event(type=""), {"data": {}}, {"type": "x"}, event(colour=1)]))
    assert error.status == 422
    assert [e["field"] for e in (error.errors or [])] == ["[1]", "[2].type", "[3].type", "[4].data", "[5].colour"]
    assert error.errors is not None and error.errors[0]["message"] == "must be a JSON object"


def test_a_batch_is_all_or_nothing() -> None:
    # One bad event among good ones refuses the whole body: nothing is returned to store.
    error = refused(body([event(), event(), event(data=[])]))
    assert [e["field"] for e in (error.errors or [])] == ["[2].data"]


def test_the_summary_is_cut_after_five_errors() -> None:
    error = refused(body([{"data": {}}] * 8))
    assert len(error.errors or []) == 8
    assert error.message.count("is required") == 5 and error.message.endswith("(and 3 more)")


@pytest.mark.parametrize(
    ("raw", "key", "fields"),
    [
        (body(event(id="pos-2")), "pos-1", ["id"]),  # the body and the header disagree
        (body(event()), "", ["Idempotency-Key"]),
        (body(event()), "k" * 256, ["Idempotency-Key"]),
        (body(event()), "pos\x001", ["Idempotency-Key"]),  # a NUL: no store can search for it
    ],
)
def test_idempotency_header_mistakes(raw: bytes, key: str, fields: list[str]) -> None:
    error = refused(raw, key)
    assert error.status == 422 and [e["field"] for e in (error.errors or [])] == fields


@pytest.mark.parametrize("key", ["pos\x001", "line\nbreak", "del\x7f"])
def test_a_key_with_a_control_character_is_refused_naming_it(key: str) -> None:
    error = refused(body(event(id=key)))
    assert error.status == 422 and [e["field"] for e in (error.errors or [])] == ["id"]
    assert "control characters" in error.message


def test_the_idempotency_header_is_refused_on_a_batch() -> None:
    error = refused(body([event(id="a"), event(id="b")]), "pos-1")
    assert error.status == 422 and 'give each event its own "id"' in error.message


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, 100])
def test_data_nested_deeper_than_32_levels_is_422(depth: int) -> None:
    error = refused(body(event(data={"k": nested(depth)})))
    assert (error.status, error.slug) == (422, "invalid-event")
    assert "deeper than 32 levels" in error.message


def test_a_batch_counts_as_a_level() -> None:
    error = refused(body([event(data={"k": nested(MAX_JSON_DEPTH - 2)})]))
    assert error.status == 422 and "deeper than 32 levels" in error.message


def test_nesting_that_would_overflow_the_parser_is_422_not_a_crash() -> None:
    error = refused(b"[" * 200_000 + b"]" * 200_000)
    assert (error.status, error.slug) == (422, "invalid-event") and "deeper than 32 levels" in error.message


# -- message ids ---------------------------------------------------------------------------


def test_message_id_format() -> None:
    ids = {new_message_id(NOW) for _ in range(1000)}
    assert len(ids) == 1000  # 80 random bits: no collisions within one millisecond
    for message_id in ids:
        assert ID_RE.fullmatch(message_id), message_id
        assert len(message_id) == len("msg_") + 26


@pytest.mark.parametrize("now_s", [0.0, 1.0, NOW, NOW + 0.001, 4_102_444_800.0, 2**48 / 1000 - 1])
def test_message_id_carries_its_millisecond(now_s: float) -> None:
    assert millis_of(new_message_id(now_s)) == int(now_s * 1000)


def test_ids_made_later_sort_later() -> None:
    moments = [NOW + step / 1000 for step in (0, 1, 2, 10, 999, 1000, 60_000, 86_400_000)]
    moments += [0.001, 1.0, 1e9, 2e9]
    made = [(now_s, new_message_id(now_s)) for now_s in sorted(moments)]
    ids = [message_id for _, message_id in made]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_sort_by_time_whatever_their_random_part() -> None:
    # Many ids a millisecond apart: the random tail must never outweigh the time.
    earlier = [new_message_id(NOW) for _ in range(200)]
    later = [new_message_id(NOW + 0.001) for _ in range(200)]
    assert max(earlier) < min(later)


# -- the body bytes ------------------------------------------------------------------------


def built(raw: bytes, subscribers: dict[str, tuple[str, ...]] | None = None) -> list[Any]:
    events, _ = parse_body(raw, None)
    table = subscribers or {}
    return to_new_events(events, NOW, lambda event_type: table.get(event_type, ()))


def test_the_body_is_exactly_the_contract_envelope() -> None:
    (new,) = built(
        body(event(id="pos-9912", timestamp="2026-11-22T10:30:00Z", data={"amount": 50.0, "customer_id": "c_1"}))
    )
    assert ID_RE.fullmatch(new.id)
    assert new.body == (
        b'{"id":"%s","type":"transaction.completed","timestamp":"2026-11-22T10:30:00Z",'
        b'"data":{"amount":50.0,"customer_id":"c_1"}}' % new.id.encode()
    )
    assert list(json.loads(new.body)) == ["id", "type", "timestamp", "data"]
    assert (new.type, new.idempotency_key, new.created_at) == ("transaction.completed", "pos-9912", NOW)


def test_without_a_timestamp_the_time_received_is_used() -> None:
    (new,) = built(body(event()))
    assert json.loads(new.body)["timestamp"] == format_time(NOW) == "2025-11-22T10:30:00Z"
    assert new.idempotency_key is None


def test_subscribers_decide_the_deliveries() -> None:
    news = built(body([event(type="a.b"), event(type="c.d"), event(type="a.b")]), {"a.b": ("ep_1", "ep_2")})
    assert [n.endpoint_ids for n in news] == [("ep_1", "ep_2"), (), ("ep_1", "ep_2")]
    assert len({n.id for n in news}) == 3  # one message id per event, even in one batch
    assert [json.loads(n.body)["id"] for n in news] == [n.id for n in news]


@pytest.mark.parametrize(
    "data",
    [
        {"big": 2**64},  # one past uint64
        {"big": 2**70, "neg": -(2**100)},
        {"nested": [{"n": 12345678901234567890123456789}], "small": 1},
        {"max_u64": 2**64 - 1, "min_i64": -(2**63)},  # the edges a 64-bit encoder still handles
        {"text": "Grüße, 東京 😀", "float": 0.1, "neg": -0.0, "exp": 1e-7, "list": [True, False, None]},
    ],
)
def test_values_survive_exactly(data: dict[str, Any]) -> None:
    raw = json.dumps(event(data=data)).encode()
    (new,) = built(raw)
    decoded = json.loads(new.body)
    assert decoded["data"] == data
    assert json.dumps(decoded["data"], sort_keys=True) == json.dumps(data, sort_keys=True)


def test_huge_integers_are_written_as_integers_not_floats() -> None:
    (new,) = built(b'{"type": "a", "data": {"n": 123456789012345678901234567890, "f": 1.5}}')
    assert b'"n":123456789012345678901234567890' in new.body
    assert b"e+" not in new.body and b'"f":1.5' in new.body


def test_the_body_is_compact_utf8_and_keeps_key_order() -> None:
    (new,) = built('{"type": "a", "data": {"z": "é", "a": [1, 2], "m": {"y": 1, "b": 2}}}'.encode())
    assert new.body.endswith('"data":{"z":"é","a":[1,2],"m":{"y":1,"b":2}}}'.encode())
    assert b": " not in new.body and b", " not in new.body


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "a", "data": {"x": "\\ud800"}}',  # a lone high surrogate
        b'{"type": "a", "data": {"x": "ok \\udc00 not"}}',  # a lone low one
        b'{"type": "a", "data": {"\\ud800": 1}}',  # in a key
        b'[{"type": "a", "data": {}}, {"type": "a", "data": {"x": ["\\ude00\\ud83d"]}}]',  # a pair the wrong way round
    ],
)
def test_a_lone_surrogate_is_422_not_a_crash(raw: bytes) -> None:
    # JSON escapes can spell UTF-16 halves that no UTF-8 body can carry; they must be refused
    # up front, not fail later while the body is built (a 500).
    error = refused(raw)
    assert (error.status, error.slug) == (422, "invalid-event") and "surrogate" in error.message


def test_an_escaped_surrogate_pair_is_fine() -> None:
    (new,) = built(b'{"type": "a", "data": {"x": "\\ud83d\\ude00"}}')
    assert json.loads(new.body)["data"]["x"] == "\U0001f600"
    assert "\U0001f600".encode() in new.body


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1.0e309", b"[2e308]"])
def test_an_out_of_range_number_is_422_not_turned_into_null(number: bytes) -> None:
    # Python reads 1e400 as inf, which the encoder would write as null: the receiver would
    # silently get another value than the POS sent.
    error = refused(b'{"type": "a", "data": {"x": %s}}' % number)
    assert (error.status, error.slug) == (422, "invalid-event") and "too large" in error.message


@pytest.mark.parametrize(
    "number", [b"1.7976931348623157e308", b"5e-324", b"1e-300", b"2.5E-308", b"0e-999999", b"-0.0e-400", b"0.000E-1000"]
)
def test_numbers_at_the_edge_of_double_range_are_kept(number: bytes) -> None:
    (new,) = built(b'{"type": "a", "data": {"x": %s}}' % number)
    assert json.loads(new.body)["data"]["x"] == json.loads(number)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "a", "data": {"x": 1e-999999}}',
        b'{"type": "a", "data": {"x": -1e-400}}',
        b'{"type": "a", "data": {"x": 2.5E-400}}',
        b'{"type": "a", "data": {"x": 0.0001e-0330}}',
        b'{"type": "a", "data": {"x": [1,1e-400]}}',
        b'{"type": "a", "data": {"x":\n1e-400}}',
        b'[{"type": "a", "data": {}}, {"type": "a", "data": {"x": 1e-400}}]',
        b'{"type": "a", "data": {"x": 0.%s1}}' % (b"0" * 400),  # no exponent, just many places
    ],
)
def test_a_number_too_small_for_a_double_is_422_not_turned_into_zero(raw: bytes) -> None:
    # orjson reads 1e-999999 as 0.0 without a word: the receiver would get another value.
    error = refused(raw)
    assert (error.status, error.slug) == (422, "invalid-event")
    assert "too small to deliver exactly" in error.message


def test_a_string_beside_a_tiny_number_does_not_hide_it() -> None:
    error = refused(b'{"type": "a", "data": {"uuid": "5b3ce-123-4567", "x": 1e-400}}')
    assert "too small" in error.message


@pytest.mark.parametrize("text", ["1e-400", "a 1e-400", "123e-4567", "5b3ce-123-4567"])
def test_strings_that_look_like_tiny_numbers_are_kept(text: str) -> None:
    (new,) = built(body(event(data={"note": text, "zero": 0.0})))
    assert json.loads(new.body)["data"] == {"note": text, "zero": 0.0}


def test_an_integer_of_4300_digits_is_kept_and_one_more_is_422_not_malformed() -> None:
    limit = sys.get_int_max_str_digits()
    (new,) = built(b'{"type": "a", "data": {"n": %s}}' % (b"7" * limit))
    assert json.loads(new.body)["data"]["n"] == int("7" * limit)
    error = refused(b'{"type": "a", "data": {"n": -%s}}' % (b"7" * (limit + 1)))
    assert (error.status, error.slug) == (422, "invalid-event")
    assert f"integers of more than {limit} digits are not accepted" in error.message


def test_a_test_event_goes_to_one_endpoint_marked_test_in_its_envelope_and_its_record() -> None:
    made = to_test_event("sale.completed", {"total": 9.5}, NOW, "ep_1")
    assert ID_RE.fullmatch(made.id) and made.type == "sale.completed"
    assert made.endpoint_ids == ("ep_1",) and made.test is True and made.idempotency_key is None
    assert made.body == (
        b'{"id":"'
        + made.id.encode()
        + b'","type":"sale.completed","timestamp":"'
        + format_time(NOW).encode()
        + b'","data":{"total":9.5},"test":true}'
    )
    # What the POS sends never says so.
    (sale,) = to_new_events([EventIn(type="sale.completed", data={})], NOW, lambda _type: ("ep_1",))
    assert "test" not in json.loads(sale.body) and sale.test is False
