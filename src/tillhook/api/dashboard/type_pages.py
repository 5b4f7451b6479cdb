"""The event types' pages: the catalogue beside what the POS really sends, and one type with
its schema and example. Both ask the functions the admin API's handlers call
(api/event_types.py) and render what they return; they only read, for admin and viewer alike."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tillhook.api import event_types
from tillhook.api.dashboard.render import render
from tillhook.api.state import SERVICES
from tillhook.errors import NotFound


def _pretty(value: Any) -> str | None:
    # Shown in <pre> as text: the template escapes it like anything else.
    return None if value is None else json.dumps(value, indent=2, ensure_ascii=False)


async def list_page(request: web.Request) -> web.Response:
    rows = await event_types.event_types(request.app[SERVICES])
    return render(
        request,
        "event_types.html",
        rows=rows,
        catalogued=sum(1 for r in rows if r.in_catalogue),
        only_seen=sum(1 for r in rows if not r.in_catalogue),
    )


async def detail(request: web.Request) -> web.Response:
    try:
        found = await event_types.event_type(request.app[SERVICES], request.match_info["name"])
    except NotFound as exc:
        return render(
            request, "problem.html", status=404, title="No such event type", message=str(exc), back="/ui/event-types"
        )
    return render(
        request, "event_type.html", t=found, schema=_pretty(found.data_schema), example=_pretty(found.example)
    )


def add_type_pages(app: web.Application) -> None:
    app.router.add_get("/ui/event-types", list_page)
    app.router.add_get("/ui/event-types/{name}", detail)
