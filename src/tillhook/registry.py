"""The endpoints as the running daemon sees them: read on every ingest and every claim,
so they live in memory and are replaced whenever the stored ones change."""

from __future__ import annotations

from dataclasses import replace

from tillhook.models import Endpoint
from tillhook.rules import subscribes


class EndpointRegistry:
    def __init__(self, endpoints: list[Endpoint] | None = None) -> None:
        self._by_id: dict[str, Endpoint] = {}
        self._subscribers: dict[str, tuple[str, ...]] = {}
        self._filtering: frozenset[str] | None = None
        self.replace_all(endpoints or [])

    def replace_all(self, endpoints: list[Endpoint]) -> None:
        self._by_id = {e.id: e for e in endpoints}
        self._changed()

    def put(self, endpoint: Endpoint) -> None:
        self._by_id[endpoint.id] = endpoint
        self._changed()

    def disable(self, endpoint_id: str, reason: str) -> Endpoint | None:
        endpoint = self._by_id.get(endpoint_id)
        if endpoint is None:
            return None
        self.put(replace(endpoint, enabled=False, disabled_reason=reason))
        return self._by_id[endpoint_id]

    def remove(self, endpoint_id: str) -> None:
        self._by_id.pop(endpoint_id, None)
        self._changed()

    def _changed(self) -> None:
        self._subscribers.clear()
        self._filtering = None

    def filtering(self) -> frozenset[str]:
        """Ids of the endpoints with a filter: read on every ingest, so kept until a change."""
        if self._filtering is None:
            self._filtering = frozenset(e.id for e in self._by_id.values() if e.filter is not None)
        return self._filtering

    def by_name(self, name: str) -> Endpoint | None:
        return next((e for e in self._by_id.values() if e.name == name), None)

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._by_id.get(endpoint_id)

    def all(self) -> list[Endpoint]:
        return list(self._by_id.values())

    def enabled(self) -> list[Endpoint]:
        return [e for e in self._by_id.values() if e.enabled]

    def subscribers(self, event_type: str) -> tuple[str, ...]:
        """Ids of the endpoints whose patterns match, disabled ones too (theirs are held until
        they are enabled), but none taken out of the config file; cached per type."""
        found = self._subscribers.get(event_type)
        if found is None:
            found = tuple(
                e.id for e in self._by_id.values() if not e.removed_from_config and subscribes(e.events, event_type)
            )
            self._subscribers[event_type] = found
        return found

    def alert_subscribers(self, event_type: str, about_endpoint_id: str | None) -> tuple[str, ...]:
        """Who gets an alert: the subscribers of its type (which only patterns naming
        `tillhook` match), except the endpoint it is about, which is the one in trouble and
        would only feed its own failures back to itself."""
        return tuple(e for e in self.subscribers(event_type) if e != about_endpoint_id)
