"""/v1/event-types: the catalogue (the config's [[event_types]]) beside every type the POS has
really sent, as the outbox counted them. One row a type, whichever of the two knows it: a
catalogued type never sent, and a type sent but never described, are what the shop looks for.
tillhook's own types (its alerts, the ping) are not listed: the POS cannot send them."""

from __future__ import annotations

from aiohttp import web

from tillhook import rules
from tillhook.api.event_type_schemas import EventTypeDetail, EventTypeList, EventTypeOut
from tillhook.api.state import SERVICES, Services
from tillhook.catalogue import EventTypeSpec
from tillhook.errors import NotFound
from tillhook.models import format_time
from tillhook.store.port import SeenType


def _own(name: str) -> bool:
    return name.split(".", 1)[0].casefold() == rules.OWN_PREFIX


Known = tuple[str, EventTypeSpec | None, SeenType | None]


def _out(name: str, spec: EventTypeSpec | None, seen: SeenType | None) -> EventTypeOut:
    return EventTypeOut(
        name=name,
        description=spec.description if spec is not None else None,
        in_catalogue=spec is not None,
        strict=spec is not None and spec.strict,
        has_schema=spec is not None and spec.data_schema is not None,
        has_example=spec is not None and spec.example is not None,
        count=seen.count if seen is not None else 0,
        mismatched=seen.mismatched if seen is not None else 0,
        first_seen=format_time(seen.first_seen) if seen is not None else None,
        last_seen=format_time(seen.last_seen) if seen is not None else None,
    )


async def _known(services: Services) -> list[Known]:
    seen = {s.type: s for s in await services.store.event_types_seen() if not _own(s.type)}
    specs = services.catalogue.specs
    # By code point, as the outbox orders what it counted.
    return [(name, specs.get(name), seen.get(name)) for name in sorted(seen.keys() | specs.keys())]


async def event_types(services: Services) -> list[EventTypeOut]:
    """Every type in the catalogue or ever received, by name."""
    return [_out(*known) for known in await _known(services)]


async def event_type(services: Services, name: str) -> EventTypeDetail:
    """One type, with the catalogue's schema and example; NotFound if neither the catalogue
    nor the outbox knows it."""
    for known, spec, seen in await _known(services):
        if known == name:
            return EventTypeDetail(
                **_out(known, spec, seen).model_dump(),
                data_schema=spec.data_schema if spec is not None else None,
                example=spec.example if spec is not None else None,
            )
    if _own(name):
        raise NotFound(
            f"{name!r} is one of tillhook's own types (its alerts and the test ping), which the POS cannot send;"
            " GET /v1/events?type=tillhook.** lists those events"
        )
    raise NotFound(
        f"there is no event type {name!r}: the catalogue ([[event_types]] in the config) does not describe it"
        " and no event of it was received; GET /v1/event-types lists the types there are"
    )


async def list_event_types(request: web.Request) -> web.Response:
    listing = EventTypeList(data=await event_types(request.app[SERVICES]))
    return web.json_response(listing.model_dump(mode="json"))


async def get_event_type(request: web.Request) -> web.Response:
    detail = await event_type(request.app[SERVICES], request.match_info["name"])
    return web.json_response(detail.model_dump(mode="json", by_alias=True))
