"""What an evaluation gives, turned into the sandbox's reply: JSON bodies and errors in words.
The values come from real CEL evaluations in this process (tiny, bounded expressions)."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from tillhook.expressions.functions import bind, make_context
from tillhook.expressions.results import (
    Failure,
    describe,
    filter_result,
    transform_body,
)

_CONVERT_HINT = " (CEL does not convert between types: use int(), uint(), double() or string())"

EVENT = {
    "id": "msg_1",
    "type": "sale.completed",
    "timestamp": "2026-11-22T10:30:00Z",
    "data": {"amount": 50.0, "customer_id": "c_1", "items": [{"sku": "a", "qty": 2}]},
}


def evaluate(source: str) -> Any:
    return cel.compile(source).execute(bind(make_context(), EVENT))


def error_of(source: str) -> str:
    with pytest.raises(Exception) as failed:
        evaluate(source)
    assert isinstance(failed.value, Exception)
    return describe(failed.value, source)


@pytest.mark.parametrize(
    ("source", "body"),
    [
        # Keys sorted: cel-rust gives a map's keys in another order at each evaluation.
        (
            '{"text": "Sale: " + string(data.amount), "customer": data.customer_id}',
            b'{"customer":"c_1","text":"Sale: 50"}',
        ),
        ("data.items", b'[{"qty":2,"sku":"a"}]'),
        ("'plain'", b'"plain"'),
        ("null", b"null"),
        ("[1, -2, 2.5, true, 18446744073709551615u]", b"[1,-2,2.5,true,18446744073709551615]"),
        # Timestamps in UTC with Z, whatever offset they were written with.
        ("timestamp(timestamp)", b'"2026-11-22T10:30:00Z"'),
        ("timestamp('2026-11-22T12:30:00.250+02:00')", b'"2026-11-22T10:30:00.250000Z"'),
        # Durations as their seconds, as protobuf's JSON writes them.
        (
            "[duration('5s'), duration('90m'), duration('1.5s'), duration('-0.000001s')]",
            b'["5s","5400s","1.5s","-0.000001s"]',
        ),
        # JSON keys are strings; CEL's int and bool keys become their text.
        ("{1: 'one', 'b': {false: 0}}", b'{"1":"one","b":{"false":0}}'),
    ],
)
def test_transform_bodies(source: str, body: bytes) -> None:
    assert transform_body(evaluate(source), output_bytes=2**20) == body


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("b'abc'", "the result is bytes, and JSON has none: encode them with base64.encode(...)"),
        (
            "{'x': [1, b'abc']}",
            "the result holds bytes at x[1], and JSON has none: encode them with base64.encode(...)",
        ),
        ("{'total': double('NaN')}", "the result holds NaN at total, and JSON has no NaN or Infinity"),
        ("[1.0 / 0.0]", "the result holds Infinity at [0], and JSON has no NaN or Infinity"),
        (
            "{'a-b': optional.none()}",
            'the result holds an optional at ["a-b"], and JSON has none: take its value with .orValue(...)',
        ),
    ],
)
def test_transform_results_without_json(source: str, reason: str) -> None:
    with pytest.raises(Failure) as failed:
        transform_body(evaluate(source), output_bytes=2**20)
    assert (failed.value.reason, failed.value.bound) == (reason, None)


def test_transform_body_over_its_bound_names_its_size() -> None:
    value = evaluate("lists.range(1000)")
    assert len(transform_body(value, output_bytes=3891)) == 3891
    with pytest.raises(Failure) as failed:
        transform_body(value, output_bytes=3890)
    assert (failed.value.bound, failed.value.size) == ("output", 3891)


@pytest.mark.parametrize(
    ("value", "result"),
    [(True, True), (False, False)],
)
def test_filter_results(value: bool, result: bool) -> None:
    assert filter_result(value) is result


@pytest.mark.parametrize(
    ("source", "type_words"),
    [
        ("data.customer_id", "a string"),
        ("1", "an int"),
        ("data.amount", "a double"),
        ("null", "null"),
        ("data.items", "a list"),
        ("data", "a map"),
        ("timestamp(timestamp)", "a timestamp"),
    ],
)
def test_filter_result_must_be_a_bool(source: str, type_words: str) -> None:
    with pytest.raises(Failure) as failed:
        filter_result(evaluate(source))
    assert failed.value.reason == f"it gives {type_words}, not true or false"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("data.nope > 1", "no field 'nope' in data (test for it with has(data.nope))"),
        ("data.items.all(i, i.price > 1)", "no field 'price' in i (test for it with has(i.price))"),
        ("data['nope'] == 1", "no field 'nope' (test for it with has(...))"),
        (
            "data.amount + 1",
            "unsupported operation: float + int" + _CONVERT_HINT,
        ),
        (
            "data.customer_id > 1",
            "no such overload: the operation is not defined for these types" + _CONVERT_HINT,
        ),
        ("1 / 0", "division by zero"),
        ("1 % 0", "modulo by zero"),
        (
            "9223372036854775807 + 1",
            "arithmetic overflow in 'add' on 9223372036854775807 and 1 (CEL integers are 64-bit)",
        ),
        ("int(1e30)", "int() failed: integer overflow (CEL integers are 64-bit)"),
        ("int('x')", "int() failed: string parse error: invalid digit found in string"),
        ("size(1)", "size() does not take these arguments (check their types)"),
        ("nosuch(1)", "unknown function or name 'nosuch'"),
        ("data.items[5]", "index out of bounds: 5"),
        ("bool('maybe')", "bool() failed: cannot convert string 'maybe' to bool"),
    ],
)
def test_errors_in_words(source: str, reason: str) -> None:
    assert error_of(source) == reason
