"""CEL source read as tokens, without parsing: how deep its brackets nest, which names are read
as variables (outside the comprehension that binds them), and which paths a field is selected
from. The nesting check runs before CEL's own parser sees the text; the rest lets errors quote
the source precisely."""

from __future__ import annotations

import re
from collections.abc import Container, Iterator
from dataclasses import dataclass

# The comprehension macros of cel-rust: `list.map(x, ...)` binds x in its other arguments.
# cel-rust 0.14 has no two-variable forms (`map.all(k, v, ...)` fails as an unknown name).
MACROS = frozenset({"map", "filter", "all", "exists", "exists_one"})
_KEYWORDS = frozenset({"true", "false", "null", "in"})
_OPENING = {"(": ")", "[": "]", "{": "}"}
_CLOSING = frozenset(_OPENING.values())

# Mirrors CEL's lexical grammar closely enough to keep strings and comments out of the checks:
# a bracket or a name inside a string literal is text, not syntax. Raw strings (r'...') have
# no escapes; cel-rust takes the prefixes r, b, br (any case) but not rb.
_PATTERN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
    |(?P<string>
        [bB]?[rR](?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|"[^"\n]*")
        |[bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^\\'\n])*'|"(?:\\.|[^\\"\n])*")
    )
    |(?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:[0-9]+\.[0-9]+|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?[uU]?)
    |(?P<name>[_a-zA-Z][_a-zA-Z0-9]*)
    |(?P<punct>&&|\|\||==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # name, string, number, punct or other
    text: str
    offset: int  # in characters from the start of the source


def tokenize(source: str) -> list[Token]:
    """Every token but spaces and comments. Never fails: what CEL would not take comes out as
    `other` tokens (an unclosed quote, say), and the parser reports it."""
    found = []
    for match in _PATTERN.finditer(source):
        kind = match.lastgroup or "other"
        if kind != "space":
            found.append(Token(kind, match.group(), match.start()))
    return found


def position(source: str, offset: int) -> tuple[int, int]:
    """Line and column of an offset, from 1, in characters, as CEL's parser counts them."""
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def too_deep(tokens: list[Token], limit: int) -> Token | None:
    """The first opening bracket nested deeper than limit. An unclosed quote makes the rest of
    its line a string for CEL but brackets here: counting more is the safe side."""
    depth = 0
    for token in tokens:
        if token.text in _OPENING:
            depth += 1
            if depth > limit:
                return token
        elif token.text in _CLOSING:
            depth = max(depth - 1, 0)
    return None


def _ends_value(token: Token) -> bool:
    return token.kind in ("name", "number", "string") or token.text in _CLOSING


def selected(tokens: list[Token], i: int) -> bool:
    """Whether tokens[i] is selected from a value: `amount` in `data.amount`, not `.data`."""
    return i >= 2 and tokens[i - 1].text == "." and _ends_value(tokens[i - 2])


def _text(tokens: list[Token], i: int) -> str:
    return tokens[i].text if 0 <= i < len(tokens) else ""


def variables(tokens: list[Token], qualified: Container[str]) -> Iterator[Token]:
    """The names read as variables, in order: not selected fields, not function names, not
    the namespace of a known function (`math` in `math.abs(x)`; qualified holds the dotted
    names), and not a comprehension's variable inside its comprehension."""
    scopes: list[str | None] = []  # per open bracket: the name a macro binds inside it
    skip = -1
    for i, token in enumerate(tokens):
        if token.text in _OPENING:
            binds = None
            if (
                token.text == "("
                and selected(tokens, i - 1)
                and tokens[i - 1].text in MACROS
                and tokens[i + 1 : i + 2]
                and tokens[i + 1].kind == "name"
                and _text(tokens, i + 2) == ","
            ):
                binds = tokens[i + 1].text
                skip = i + 1
            scopes.append(binds)
            continue
        if token.text in _CLOSING:
            if scopes:
                scopes.pop()
            continue
        if token.kind != "name" or i == skip or token.text in _KEYWORDS or selected(tokens, i):
            continue
        following = _text(tokens, i + 1)
        if following in ("(", "{"):  # a function call, or a message type's name
            continue
        if following == "." and _text(tokens, i + 3) == "(" and f"{token.text}.{_text(tokens, i + 2)}" in qualified:
            continue
        if token.text in scopes:
            continue
        yield token


def field_paths(tokens: list[Token], field: str) -> set[str | None]:
    """What `field` is selected from at each place it is: {"data"} for `data.amount`, with
    None for a place whose target is no plain path (`f(x).amount`, `items[0].amount`)."""
    paths: set[str | None] = set()
    for i, token in enumerate(tokens):
        if token.kind != "name" or token.text != field or not selected(tokens, i):
            continue
        j = i - 2
        parts = []
        while tokens[j].kind == "name":
            parts.append(tokens[j].text)
            if not selected(tokens, j):
                break
            j -= 2
        else:
            paths.add(None)
            continue
        paths.add(".".join(reversed(parts)))
    return paths
