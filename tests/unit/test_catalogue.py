"""The catalogue at ingest: which types are checked and how, each problem's path in the
notation of every other 422, a missing field named by its own path, the cap on problems; and
parse_body / to_new_events refusing a strict type's mismatch (a batch all or nothing) and
recording a lenient one's."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tillhook.catalogue import MAX_ERRORS, Catalogue, EventTypeSpec, SchemaProblem
from tillhook.config import load_config, validate_config
from tillhook.envelope import SCHEMA_MISMATCH, parse_body, to_new_events
from tillhook.errors import ConfigError, InvalidInput
from tillhook.models import EventIn

SALE = {
    "type": "object",
    "required": ["total", "items"],
    "properties": {
        "total": {"type": "number", "minimum": 0},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "price"],
                "properties": {"sku": {"type": "string"}, "price": {"type": "number"}},
            },
        },
    },
}
GOOD_SALE = {"total": 3.0, "items": [{"sku": "A-1", "price": 1.5}, {"sku": "B-2", "price": 1.5}]}


def catalogue(**types: dict[str, Any]) -> Catalogue:
    """`sale_completed={...}` is the type sale.completed."""
    return Catalogue(
        EventTypeSpec.model_validate({"name": name.replace("_", "."), **spec}) for name, spec in types.items()
    )


SHOP = catalogue(
    sale_completed={"schema": SALE, "strict": True},
    sale_refunded={"schema": SALE},  # checked, recorded, accepted
    note_added={"description": "described, no schema: never checked"},
)


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def refusal(raw: bytes, catalogue: Catalogue = SHOP) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_body(raw, None, catalogue)
    return caught.value


# -- the catalogue's own check ----------------------------------------------------------


def test_only_types_with_a_schema_are_checked_strict_ones_enforced_the_others_recorded() -> None:
    assert SHOP.enforced == {"sale.completed"}
    assert SHOP.recorded == {"sale.refunded"}
    assert SHOP.check("note.added", {"anything": 1}) == (False, [])
    assert SHOP.check("not.catalogued", {"anything": 1}) == (False, [])
    assert SHOP.check("sale.completed", GOOD_SALE) == (True, [])


def test_each_problem_is_named_by_its_path_and_a_missing_field_by_its_own() -> None:
    data = {"items": [{"sku": "A-1", "price": "1.50"}, {"price": 2}], "total": -1}
    strict, found = SHOP.check("sale.completed", data)
    assert strict is True
    assert found == [
        SchemaProblem("data.items[0].price", '"1.50" is not of type "number"'),
        SchemaProblem("data.items[1].sku", "is required"),
        SchemaProblem("data.total", "-1 is less than the minimum of 0"),
    ]
    # Under the event's own path in a batch, as the other 422s of a batch say it.
    _, found = SHOP.check("sale.completed", {"items": []}, prefix="[2].data")
    assert found == [SchemaProblem("[2].data.total", "is required")]


def test_several_missing_fields_are_each_named() -> None:
    _, found = SHOP.check("sale.refunded", {})
    assert found == [SchemaProblem("data.items", "is required"), SchemaProblem("data.total", "is required")]


def test_problems_are_capped_and_long_words_cut() -> None:
    many = {"total": 1, "items": [{"sku": i, "price": 1} for i in range(MAX_ERRORS + 20)]}
    _, found = SHOP.check("sale.completed", many)
    assert len(found) == MAX_ERRORS
    # In the order of their paths (indexes as numbers), so the first ones are the first items.
    assert [p.field for p in found[:3]] == ["data.items[0].sku", "data.items[1].sku", "data.items[2].sku"]
    assert found[-1].field == f"data.items[{MAX_ERRORS - 1}].sku"
    _, (long,) = SHOP.check("sale.completed", {"total": "x" * 1000, "items": []})
    assert long.field == "data.total" and len(long.message) == 200 and long.message.endswith("…")


def _checked(schema: dict[str, Any], data: object) -> list[tuple[str, str]]:
    catalogue = Catalogue([EventTypeSpec.model_validate({"name": "x.y", "schema": schema})])
    return [(p.field, p.message) for p in catalogue.check("x.y", data)[1]]


def test_past_200_problems_the_first_50_met_are_named_from_one_evaluation() -> None:
    schema = {
        "type": "object",
        "required": ["total"],
        "properties": {"lines": {"type": "array", "items": {"type": "string"}}, "total": {"type": "number"}},
    }
    found = _checked(schema, {"lines": list(range(300))})
    assert len(found) == MAX_ERRORS
    # The missing field still by its own path, the items by index, in the order of their paths.
    assert found[0] == ("data.lines[0]", '0 is not of type "string"')
    assert ("data.total", "is required") in found
    assert [f for f, _ in found if f.startswith("data.lines")] == [f"data.lines[{i}]" for i in range(MAX_ERRORS - 1)]


def test_pointers_are_walked_through_the_data_so_a_key_like_an_index_stays_a_key() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}}
    # "0" and "a/b~c" are keys of an object ("~1" and "~0" in the pointer); 1 is an index.
    data = {"0": ["x"] * 150, "a/b~c": ["y"] * 60}
    found = _checked(schema, data)
    assert len(found) == MAX_ERRORS
    fields = {f for f, _ in found}
    assert "data.0[1]" in fields
    small = _checked(schema, {"a/b~c": ["y"], "0": ["x"]})  # under 200: worded one by one
    assert small == [("data.0[0]", '"x" is not of type "integer"'), ("data.a/b~c[0]", '"y" is not of type "integer"')]
    # A key of unicode digits beside an array is a key, never taken for an index.
    assert _checked(schema, {"²": ["x"]}) == [("data.²[0]", '"x" is not of type "integer"')]
    many = _checked(schema, {"a/b~c": ["y"] * 250})
    assert many[0] == ("data.a/b~c[0]", '"y" is not of type "integer"')


def test_keys_and_values_from_the_pos_never_reach_a_terminal_raw() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    (found,) = _checked(schema, {"\x1b[31mred\u202e": "\x07bell\u200b"})
    assert found == ("data.\\u001b[31mred\\u202e", '"\\u0007bell\\u200b" is not of type "integer"')
    assert all(c.isprintable() for c in found[0] + found[1])


def test_toml_dates_in_a_schema_or_an_example_are_named_at_load(tmp_path: Path) -> None:
    config = tmp_path / "types.toml"
    config.write_text(
        "[[event_types]]\n"
        'name = "sale.completed"\n'
        "example = { at = 2026-01-01T10:00:00Z, lines = [{ day = 2026-01-01 }] }\n"
        'schema = { type = "object", properties = { at = { const = 10:00:00 } } }\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.errors == [
        "event_types[0].schema.properties.at.const: is a TOML date or time, which JSON has not: write it as a"
        " string, in quotes",
        "event_types[0].example.at: is a TOML date or time, which JSON has not: write it as a string, in quotes",
    ]


def test_a_pos_field_named_test_does_not_make_an_event_a_test() -> None:
    (event,) = to_new_events([EventIn(type="sale.completed", data={"test": True})], 0.0, lambda _t: ())
    assert event.test is False and b'"test":true}' in event.body  # only inside data
    assert not event.body.endswith(b',"test":true}')


# -- ingest: a strict type refuses, a batch all or nothing ------------------------------


def test_a_strict_types_mismatch_is_refused_naming_each_field() -> None:
    refused = refusal(body({"type": "sale.completed", "data": {"items": [{"sku": "A-1", "price": "1.50"}]}}))
    assert (refused.status, refused.slug) == (422, SCHEMA_MISMATCH)
    assert refused.errors == [
        {"field": "data.items[0].price", "message": '"1.50" is not of type "number"'},
        {"field": "data.total", "message": "is required"},
    ]
    assert refused.message.startswith("the event's data does not match its type's schema")
    assert "data.total: is required" in refused.message and "[[event_types]]" in refused.message


def test_a_batch_with_one_mismatch_is_refused_whole_with_the_events_paths() -> None:
    good = {"type": "sale.completed", "data": GOOD_SALE}
    refused = refusal(
        body([good, {"type": "sale.refunded", "data": {}}, {"type": "sale.completed", "data": {"total": 1}}, good])
    )
    assert refused.slug == SCHEMA_MISMATCH
    # [1] is not strict: accepted as it is; only [2] refuses the batch.
    assert refused.errors == [{"field": "[2].data.items", "message": "is required"}]
    assert (
        refused.message.startswith("1 of the batch's events does not match") and "none of the batch" in refused.message
    )


def test_a_malformed_event_beside_a_mismatch_is_invalid_event_naming_both() -> None:
    refused = refusal(body([{"type": "sale.completed", "data": {"total": 1}}, {"type": "a.b"}]))
    assert refused.slug == "invalid-event"
    assert refused.errors == [
        {"field": "[0].data.items", "message": "is required"},
        {"field": "[1].data", "message": "is required"},
    ]


def test_without_a_catalogue_or_with_lenient_types_only_nothing_is_refused() -> None:
    wrong = body({"type": "sale.completed", "data": {}})
    (event,), _ = parse_body(wrong, None)
    assert event.data == {}
    lenient = catalogue(sale_completed={"schema": SALE})
    (event,), _ = parse_body(wrong, None, lenient)
    assert event.type == "sale.completed"


# -- ingest: a lenient type's problems go with the event --------------------------------


def test_a_lenient_types_problems_are_stored_with_the_event_and_no_other() -> None:
    events, _ = parse_body(
        body(
            [
                {"type": "sale.refunded", "data": {"total": "3", "items": []}},
                {"type": "sale.refunded", "data": GOOD_SALE},
                {"type": "sale.completed", "data": GOOD_SALE},
                {"type": "note.added", "data": {"total": "3"}},
            ]
        ),
        None,
        SHOP,
    )
    built = to_new_events(events, 1_800_000_000.0, lambda _type: (), SHOP)
    assert json.loads(built[0].schema_errors or "null") == [
        {"field": "data.total", "message": '"3" is not of type "number"'}
    ]
    assert [e.schema_errors for e in built[1:]] == [None, None, None]
    assert not any(e.test for e in built)
    # Without the catalogue (a ping, an alert) nothing is checked.
    assert to_new_events(events, 1_800_000_000.0, lambda _type: ())[0].schema_errors is None


def test_the_commented_catalogue_of_config_example_is_a_valid_one() -> None:
    text = (Path(__file__).parents[2] / "config.example.toml").read_text()
    commented = text[text.index("# [[event_types]]") : text.index("# Endpoints applied at every start")]
    uncommented = "\n".join(line.removeprefix("# ") for line in commented.splitlines())
    config = validate_config(tomllib.loads(uncommented), "config.example.toml")
    (spec,) = config.event_types
    assert spec.data_schema is not None and spec.example is not None
    assert Catalogue(config.event_types).check(spec.name, spec.example) == (False, [])
