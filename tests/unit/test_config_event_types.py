"""The `[[event_types]]` catalogue in the config: what loads, and every mistake named."""

from __future__ import annotations

from typing import Any

import pytest

from tillhook.catalogue import Catalogue
from tillhook.config import validate_config
from tillhook.errors import ConfigError

SALE = {
    "name": "transaction.completed",
    "description": "A sale was paid and closed",
    "schema": {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}},
    "example": {"amount": 55.39, "customer_id": "c_1"},
    "strict": True,
}


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_config(raw, "test.toml")
    assert caught.value.message == f"test.toml has {len(caught.value.errors)} error(s)"
    return caught.value.errors


def test_a_catalogue_loads_and_checks_data() -> None:
    config = validate_config({"event_types": [SALE, {"name": "customer.created"}]}, "test.toml")
    catalogue = Catalogue(config.event_types)
    spec = catalogue.get("transaction.completed")
    assert spec is not None and spec.strict and spec.data_schema == SALE["schema"]
    assert spec.model_dump(by_alias=True)["schema"] == SALE["schema"]
    assert catalogue.check("transaction.completed", {"amount": 1}) == (True, [])
    strict, problems = catalogue.check("transaction.completed", {"amount": "1"}, prefix="[0].data")
    assert strict and [(p.field, p.message) for p in problems] == [("[0].data.amount", '"1" is not of type "number"')]
    # A type described without a schema takes any data; one not described at all too.
    assert catalogue.check("customer.created", {"x": 1}) == (False, [])
    assert catalogue.check("reward.redeemed", {"x": 1}) == (False, [])


def test_references_inside_the_schema_are_followed() -> None:
    schema = {"$defs": {"money": {"type": "number"}}, "properties": {"amount": {"$ref": "#/$defs/money"}}}
    config = validate_config({"event_types": [{"name": "sale.done", "schema": schema}]}, "test.toml")
    _, problems = Catalogue(config.event_types).check("sale.done", {"amount": "1"})
    assert [(p.field, p.message) for p in problems] == [("data.amount", '"1" is not of type "number"')]


def test_the_defaults_have_no_catalogue() -> None:
    assert validate_config({}, "test.toml").event_types == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"schema": {"type": "objekt"}}, "event_types[0].schema: is not a valid JSON Schema (Draft 2020-12)"),
        ({"schema": {"properties": {"a": {"minimum": "x"}}}}, "schema.properties.a.minimum"),
        ({"example": {"amount": "lots"}}, "event_types[0].example: does not match the type's own schema:"),
        ({"example": {}}, "example.amount: is required"),
        ({"schema": None, "strict": True}, "event_types[0].strict: needs a schema to enforce"),
        ({"strict": "true"}, "event_types[0].strict: must be true or false"),
        ({"name": "Not a type!"}, "event_types[0].name: must be dot-separated names"),
        ({"name": "tillhook.ping"}, "event_types[0].name: types beginning with tillhook. are tillhook's own"),
        ({"example": [1, 2]}, "event_types[0].example:"),
        ({"description": "x" * 1001}, "event_types[0].description:"),
        ({"colour": "blue"}, "event_types[0].colour: unknown key"),
        # Never fetched: the box may be offline, and a config must not make it call out.
        ({"schema": {"$ref": "https://schemas.example.com/sale.json"}}, "is outside the schema"),
        ({"schema": {"$ref": "#/$defs/missing"}}, "event_types[0].schema: is not a valid JSON Schema"),
        ({"schema": {"properties": {"sku": {"pattern": "("}}}}, "schema.properties.sku.pattern"),
    ],
)
def test_mistakes_are_named(change: dict[str, Any], named: str) -> None:
    spec = {k: v for k, v in {**SALE, **change}.items() if v is not None}
    errors = errors_of({"event_types": [spec]})
    assert any(named in e for e in errors), errors


def test_a_type_described_twice_is_named_with_the_other_errors() -> None:
    errors = errors_of(
        {"event_types": [SALE, {**SALE, "strict": False}], "delivery": {"timeout": "soon"}},
    )
    assert "event_types[1].name: 'transaction.completed' is described by another event type" in errors
    assert any(e.startswith("delivery.timeout:") for e in errors)
