"""Checks of filter and transform sources, as a table: what passes, and every refusal with its
words and position."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tillhook.expressions.language import (
    MAX_NESTING,
    MAX_SOURCE_CHARS,
    ExpressionError,
    check,
)
from tillhook.expressions.tokens import field_paths, tokenize

UNKNOWN = "an expression sees id, type, timestamp, data and test"


@pytest.mark.parametrize(
    ("kind", "source"),
    [
        ("filter", "data.amount > 100.0"),  # the contract's example
        ("filter", "type == 'transaction.completed' && has(data.customer_id)"),
        ("filter", "type.startsWith('sale.') || id.endsWith('9')"),
        ("filter", "timestamp(timestamp) > timestamp('2026-01-01T00:00:00Z')"),
        ("filter", "data.items.exists(i, i.sku == 'coffee')"),  # i is bound by the macro
        ("filter", "data.items.all(item, item.qty > 0) && data.items.exists_one(x, x.gift)"),
        ("filter", "data.items.map(i, i.price).filter(p, p > 10.0).size() > 0"),
        ("filter", "data.items.map(i, i.qty > 1, i.sku).size() > 0"),  # map's three-argument form
        ("filter", "[1, 2].map(x, [3].map(y, x + y)).size() == 2"),  # nested scopes
        ("filter", "'amount' in data && data['amount'] > 1.0"),  # names in strings are text
        ("filter", "data.note == 'unknown // not a comment' // a real comment\n"),
        ("filter", "math.greatest([1, 2]) == 2 && lists.range(3).size() == 3"),  # namespaced functions
        ("filter", "optional.of(data.amount).hasValue()"),
        ("filter", "{'a': 1}['a'] == 1"),  # a map literal that is not the whole filter
        ("filter", "(" * MAX_NESTING + "true" + ")" * MAX_NESTING),  # as deep as allowed
        ("filter", "r'\\d' == '\\\\d' && b'\\x00' == bytes('\\x00')"),  # raw and bytes literals
        ("filter", "data.x == 1 && [0].all(data, data == 0)"),  # a field's name as a macro's variable
        ("transform", '{"text": "Sale: " + string(data.amount)}'),  # the contract's example
        ("transform", '{"text": "Sale: " + string(data.amount), "customer": data.customer_id}'),
        ("transform", "data"),
        ("transform", "'just a string'"),  # any JSON value may be a body
        ("transform", "[id, type, timestamp]"),
        ("transform", "test ? {'kind': type, 'test': true} : {'kind': type}"),  # an admin's test, or not
        ("transform", "{'lines': data.items.map(i, {'sku': i.sku, 'total': i.qty * i.price})}"),
        ("transform", "'" + "x" * (MAX_SOURCE_CHARS - 2) + "'"),  # exactly as long as allowed
    ],
)
def test_accepted(kind: str, source: str) -> None:
    assert check(source, kind) == source  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "source", "line", "column", "reason"),
    [
        # Syntax errors, CEL's parser noise said as what is wrong, at CEL's position.
        ("filter", "data.amount >", 1, 14, "the expression ends too early; expected a value"),
        ("filter", "data.amount >\n  ", 2, 3, "the expression ends too early; expected a value"),
        ("filter", "(data.amount > 1", 1, 17, "the expression ends too early; expected ')'"),
        ("filter", "data.items[0", 1, 13, "the expression ends too early; expected ']'"),
        ("transform", "[1, 2", 1, 6, "the expression ends too early; expected ']' or ','"),
        ("transform", "{'a': 1", 1, 8, "the expression ends too early; expected '}' or ','"),
        ("transform", "{'a' 1}", 1, 6, "unexpected '1'; expected ':'"),
        ("filter", "true false", 1, 6, "unexpected 'false' after a complete expression"),
        (
            "filter",
            "data.amount > 1 and true",
            1,
            17,
            "unexpected 'and'; expected an operator or the end (CEL writes and as &&)",
        ),
        (
            "filter",
            "data.a > 1\nor data.b",
            2,
            1,
            "unexpected 'or'; expected an operator or the end (CEL writes or as ||)",
        ),
        ("filter", "1 ++ 2", 1, 4, "unexpected '+'; expected a value"),
        ("filter", "type = 'x'", 1, 6, "'=' is not an operator: compare with =="),
        ("filter", "true & false", 1, 6, "'&' is not an operator: use &&"),
        ("filter", "data.", 1, 6, "expected a field name after '.'"),
        ("filter", "data.(a)", 1, 6, "cannot read '.(' here"),
        ("filter", "'ééé' b", 1, 7, "unexpected 'b' after a complete expression"),  # columns count characters
        ("filter", "data.é == 1", 1, 6, "'é' cannot be used here: names are ASCII letters, digits and _"),
        ("filter", "type == 'abc", 1, 9, "a string is not closed"),
        ("filter", "@", 1, 1, "'@' is not part of CEL"),
        ("filter", "1 ? true", 1, 9, "the expression ends too early; expected an operator or ':'"),
        ("filter", "has(data)", 1, 5, "has() takes a field, like has(data.amount)"),
        (
            "filter",
            "data.items.map(1, 2)",
            1,
            16,
            "a comprehension's variable must be a plain name, like map(x, x * 2)",
        ),
        ("filter", "data.n > 99999999999999999999", 1, 10, "the integer is out of range (CEL integers are 64-bit)"),
        ("filter", "true ? 1 : " * 96 + "1", 1, 1057, "the expression nests too deeply; split it up"),
        ("filter", "data.?x", 1, 5, "optional field selection (.?) is not supported; test with has() first"),
        # Names: only the event's fields, with the first free use and a hint.
        ("filter", "amount > 100.0", 1, 1, f"unknown name 'amount': {UNKNOWN} (did you mean data.amount?)"),
        (
            "filter",
            "data.a > 1 && amount > 100.0",
            1,
            15,
            f"unknown name 'amount': {UNKNOWN} (did you mean data.amount?)",
        ),
        ("filter", "'amount' + amount == ''", 1, 12, f"unknown name 'amount': {UNKNOWN} (did you mean data.amount?)"),
        ("filter", "dat.amount > 1.0", 1, 1, f"unknown name 'dat': {UNKNOWN} (did you mean data?)"),
        ("filter", "tpye == 'sale'", 1, 1, f"unknown name 'tpye': {UNKNOWN} (did you mean type?)"),
        ("filter", "!tset", 1, 2, f"unknown name 'tset': {UNKNOWN} (did you mean test?)"),
        (
            "filter",
            "data.items.exists(i, i.sku == sku)",
            1,
            31,
            f"unknown name 'sku': {UNKNOWN} (did you mean data.sku?)",
        ),
        (
            "filter",
            "data.items.map(i, i) == [] || i == 1",
            1,
            31,
            f"unknown name 'i': {UNKNOWN} (did you mean data.i?)",
        ),  # i is free outside its map
        (
            "filter",
            "data.m.all(k, v, v > 0)",
            1,
            15,
            f"unknown name 'v': {UNKNOWN} (did you mean data.v?)",
        ),  # no two-variable forms
        ("filter", "math.nope(1) == 1", 1, 1, "unknown function 'math.nope'"),
        ("filter", ".data.x == 1", 1, 1, "a name cannot start with a dot: write data"),
        # A filter that plainly gives no true or false.
        ("filter", "'yes'", 1, 1, "a filter must give true or false, and this one gives a string"),
        ("filter", "1", 1, 1, "a filter must give true or false, and this one gives a number"),
        ("filter", "[data.amount > 1.0]", 1, 1, "a filter must give true or false, and this one gives a list"),
        ("filter", "{'ok': true}", 1, 1, "a filter must give true or false, and this one gives a map"),
        ("filter", "null", 1, 1, "a filter must give true or false, and this one gives null"),
        # Text that is not text.
        ("filter", "type == '\ud800'", 1, 10, "holds an unpaired surrogate (U+D800), which is not text"),
        # Deep nesting is refused before CEL's parser recurses into it.
        (
            "filter",
            "(" * 2000,
            1,
            MAX_NESTING + 1,
            f"brackets nest deeper than {MAX_NESTING} levels; split the expression up",
        ),
        (
            "transform",
            "[" * 20 + "{'a': " * 20,
            1,
            20 + 6 * 12 + 1,
            f"brackets nest deeper than {MAX_NESTING} levels; split the expression up",
        ),
    ],
)
def test_refused_with_position(kind: str, source: str, line: int, column: int, reason: str) -> None:
    with pytest.raises(ExpressionError) as refused:
        check(source, kind)  # type: ignore[arg-type]
    error = refused.value
    assert (error.reason, error.line, error.column) == (reason, line, column)
    assert str(error) == f"line {line}, column {column}: {reason}"


@pytest.mark.parametrize(
    ("kind", "source", "reason"),
    [
        ("filter", "", "must not be empty: write an expression, like data.amount > 100.0"),
        ("filter", " \n\t ", "must not be empty: write an expression, like data.amount > 100.0"),
        ("transform", "", 'must not be empty: write an expression, like {"text": "Sale: " + string(data.amount)}'),
        ("filter", "x" * (MAX_SOURCE_CHARS + 1), "is 4,097 characters long, over the 4,096 allowed"),
        ("filter", "(" * 3000 + "true" + ")" * 3000, "is 6,004 characters long, over the 4,096 allowed"),
    ],
)
def test_refused_without_position(kind: str, source: str, reason: str) -> None:
    with pytest.raises(ExpressionError) as refused:
        check(source, kind)  # type: ignore[arg-type]
    assert (refused.value.reason, refused.value.line, refused.value.column) == (reason, None, None)
    assert str(refused.value) == reason


def test_error_reads_after_a_field_name() -> None:
    with pytest.raises(ValueError) as refused:  # a ValueError, so pydantic validators pass it on
        check("data.amount >", "filter")
    assert f"endpoints[0].filter: {refused.value}" == (
        "endpoints[0].filter: line 1, column 14: the expression ends too early; expected a value"
    )


def test_field_paths_name_what_a_field_is_selected_from() -> None:
    tokens = tokenize("data.customer.name == 'x' && f(data).name == '' && data.items.map(i, i.name)")
    assert field_paths(tokens, "name") == {"data.customer", None, "i"}
    assert field_paths(tokenize("data['name'] == 1"), "name") == set()


def test_the_worst_sources_never_crash_the_process() -> None:
    """The longest chains and deepest nesting check() lets CEL parse, each checked on the main
    thread and on a thread with 2 MiB of stack (the daemon's have 8), in a process of its own
    so that a stack overflow shows as a failure here instead of killing the tests."""
    program = textwrap.dedent(
        f"""
        import threading
        from tillhook.expressions.language import ExpressionError, check
        n = {MAX_SOURCE_CHARS}
        shapes = [
            "+".join(["1"] * (n // 2)),
            "data" + ".a" * ((n - 4) // 2),
            "data" + "[0]" * ((n - 4) // 3),
            "-" * (n - 1) + "1",
            "&&".join(["true"] * (n // 6)),
            "[1]" + ".map(x, x)" * ((n - 3) // 10),
            "(" * {MAX_NESTING} + "+".join(["1"] * ((n - 2 * {MAX_NESTING}) // 2)) + ")" * {MAX_NESTING},
            "([" * {MAX_NESTING // 2} + "1" + "])" * {MAX_NESTING // 2},
            "true ? 1 : " * 95 + "1",
            "true ? 1 : " * 96 + "1",
            "(" * 3000 + "1" + ")" * 3000,
            "(" * 4000,
            "[" * 4000,
        ]
        outcomes = []
        def run():
            for shape in shapes:
                try:
                    check(shape, "transform")
                    outcomes.append("ok")
                except ExpressionError:
                    outcomes.append("refused")
        run()
        threading.stack_size(2 * 2**20)
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        print(",".join(outcomes))
        """
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    expected = ["ok"] * 9 + ["refused"] * 4
    assert done.stdout.strip().split(",") == expected * 2
