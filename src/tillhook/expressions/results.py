"""What an evaluation gives, made ready for the sandbox's reply: a filter's true or false, a
transform's JSON body, or CEL's error said in words. Runs in the sandbox process."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cel import OptionalValue, stdlib

from tillhook.expressions import functions
from tillhook.expressions.protocol import MAX_REASON_CHARS
from tillhook.expressions.tokens import field_paths, tokenize

# cel-rust reports a built-in called with arguments it has no overload for as undefined.
_NATIVE = frozenset(
    {"size", "contains", "startsWith", "endsWith", "matches", "dyn", "type"}
    | {"int", "uint", "double", "string", "bytes", "timestamp", "duration"}
    | {"getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear"}
    | {"getHours", "getMinutes", "getSeconds", "getMilliseconds"}
    | {"orValue", "hasValue", "value", "or", "optional.of", "optional.none", "optional.ofNonZeroValue"}
)
# pyo3 raises a Rust panic as a BaseException, so that `except Exception` lets it through.
PANIC = "PanicException"
_CONVERT = "CEL does not convert between types: use int(), uint(), double() or string()"


class Failure(Exception):
    """An evaluation that gave no usable result; bound names the bound it hit, if any."""

    def __init__(self, reason: str, bound: str | None = None, size: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_REASON_CHARS]
        self.bound = bound
        self.size = size


def type_name(value: Any) -> str:
    """A value's CEL type, with its article."""
    names = {
        bool: "a bool",
        int: "an int",
        float: "a double",
        str: "a string",
        bytes: "bytes",
        list: "a list",
        dict: "a map",
        datetime: "a timestamp",
        timedelta: "a duration",
        OptionalValue: "an optional",
    }
    return "null" if value is None else names.get(type(value), f"a {type(value).__name__}")


def filter_result(value: Any) -> bool:
    if type(value) is not bool:
        raise Failure(f"it gives {type_name(value)}, not true or false")
    return value


def transform_body(value: Any, output_bytes: int) -> bytes:
    """The result as compact JSON, its keys sorted: cel-rust's maps come back in a new order
    at every evaluation, and a body must be the same bytes each time (in a preview and in the
    delivery, on every retry). Timestamps become RFC 3339 in UTC (`...Z`, to the microsecond),
    durations their seconds with an `s` (`"5400s"` for 90m, as protobuf's JSON writes them);
    bytes, NaN, Infinity and optionals have no JSON and are refused."""
    try:
        body = orjson.dumps(_jsonable(value), option=orjson.OPT_UTC_Z | orjson.OPT_SORT_KEYS)
    except _Unjsonable as e:
        where = "".join(reversed(e.path)).removeprefix(".")
        place = f"holds {e.what} at {where}" if where else f"is {e.what}"
        raise Failure(f"the result {place}, and JSON has {e.remedy}") from None
    if len(body) > output_bytes:
        raise Failure("the body is too large", bound="output", size=len(body))
    return body


class _Unjsonable(Exception):
    def __init__(self, what: str, remedy: str) -> None:
        self.what = what
        self.remedy = remedy
        self.path: list[str] = []


_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")


def _jsonable(value: Any) -> Any:
    kind = type(value)
    if kind in (str, bool, int) or value is None:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _Unjsonable("NaN" if math.isnan(value) else "Infinity", "no NaN or Infinity")
        return value
    if kind is list:
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_jsonable(item))
            except _Unjsonable as e:
                e.path.append(f"[{i}]")
                raise
        return items
    if kind is dict:
        return _jsonable_map(value)
    if kind is datetime:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if kind is timedelta:
        return _seconds(value)
    if kind is bytes:
        raise _Unjsonable("bytes", "none: encode them with base64.encode(...)")
    if kind is OptionalValue:
        raise _Unjsonable("an optional", "none: take its value with .orValue(...)")
    raise _Unjsonable(type_name(value), "no such type")


def _jsonable_map(value: dict[Any, Any]) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        # CEL map keys are strings, ints, uints or bools; JSON's are strings.
        name = ("true" if key else "false") if type(key) is bool else str(key)
        try:
            out[name] = _jsonable(item)
        except _Unjsonable as e:
            e.path.append(f".{name}" if _NAME.fullmatch(name) else f"[{orjson.dumps(name).decode()}]")
            raise
    return out


def _seconds(value: timedelta) -> str:
    micros = value // timedelta(microseconds=1)
    whole, fraction = divmod(abs(micros), 1_000_000)
    sign = "-" if micros < 0 else ""
    return f"{sign}{whole}" + (f".{fraction:06d}".rstrip("0") if fraction else "") + "s"


def is_memory(error: BaseException) -> bool:
    """A MemoryError, raised here or inside a function CEL called (which it wraps)."""
    return isinstance(error, MemoryError) or "MemoryError" in str(error)


def describe(error: BaseException, source: str) -> str:
    """CEL's error in words, with a hint of what to write instead."""
    text = str(error)
    if type(error).__name__ == PANIC:
        return f"CEL failed inside: {_first_sentence(text)}"
    if isinstance(error, KeyError):
        return _missing(str(error.args[0]) if error.args else "", source)
    if isinstance(error, IndexError):
        return _first_sentence(text)
    if isinstance(error, ZeroDivisionError):
        return "modulo by zero" if "modulo" in text else "division by zero"
    if isinstance(error, OverflowError):
        return _first_sentence(_function_error(text) or text) + " (CEL integers are 64-bit)"
    if isinstance(error, TypeError):
        if text.startswith("No such overload"):
            return f"no such overload: the operation is not defined for these types ({_CONVERT})"
        if m := re.match(r"Unsupported operation: (.*?)\. ", text):
            return f"unsupported operation: {m.group(1)} ({_CONVERT})"
        return _first_sentence(text)
    if isinstance(error, RuntimeError):
        if m := re.match(r"Undefined variable or function: '(.*?)'", text):
            name = m.group(1)
            if name in _NATIVE or name in stdlib.STDLIB_FUNCTIONS or name in functions.FUNCTIONS:
                return f"{name}() does not take these arguments (check their types)"
            return f"unknown function or name '{name}'"
        return _first_sentence(_function_error(text) or text)
    return _first_sentence(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def _missing(field: str, source: str) -> str:
    paths = field_paths(tokenize(source), field)
    if len(paths) == 1 and (path := next(iter(paths))) is not None:
        return f"no field '{field}' in {path} (test for it with has({path}.{field}))"
    return f"no field '{field}' (test for it with has(...))"


def _function_error(text: str) -> str | None:
    """`Function 'int' error: <what>. Check function arguments...` as `int() failed: <what>`."""
    m = re.match(r"Function '(.*?)' error: (?:Python function call failed: )?(?:\w+Error: )?(.*)", text, re.DOTALL)
    if m is None:
        return None
    detail = m.group(2).removesuffix(" Check function arguments and their types.").rstrip(". ")
    return f"{m.group(1)}() failed: {detail}"


def _first_sentence(text: str) -> str:
    """The first sentence, lower-cased to follow a colon: `Arithmetic overflow in 'add'`."""
    line = text.strip().splitlines()[0] if text.strip() else text
    end = re.search(r"\.(\s|$)", line)
    sentence = line[: end.start()] if end else line
    if sentence[1:2].islower():
        sentence = sentence[0].lower() + sentence[1:]
    return sentence[:MAX_REASON_CHARS]
