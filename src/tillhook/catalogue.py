"""The event-type catalogue: the `[[event_types]]` the shop (or its POS vendor) describes, each
with what it means, a JSON Schema for its `data`, an example and whether the schema is
enforced. Types not in the catalogue are still accepted.

Schemas are checked with `jsonschema-rs` (Draft 2020-12, a Rust validator behind a Python
module): it reports every error of a document with its path, not only the first, checks a
schema itself against the meta-schema, so a mistake in the config is named when it loads, and
takes about a microsecond for a sale's data where python-jsonschema took a hundred (with a
1,000-event batch that is 1 ms of the event loop, not 100 ms). One validator is built per type
at load, so ingest only walks the data. References are followed inside the schema only: a
`$ref` to a URL is refused at load, never fetched."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import jsonschema_rs
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from tillhook import rules
from tillhook.models import EventType, field_path
from tillhook.wording import part_refused

MAX_DESCRIPTION_CHARS = 1000
MAX_TYPES = 1000
# More, and a POS posting one very wrong event would get a reply of thousands of lines.
MAX_ERRORS = 50


def _no_fetching(uri: str) -> Any:
    raise ValueError(f"{uri} is outside the schema; only references inside it (#/$defs/…) are followed")


def _validator(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(schema, retriever=_no_fetching)


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """One way `data` breaks its type's schema: where (`data.items[0].price`, under the
    event's own path in a batch) and what the schema asked."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


# Up to this many errors, each is worded by iter_errors, which sums up an anyOf or oneOf as one
# problem; beyond, building them all took ~8 us each (0.5 s for a 60,000-item array of wrong
# values, with the event loop held), so the first MAX_ERRORS of the evaluation's flat list,
# ~1 us each, are kept instead.
_WORDED_ERRORS = 200


def _printable(text: str) -> str:
    # What a terminal would act on or hide (escapes, a bell, a right-to-left override, a
    # zero-width space), in a key or a quoted value, is written as its \uXXXX escape.
    if not text.isprintable():
        text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return text


def _cut(text: str) -> str:
    # The words quote the value, which may be long: cut, they still say what is wrong.
    return text if len(text) <= 200 else text[:199] + "…"


def _walked(parts: Iterable[str | int], data: object) -> list[str | int]:
    """A path through `data`, each step an index where the value there is an array and a key
    where it is an object: the validator writes an object's key "0" as it writes index 0."""
    path: list[str | int] = []
    node = data
    for part in parts:
        if isinstance(node, list) and str(part).isascii() and str(part).isdigit():
            index = int(part)
            path.append(index)
            node = node[index] if index < len(node) else None
        else:
            path.append(str(part))
            node = node.get(str(part)) if isinstance(node, dict) else None
    return path


def _worded(error: jsonschema_rs.ValidationError, data: object) -> tuple[list[str | int], str]:
    path = _walked(error.instance_path, data)
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Required):
        # A missing field is named by its own path, as pydantic names one.
        return [*path, str(error.kind.property)], "is required"
    return path, _cut(error.message)


_REQUIRED = " is a required property"


def _listed(error: Mapping[str, Any], data: object) -> tuple[list[str | int], str]:
    """One error of an evaluation's flat list, its JSON Pointer walked through `data`."""
    pointer = str(error["instanceLocation"])
    parts = [raw.replace("~1", "/").replace("~0", "~") for raw in pointer.split("/")[1:]] if pointer else []
    path = _walked(parts, data)
    message = str(error["error"])
    if str(error["schemaLocation"]).endswith("/required") and message.endswith(_REQUIRED):
        try:
            missing = json.loads(message.removesuffix(_REQUIRED))
        except ValueError:
            missing = None
        if isinstance(missing, str):
            return [*path, missing], "is required"
    return path, _cut(message)


def _in_path_order(problem: tuple[list[str | int], str]) -> tuple[list[tuple[bool, str | int]], str]:
    # Indexes as numbers (items[2] before items[10]); a field missing is where it would be.
    path, message = problem
    return [(isinstance(part, str), part) for part in path], message


def problems(validator: jsonschema_rs.Draft202012Validator, data: object, prefix: str = "data") -> list[SchemaProblem]:
    """How `data` breaks the schema, in the order of their paths, at most MAX_ERRORS. Keys and
    values the POS sent are quoted with their control characters escaped: the problems reach
    terminals (`tillhook events show`)."""
    listed = validator.evaluate(data).errors()
    if len(listed) <= _WORDED_ERRORS:
        found = [_worded(error, data) for error in validator.iter_errors(data)]
    else:
        found = [_listed(error, data) for error in listed[:MAX_ERRORS]]
    found.sort(key=_in_path_order)
    return [
        SchemaProblem(_printable(field_path(path, prefix)), _printable(message)) for path, message in found[:MAX_ERRORS]
    ]


def _no_dates(value: object, where: str) -> None:
    """TOML has dates and times, JSON does not: an unquoted one would be sent in another form
    than written, or not at all. Named at load, with the way to write it."""
    if isinstance(value, datetime.date | datetime.time):
        raise part_refused(where, "is a TOML date or time, which JSON has not: write it as a string, in quotes")
    if isinstance(value, dict):
        for key, inner in value.items():
            _no_dates(inner, field_path([key], where))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _no_dates(inner, field_path([index], where))


class EventTypeSpec(BaseModel):
    """An `[[event_types]]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: EventType
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS)] | None = None
    # `schema` would shadow a BaseModel attribute; the file and the API still say "schema".
    data_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    example: dict[str, Any] | None = None
    strict: StrictBool = False

    @field_validator("name")
    @classmethod
    def _not_own(cls, name: str) -> str:
        if name.split(".", 1)[0].casefold() == rules.OWN_PREFIX:
            raise ValueError("types beginning with tillhook. are tillhook's own; the POS cannot send them")
        return name

    @field_validator("data_schema", "example")
    @classmethod
    def _json_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, inner in (value or {}).items():
            _no_dates(inner, field_path([key]))
        return value

    @field_validator("data_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            try:
                jsonschema_rs.meta.validate(schema)
                _validator(schema)  # what the meta-schema lets by: a bad regex, a $ref to nowhere
            except jsonschema_rs.ValidationError as error:
                path = list(error.instance_path)
                where = field_path(path, "schema") if path else "schema"
                said = error.message.split("\n", 1)[0]
                raise ValueError(f"is not a valid JSON Schema (Draft 2020-12): {where}: {said}") from None
        return schema

    @model_validator(mode="after")
    def _consistent(self) -> EventTypeSpec:
        if self.strict and self.data_schema is None:
            raise part_refused("strict", "needs a schema to enforce")
        if self.example is not None and self.data_schema is not None:
            broken = problems(_validator(self.data_schema), self.example, prefix="example")
            if broken:
                said = "; ".join(f"{p.field}: {p.message}" for p in broken[:5])
                raise part_refused("example", f"does not match the type's own schema: {said}")
        return self


def duplicate_names(types: Iterable[Mapping[str, Any]]) -> list[str]:
    """`event_types[i].name: ... is used by another event type`, over plain values, so the
    check also runs when fields fail."""
    found, seen = [], set()
    for index, spec in enumerate(types):
        name = spec.get("name") if isinstance(spec, Mapping) else None
        if isinstance(name, str) and name in seen:
            found.append(f"event_types[{index}].name: {name!r} is described by another event type")
        if isinstance(name, str):
            seen.add(name)
    return found


class Catalogue:
    """The catalogue as ingest and the admin API use it: looked up by exact type name."""

    def __init__(self, specs: Iterable[EventTypeSpec] = ()) -> None:
        self.specs: dict[str, EventTypeSpec] = {spec.name: spec for spec in specs}
        self._validators = {
            spec.name: _validator(spec.data_schema) for spec in self.specs.values() if spec.data_schema is not None
        }
        # What ingest checks, and how: a strict type's mismatch refuses the event, another's is
        # recorded with it. Types outside both are not looked at.
        self.enforced = frozenset(name for name in self._validators if self.specs[name].strict)
        self.recorded = frozenset(self._validators) - self.enforced

    def __contains__(self, event_type: str) -> bool:
        return event_type in self.specs

    def get(self, event_type: str) -> EventTypeSpec | None:
        return self.specs.get(event_type)

    def check(self, event_type: str, data: object, prefix: str = "data") -> tuple[bool, list[SchemaProblem]]:
        """(strict, problems): how `data` breaks its type's schema (none when it matches, or
        the type has no schema), and whether those problems refuse the event."""
        validator = self._validators.get(event_type)
        if validator is None:
            return False, []
        strict = self.specs[event_type].strict
        if validator.is_valid(data):  # the usual case, without building a single error
            return strict, []
        return strict, problems(validator, data, prefix)
