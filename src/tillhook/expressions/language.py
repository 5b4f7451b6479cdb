"""Checks of a filter's or transform's source in the daemon itself, when an endpoint is created
or the config is loaded: so a mistake is refused then, with its position, instead of failing
every delivery. It compiles but never evaluates; evaluation belongs to the sandbox.

cel-rust's parser recurses, on the caller's thread, and a stack overflow there would kill the
daemon. Brackets nested deeper than MAX_NESTING are refused before it parses; what is left
within MAX_SOURCE_CHARS needs at most 1 MiB of stack (measured: the worst is a chain of 2,000
`+` or `.a`, between 768 KiB and 1 MiB), well within the 8 MiB of the daemon's threads."""

from __future__ import annotations

import difflib
import re
from typing import Literal

import cel
from cel import stdlib

from tillhook.expressions import functions
from tillhook.expressions.functions import FIELDS
from tillhook.expressions.tokens import Token, position, tokenize, too_deep, variables

MAX_SOURCE_CHARS = 4096
# cel-rust's own limit is 96 levels of its recursion, reported in its internal words; real
# filters and transforms nest a few levels.
MAX_NESTING = 32

Kind = Literal["filter", "transform"]
EXAMPLES: dict[str, str] = {
    "filter": "data.amount > 100.0",
    "transform": '{"text": "Sale: " + string(data.amount)}',
}
# Functions cel-rust has under a dotted name, beside the extended library's and tillhook's.
_NATIVE_QUALIFIED = ("optional.of", "optional.none", "optional.ofNonZeroValue")


class ExpressionError(ValueError):
    """A filter or transform that cannot be used, said as what to fix, with its position."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return self.reason
        return f"line {self.line}, column {self.column}: {self.reason}"


def _at(source: str, offset: int, reason: str) -> ExpressionError:
    return ExpressionError(reason, *position(source, offset))


def check(source: str, kind: Kind) -> str:
    """The source, if it compiles and reads no name but the event's fields; else
    ExpressionError."""
    if not source.strip():
        raise ExpressionError(f"must not be empty: write an expression, like {EXAMPLES[kind]}")
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"is {len(source):,} characters long, over the {MAX_SOURCE_CHARS:,} allowed")
    try:
        source.encode("utf-8")
    except UnicodeEncodeError as e:
        surrogate = f"U+{ord(source[e.start]):04X}"
        raise _at(source, e.start, f"holds an unpaired surrogate ({surrogate}), which is not text") from None
    tokens = tokenize(source)
    deep = too_deep(tokens, MAX_NESTING)
    if deep is not None:
        raise _at(source, deep.offset, f"brackets nest deeper than {MAX_NESTING} levels; split the expression up")
    try:
        program = cel.compile(source)
    except ValueError as e:
        raise syntax_error(str(e)) from None
    _check_names(source, tokens, program.variables())
    if kind == "filter":
        _check_filter_shape(source, tokens)
    return source


def qualified_functions() -> frozenset[str]:
    """Every function called by a dotted name (math.abs, lists.range, ...)."""
    names = [*stdlib.STDLIB_FUNCTIONS, *functions.FUNCTIONS, *_NATIVE_QUALIFIED]
    return frozenset(name for name in names if "." in name)


def _check_names(source: str, tokens: list[Token], referenced: list[str]) -> None:
    unknown = {name for name in referenced if name not in FIELDS}
    if not unknown:
        return
    qualified = qualified_functions()
    for token in variables(tokens, qualified):
        if token.text in unknown:
            raise _at(source, token.offset, _unknown_name(tokens, token, qualified))
        if f".{token.text}" in unknown:
            raise _at(source, token.offset - 1, f"a name cannot start with a dot: write {token.text}")
    # Only names bound by a comprehension are left: cel-rust lists them with the variables.


def _unknown_name(tokens: list[Token], token: Token, qualified: frozenset[str]) -> str:
    i = tokens.index(token)
    namespaces = {name.split(".")[0] for name in qualified}
    if token.text in namespaces and tokens[i + 1 : i + 2] and tokens[i + 1].text == ".":
        called = tokens[i + 2].text if i + 2 < len(tokens) else ""
        return f"unknown function '{token.text}.{called}'"
    close = difflib.get_close_matches(token.text, FIELDS, n=1, cutoff=0.75)
    guess = close[0] if close else f"data.{token.text}"
    return f"unknown name '{token.text}': an expression sees id, type, timestamp, data and test (did you mean {guess}?)"


_LITERAL_TYPES = {"string": "a string", "number": "a number"}


def _check_filter_shape(source: str, tokens: list[Token]) -> None:
    """A filter that is plainly no true-or-false: one literal, a list or a map."""
    first = tokens[0]
    what = None
    if len(tokens) == 1:
        what = _LITERAL_TYPES.get(first.kind) or ("null" if first.text == "null" else None)
    elif first.text in ("[", "{") and _closes_at_end(tokens):
        what = "a list" if first.text == "[" else "a map"
    if what:
        raise _at(source, first.offset, f"a filter must give true or false, and this one gives {what}")


def _closes_at_end(tokens: list[Token]) -> bool:
    depth = 0
    for i, token in enumerate(tokens):
        if token.kind == "punct":
            depth += token.text in ("(", "[", "{")
            depth -= token.text in (")", "]", "}")
        if depth == 0:
            return i == len(tokens) - 1
    return False


# cel-rust's parser errors: `ERROR: <input>:1:14: Syntax error: mismatched input ...`.
_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")
# The tokens ANTLR lists as expected, grouped: any that starts a value, any operator.
_VALUE_STARTS = frozenset(
    {"'['", "'{'", "'('", "'.'", "'-'", "'!'", "'true'", "'false'", "'null'", "'?'"}
    | {"NUM_FLOAT", "NUM_INT", "NUM_UINT", "STRING", "BYTES", "IDENTIFIER"}
)
_OPERATORS = frozenset(
    {"'=='", "'!='", "'in'", "'<'", "'<='", "'>='", "'>'", "'&&'", "'||'"}
    | {"'['", "'.'", "'-'", "'?'", "'+'", "'*'", "'/'", "'%'"}
)
_SPELLINGS = {"and": "&&", "or": "||", "not": "!", "=": "=="}


def syntax_error(message: str) -> ExpressionError:
    """CEL's parser error as words, at its position: the first error that is not one of the
    parser's internal follow-ups (`Incomplete ExprContext`)."""
    found = [m for m in _ERROR.finditer(message) if not m.group(3).startswith("Incomplete ")]
    if not found:
        detail = message.split(": ", 1)[-1].strip()
        return ExpressionError(f"does not compile: {detail}")
    line, column, text = found[0].groups()
    return ExpressionError(_reason(text.removeprefix("Syntax error: ")), int(line), int(column))


def _reason(text: str) -> str:
    if m := re.fullmatch(r"token recognition error at: '(.*)'", text, re.DOTALL):
        return _unreadable(m.group(1))
    if m := re.fullmatch(r"(?:mismatched|extraneous) input '(.*)' expecting (.*)", text, re.DOTALL):
        got, expected = m.groups()
        if got == "<EOF>":
            return f"the expression ends too early; expected {_expected(expected)}"
        if expected == "<EOF>":
            return f"unexpected '{got}' after a complete expression{_spelling(got)}"
        return f"unexpected '{got}'; expected {_expected(expected)}{_spelling(got)}"
    if m := re.fullmatch(r"missing (.*) at '(.*)'", text, re.DOTALL):
        wanted, got = m.groups()
        if got == "<EOF>":
            return f"the expression ends too early; expected {wanted}"
        return f"unexpected '{got}'; expected {wanted}"
    if m := re.fullmatch(r"no viable alternative at input '(.*)'", text, re.DOTALL):
        if m.group(1).endswith("."):
            return "expected a field name after '.'"
        return f"cannot read '{m.group(1)}' here"
    if "Recursion limit" in text:
        return "the expression nests too deeply; split it up"
    return _WORDS.get(text.split(":")[0], text)


_WORDS = {
    "invalid int literal": "the integer is out of range (CEL integers are 64-bit)",
    "invalid uint literal": "the unsigned integer is out of range (CEL integers are 64-bit)",
    "invalid double literal": "the number is out of range",
    "invalid string literal": "the string holds an invalid escape",
    "invalid bytes literal": "the bytes literal holds an invalid escape",
    "argument must be a simple name": "a comprehension's variable must be a plain name, like map(x, x * 2)",
    "invalid argument to has() macro": "has() takes a field, like has(data.amount)",
    "unsupported syntax '.?'": "optional field selection (.?) is not supported; test with has() first",
    "unsupported syntax '?'": "optional elements (?) are not supported",
}


def _unreadable(text: str) -> str:
    first = text[:1]
    if first in ("'", '"') or text[:2].lower() in ("r'", 'r"', "b'", 'b"'):
        return "a string is not closed"
    if first in _SPELLINGS:
        return f"'{first}' is not an operator: compare with =="
    if first in "&|":
        return f"'{first}' is not an operator: use {first * 2}"
    if not first.isascii():
        return f"'{first}' cannot be used here: names are ASCII letters, digits and _"
    return f"'{first}' is not part of CEL"


def _expected(expected: str) -> str:
    items = [item.strip() for item in expected.strip("{}").split(", ")] if expected.startswith("{") else [expected]
    value = "IDENTIFIER" in items
    operator = "'+'" in items
    parts = ["a value"] if value else []
    parts += ["an operator"] if operator else []
    for item in items:
        if item == "<EOF>" or (value and item in _VALUE_STARTS) or (operator and item in _OPERATORS):
            continue
        parts.append(item)
    if "<EOF>" in items:
        parts.append("the end")
    return " or ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _spelling(got: str) -> str:
    return f" (CEL writes {got} as {_SPELLINGS[got]})" if got in _SPELLINGS and got != "=" else ""
