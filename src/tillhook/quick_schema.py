"""A quick yes for the JSON Schemas a POS's events mostly have: the keywords of plain objects,
arrays, strings and numbers compiled once into nested functions, so that data which matches
(nearly every event) is passed in a few microseconds. jsonschema walks each subschema
through its general machinery, some 4 µs a subschema: 150 µs for a sale of five lines.

The answer is only ever "matches" or "not sure": False sends the data to jsonschema, which
finds (and words) every problem, or finds none. So every keyword here is jsonschema's own
rule exactly (Draft 2020-12, no format checking, as the catalogue runs it); a schema with any
other keyword, anywhere, gets no quick check at all."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sized
from typing import Any

Check = Callable[[Any], bool]

# Words about the schema that ask nothing of the data (format too: jsonschema checks formats
# only when given a format checker, and the catalogue gives none).
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated", "readOnly"}
    | {"writeOnly", "format", "$defs"}  # $defs: applied only through $ref, which gets no quick check
)


def _is_number(value: Any) -> bool:
    # Exact types: a bool is an int to isinstance, and no number to JSON Schema.
    return type(value) is int or type(value) is float


_TYPES: dict[str, Check] = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "number": _is_number,
    # As jsonschema has it since Draft 6: 1.0 is an integer too.
    "integer": lambda v: type(v) is int or (type(v) is float and v.is_integer()),
}


class _Unsupported(Exception):
    pass


def compile_schema(schema: Any) -> Check | None:
    """A function saying True when `data` certainly matches `schema` (a schema already checked
    against the meta-schema); None when the schema uses a keyword this does not know."""
    try:
        return _compile(schema)
    except _Unsupported:
        return None


def _compile(schema: Any) -> Check:
    if schema is True:
        return lambda _value: True
    if schema is False:
        return lambda _value: False  # nothing matches: jsonschema says how, in its own words
    if not isinstance(schema, Mapping):
        raise _Unsupported
    checks: list[Check] = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        make = _KEYWORDS.get(keyword)
        if make is None:
            raise _Unsupported
        checks.append(make(value, schema))
    return _all(checks)


def _all(checks: list[Check]) -> Check:
    if not checks:
        return lambda _value: True
    if len(checks) == 1:
        return checks[0]

    def every(value: Any) -> bool:
        for check in checks:  # noqa: SIM110 - a loop: all() over a generator takes twice as long
            if not check(value):
                return False
        return True

    return every


def _type(types: Any, _schema: Mapping[str, Any]) -> Check:
    names = [types] if isinstance(types, str) else list(types)
    if any(name not in _TYPES for name in names):
        raise _Unsupported
    tests = [_TYPES[name] for name in names]
    if len(tests) == 1:
        return tests[0]
    return lambda value: any(test(value) for test in tests)


def _properties(properties: Mapping[str, Any], _schema: Mapping[str, Any]) -> Check:
    compiled = [(name, _compile(sub)) for name, sub in properties.items()]

    def check(value: Any) -> bool:
        if type(value) is not dict:
            return True
        for name, sub in compiled:  # noqa: SIM110 - as above
            if name in value and not sub(value[name]):
                return False
        return True

    return check


def _required(names: list[str], _schema: Mapping[str, Any]) -> Check:
    wanted = tuple(names)
    return lambda value: type(value) is not dict or all(name in value for name in wanted)


def _additional(extra: Any, schema: Mapping[str, Any]) -> Check:
    known = frozenset(schema.get("properties", {}))
    if extra is False:
        return lambda value: type(value) is not dict or all(key in known for key in value)
    sub = _compile(extra)
    return lambda value: type(value) is not dict or all(sub(v) for k, v in value.items() if k not in known)


def _items(items: Any, _schema: Mapping[str, Any]) -> Check:
    sub = _compile(items)
    return lambda value: type(value) is not list or all(sub(item) for item in value)


def _strings(values: Any) -> frozenset[str]:
    # Other values compare as jsonschema's `equal` has it (True is not 1, 1.0 is 1): not here.
    if not isinstance(values, list) or not all(type(v) is str for v in values):
        raise _Unsupported
    return frozenset(values)


def _enum(values: Any, _schema: Mapping[str, Any]) -> Check:
    allowed = _strings(values)
    return lambda value: type(value) is str and value in allowed


def _const(value: Any, _schema: Mapping[str, Any]) -> Check:
    (wanted,) = _strings([value])
    return lambda given: type(given) is str and given == wanted


def _bound(test: Callable[[Any, Any], bool]) -> Callable[[Any, Mapping[str, Any]], Check]:
    def make(limit: Any, _schema: Mapping[str, Any]) -> Check:
        return lambda value: not _is_number(value) or test(value, limit)

    return make


def _length(of: type[Sized], test: Callable[[int, int], bool]) -> Callable[[Any, Mapping[str, Any]], Check]:
    def make(limit: Any, _schema: Mapping[str, Any]) -> Check:
        return lambda value: type(value) is not of or test(len(value), limit)

    return make


def _pattern(pattern: str, _schema: Mapping[str, Any]) -> Check:
    try:
        search = re.compile(pattern).search
    except re.error:
        raise _Unsupported from None  # jsonschema's own search says what is wrong
    return lambda value: type(value) is not str or search(value) is not None


_KEYWORDS: dict[str, Callable[[Any, Mapping[str, Any]], Check]] = {
    "type": _type,
    "properties": _properties,
    "required": _required,
    "additionalProperties": _additional,
    "items": _items,
    "enum": _enum,
    "const": _const,
    "minimum": _bound(lambda v, limit: v >= limit),
    "maximum": _bound(lambda v, limit: v <= limit),
    "exclusiveMinimum": _bound(lambda v, limit: v > limit),
    "exclusiveMaximum": _bound(lambda v, limit: v < limit),
    "minLength": _length(str, lambda n, limit: n >= limit),
    "maxLength": _length(str, lambda n, limit: n <= limit),
    "minItems": _length(list, lambda n, limit: n >= limit),
    "maxItems": _length(list, lambda n, limit: n <= limit),
    "minProperties": _length(dict, lambda n, limit: n >= limit),
    "maxProperties": _length(dict, lambda n, limit: n <= limit),
    "pattern": _pattern,
}
