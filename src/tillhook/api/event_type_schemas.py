"""Wire models of /v1/event-types: the catalogue beside what the POS really sends. Apart from
api/schemas.py only to keep each module to what it owns; /openapi.json takes them from the
route table alike."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tillhook.api.schemas import Timestamp


class EventTypeOut(BaseModel):
    name: str
    description: str | None = Field(description="the catalogue's words for it; null when it has none")
    in_catalogue: bool = Field(description="described by an [[event_types]] table of the config")
    strict: bool = Field(description="an event whose data breaks the type's schema is refused with 422")
    has_schema: bool = Field(description="the catalogue has a JSON Schema for its data")
    has_example: bool = Field(
        description="the catalogue has an example of its data, which POST /v1/endpoints/{id}/test can send"
    )
    count: int = Field(
        description="events of this type accepted, an admin's tests not counted; kept past the events' retention"
    )
    mismatched: int = Field(description="of them, accepted although their data broke the (non-strict) schema")
    first_seen: Timestamp | None = Field(description="when the first was received; null: never seen")
    last_seen: Timestamp | None = Field(description="when the latest was received; null: never seen")


class EventTypeList(BaseModel):
    data: list[EventTypeOut] = Field(
        description="every type in the catalogue or ever received (tillhook's own alert types aside), by name"
    )


class EventTypeDetail(EventTypeOut):
    # `schema` would shadow a BaseModel attribute; the wire says "schema", as the config does.
    data_schema: dict[str, Any] | None = Field(
        serialization_alias="schema", description="the JSON Schema (Draft 2020-12) its data is checked with"
    )
    example: dict[str, Any] | None = Field(description="an example of its data, from the catalogue")
