"""What a validation error asks of the person who made it, in plain words. Pure: pydantic's
error dicts in (their `type` and `ctx`), one sentence out."""

from __future__ import annotations

from typing import Any

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
