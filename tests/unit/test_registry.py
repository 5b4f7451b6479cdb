"""The registry's cached views follow every change of the endpoints."""

from __future__ import annotations

from dataclasses import replace

from tillhook.models import Endpoint
from tillhook.registry import EndpointRegistry


def endpoint(endpoint_id: str, filter_: str | None = None) -> Endpoint:
    return Endpoint(
        id=endpoint_id, name=endpoint_id, url="https://x.example/h", events=("*",), secrets=(), filter=filter_
    )


def test_the_filtering_endpoints_follow_puts_and_removals() -> None:
    registry = EndpointRegistry([endpoint("a"), endpoint("b", "data.n > 1")])
    assert registry.filtering() == {"b"}
    registry.put(replace(endpoint("a"), filter="data.n > 2"))  # a filter added by a PATCH
    assert registry.filtering() == {"a", "b"}
    registry.put(endpoint("b"))  # and one taken away
    assert registry.filtering() == {"a"}
    registry.remove("a")
    assert registry.filtering() == frozenset()
    registry.replace_all([endpoint("c", "true")])
    assert registry.filtering() == {"c"}
