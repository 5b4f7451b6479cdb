"""What a validation error asks of the person who made it, in plain words: pydantic's errors
in, each field's path and one sentence out. The one translation the config file, the admin
API (bodies and queries), ingest and the dashboard's forms all use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from tillhook.models import EVENT_TYPE_PATTERN, field_path
from tillhook.rules import ENDPOINT_NAME_PATTERN

# Error types whose fix is the same whatever the constraint: name the kind of value wanted.
_KINDS = {
    "string_type": "must be a string",
    "string_unicode": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number, without a fractional part",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be an array",
    "tuple_type": "must be an array",
    "set_type": "must be an array of distinct values",
    "none_required": "must be null",
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "finite_number": "must be a finite number",
}
_OBJECT_TYPES = frozenset({"dict_type", "model_type", "model_attributes_type", "mapping_type"})
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "greater_than": ("gt", "must be more than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "less_than": ("lt", "must be less than {}"),
    "multiple_of": ("multiple_of", "must be a multiple of {}"),
}
# What a length counts, by the `field_type` pydantic names in too_short / too_long.
_UNITS = {"List": "item", "Tuple": "item", "Set": "item", "Dictionary": "entry", "Data": "byte"}
_RAW_PREFIXES = ("Value error, ", "Assertion failed, ")
# A pattern is said as what it asks for, wherever it is used.
_PATTERNS = {
    ENDPOINT_NAME_PATTERN: "must be 1 to 64 letters, digits, _ . or -, starting with a letter or digit",
    EVENT_TYPE_PATTERN: "must be dot-separated names of letters, digits, _ or -, like transaction.completed",
}
# The error type of a refusal that belongs to one part of the value validated.
_PART = "part_refused"


@dataclass(frozen=True, slots=True)
class Terms:
    """How the source of the values speaks of them."""

    mapping: str = "a JSON object"
    unknown: str = "unknown field"


JSON = Terms()
TOML = Terms(mapping="a table", unknown="unknown key")


def field_errors(
    exc: ValidationError, prefix: str = "", *, terms: Terms = JSON, whole: str = ""
) -> list[dict[str, str]]:
    """Each error as `{"field": its path, "message": what to fix}`: paths as people write them
    (`endpoints[0].url`, `[3].data`), under `prefix`; `whole` is the path of an error about
    the whole value."""
    found = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if error["type"] == _PART:
            loc += (error["ctx"]["part"],)
        message = terms.unknown if error["type"] == "extra_forbidden" else plain(error, object_name=terms.mapping)
        found.append({"field": field_path(loc, prefix) or whole, "message": message})
    return found


def part_refused(part: str, message: str) -> PydanticCustomError:
    """To raise from a validator when the fault is in one part of its value (the `header` of
    an `extra_signature` that clashes with the endpoint's headers): field_errors names that
    part in the path."""
    return PydanticCustomError(_PART, "{message}", {"message": message, "part": part})


def plain(error: dict[str, Any] | Any, *, object_name: str = "a JSON object") -> str:
    """The sentence for one pydantic error (`ValidationError.errors()` item), said of the
    field it names: "must be a string", "must have at least 16 characters". `object_name`
    is what a mapping is called where the value came from ("a table" in TOML). Errors this
    does not know keep pydantic's own message, the last resort."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _KINDS:
        return _KINDS[kind]
    if kind in _OBJECT_TYPES:
        return f"must be {object_name}"
    if kind in _BOUNDS:
        key, sentence = _BOUNDS[kind]
        if key in ctx:
            return sentence.format(_number(ctx[key]))
    if kind in ("string_too_short", "string_too_long", "too_short", "too_long"):
        return _length(kind, ctx)
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERNS:
        return _PATTERNS[ctx["pattern"]]
    if kind in ("literal_error", "enum") and "expected" in ctx:
        return f"must be one of {ctx['expected']}"
    message = str(error["msg"])
    for prefix in _RAW_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def _length(kind: str, ctx: dict[str, Any]) -> str:
    shortest = kind.endswith("too_short")
    limit = ctx.get("min_length" if shortest else "max_length")
    if not isinstance(limit, int):
        return "is too short" if shortest else "is too long"
    if shortest and limit == 1:
        return "must not be empty"
    # Strings, and constrained values like a secret, count characters.
    unit = _UNITS.get(str(ctx.get("field_type")), "character")
    plural = unit if limit == 1 else ("entries" if unit == "entry" else unit + "s")
    return f"must have {'at least' if shortest else 'at most'} {limit} {plural}"


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
