"""Validation errors in words that say what to fix, over real errors from our own models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tillhook.api.parsing import validate
from tillhook.api.schemas import EndpointIn
from tillhook.config import Config, validate_config
from tillhook.envelope import parse_body
from tillhook.errors import ConfigError, InvalidInput
from tillhook.models import EventIn
from tillhook.wording import plain

URL = "https://hooks.example.com/x"


def only_error(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    (error,) = caught.value.errors()
    return dict(error)


@pytest.mark.parametrize(
    ("model", "data", "said"),
    [
        # Each row: pydantic's own wording in the comment, ours in the table.
        (EventIn, {"type": "a", "data": []}, "must be a JSON object"),  # Input should be a valid dictionary
        (EventIn, {"type": 5, "data": {}}, "must be a string"),  # Input should be a valid string
        (EventIn, {"data": {}}, "is required"),  # Field required
        (EventIn, {"type": "a", "data": {}, "colour": 1}, "unknown field"),  # Extra inputs are not permitted
        (EventIn, {"type": "a", "data": {}, "id": ""}, "must not be empty"),  # at least 1 character
        (EventIn, {"type": "a" * 129, "data": {}}, "must have at most 128 characters"),
        (EndpointIn, {"name": "a", "url": URL, "max_in_flight": "many"}, "must be a whole number"),  # valid integer
        (
            EndpointIn,
            {"name": "a", "url": URL, "max_in_flight": 1.5},
            "must be a whole number, without a fractional part",
        ),
        (EndpointIn, {"name": "a", "url": URL, "max_in_flight": 0}, "must be at least 1"),  # greater than or equal
        (EndpointIn, {"name": "a", "url": URL, "max_in_flight": 1001}, "must be at most 1000"),
        (EndpointIn, {"name": "a", "url": URL, "rate_limit": 0}, "must be more than 0"),  # greater than 0
        (EndpointIn, {"name": "a", "url": URL, "rate_limit": "fast"}, "must be a number"),  # valid number
        (EndpointIn, {"name": "a", "url": URL, "ordered": "maybe"}, "must be true or false"),  # valid boolean
        (EndpointIn, {"name": "a", "url": URL, "events": "sale.*"}, "must be an array"),  # valid list
        (EndpointIn, {"name": "a", "url": URL, "events": ["x"] * 101}, "must have at most 100 items"),
        (Config, {"auth": {"ingest_token": "short"}}, "must have at least 16 characters"),  # at least 16 items
        (Config, {"delivery": {"max_in_flight": "lots"}}, "must be a whole number"),
        (Config, {"delivery": {"retry_schedule": []}}, "must not be empty"),  # at least 1 item after validation
        (Config, {"delivery": {"allow_http": "true"}}, "must be true or false"),
        (Config, {"server": {"max_body_bytes": 10**9}}, "must be at most 67108864"),
        (Config, {"log": {"level": "loud"}}, "must be one of 'debug', 'info', 'warning' or 'error'"),
        (Config, {"delivery": {"timeout": 5}}, 'must be a duration string with a unit, like "500ms"'),  # ours, kept
    ],
)
def test_pydantic_errors_in_plain_words(model: type[BaseModel], data: dict[str, Any], said: str) -> None:
    assert plain(only_error(model, data)).startswith(said)


def test_a_mapping_is_called_what_the_source_calls_it() -> None:
    error = only_error(Config, {"storage": "tillhook.db"})
    assert plain(error) == "must be a JSON object"
    assert plain(error, object_name="a table") == "must be a table"


def test_an_unknown_error_keeps_pydantic_s_message() -> None:
    error = {"type": "something_new", "msg": "Value error, the thing is off", "loc": ("x",)}
    assert plain(error) == "the thing is off"


def test_the_config_says_it_in_words() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config({"auth": {"admin_token": "short"}, "delivery": {"max_in_flight": "x"}, "storage": 1}, "t.toml")
    assert caught.value.errors == [
        "auth.admin_token: must have at least 16 characters",
        "storage: must be a table",
        "delivery.max_in_flight: must be a whole number",
    ]


def test_the_api_says_it_in_words() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(EndpointIn, {"name": "a", "url": URL, "max_in_flight": "2", "headers": [], "colour": 1}, "the body")
    assert caught.value.errors == [
        {"field": "headers", "message": "must be a JSON object"},
        {"field": "colour", "message": "unknown field"},
    ]


def test_ingest_says_an_event_s_mistakes_in_its_own_words() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_body(b'[{"type": "a", "data": {}}, {"type": "bad type", "data": {}, "colour": 1}]', None)
    assert caught.value.errors == [
        {
            "field": "[1].type",
            "message": "must be dot-separated names of letters, digits, _ or -, like transaction.completed",
        },
        {"field": "[1].colour", "message": "unknown field; an event has type, data, id and timestamp"},
    ]


def test_an_error_about_the_whole_body_names_the_body() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(EndpointIn, ["not", "an", "object"], "the body")
    assert caught.value.errors == [{"field": "body", "message": "must be a JSON object"}]
