"""How free slots are shared out among endpoints with due work."""

from __future__ import annotations

import pytest

from tillhook.slots import share


@pytest.mark.parametrize(
    ("wanted", "budget", "busy", "first", "given"),
    [
        ({"a": 2, "b": 3}, 10, {}, 0, {"a": 2, "b": 3}),  # enough for everyone
        ({"a": 4, "b": 4}, 4, {}, 0, {"a": 2, "b": 2}),  # an even split
        ({"a": 4, "b": 4}, 4, {"a": 3}, 0, {"a": 1, "b": 3}),  # the busier one gets less
        ({"a": 4, "b": 4}, 1, {}, 0, {"a": 1}),  # one slot: whose turn it is...
        ({"a": 4, "b": 4}, 1, {}, 1, {"b": 1}),  # ...rotates from call to call
        ({"a": 1, "b": 4, "c": 4}, 5, {}, 0, {"a": 1, "b": 2, "c": 2}),  # nobody gets more than it wants
        ({}, 3, {}, 0, {}),
    ],
)
def test_share(wanted, budget, busy, first, given) -> None:
    assert share(wanted, budget, busy, first) == given
