"""The quick check of the common JSON Schema keywords says exactly what jsonschema says
(Draft 2020-12, no format checker) for every schema it compiles, on generated data; a schema
with any other keyword gets no quick check, so jsonschema alone decides."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tillhook.quick_schema import compile_schema

KEYS = ["a", "b", "sku", "price", "items"]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.sampled_from([0.0, 1.0, -1.5, 2.5, 1e300, 10**30])
    | st.sampled_from(["", "a", "A-1", "EUR", "eur", "card", "x" * 12]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)

SCHEMAS: list[dict[str, Any] | bool] = [
    True,
    False,
    {},
    {"type": "integer"},
    {"type": "number"},
    {"type": ["string", "null"]},
    {"type": "boolean"},
    {"type": "object", "required": ["a", "b"]},
    {"type": "object", "properties": {"a": {"type": "string"}, "b": False}, "additionalProperties": False},
    {"properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
    {"items": {"type": "number", "minimum": 0, "exclusiveMaximum": 3}, "minItems": 1, "maxItems": 3},
    {"items": False},
    {"enum": ["card", "cash"]},
    {"const": "EUR"},
    {"minimum": -1, "maximum": 2.5, "exclusiveMinimum": -1.5},
    {"minLength": 1, "maxLength": 3, "pattern": "^[A-Z]"},
    {"minProperties": 1, "maxProperties": 2, "description": "annotations ask nothing", "format": "date-time"},
    {
        "type": "object",
        "required": ["items"],
        "properties": {
            "price": {"type": "number"},
            "items": {
                "type": "array",
                "items": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}},
            },
        },
    },
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=[str(s)[:60] for s in SCHEMAS])
@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_the_quick_check_agrees_with_jsonschema(schema: Any, value: Any) -> None:
    quick = compile_schema(schema)
    assert quick is not None
    assert quick(value) is jsonschema.Draft202012Validator(schema).is_valid(value)


def test_integers_and_numbers_as_json_schema_has_them() -> None:
    integer, number = compile_schema({"type": "integer"}), compile_schema({"type": "number"})
    assert integer is not None and number is not None
    assert [integer(v) for v in (1, 1.0, 1.5, True)] == [True, True, False, False]
    assert [number(v) for v in (1, 1.5, True, "1")] == [True, True, False, False]


def test_a_sale_that_matches_is_passed_quickly() -> None:
    sale = compile_schema(SCHEMAS[-1])
    assert sale is not None
    assert sale({"price": 2, "items": [{"sku": "A-1"}, {"sku": "B-2", "qty": 1}]}) is True
    assert sale({"price": 2, "items": [{"sku": 1}]}) is False  # then jsonschema finds and words it


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/$defs/a", "$defs": {"a": {}}},
        {"anyOf": [{"type": "string"}]},
        {"properties": {"a": {"oneOf": [{}]}}},
        {"items": {"uniqueItems": True}},
        {"prefixItems": [{}]},
        {"patternProperties": {"^a": {}}},
        {"enum": [1, True]},  # compared as jsonschema compares: left to it
        {"const": 1},
        {"multipleOf": 0.1},
        {"x-unit": "EUR"},  # unknown: jsonschema ignores it, but it is not this one's to judge
    ],
)
def test_other_keywords_get_no_quick_check(schema: dict[str, Any]) -> None:
    assert compile_schema(schema) is None
