"""Pages from Jinja2 templates, escaped by default: whatever a page shows (an endpoint's
name, a receiver's response) is text, never markup."""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from tillhook import __version__
from tillhook.api.dashboard.guard import SESSION
from tillhook.models import format_time
from tillhook.redact import origin

TEMPLATES = web.AppKey("dashboard_templates", jinja2.Environment)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tillhook.api.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = lambda t: "-" if t is None else (format_time(t) if isinstance(t, float | int) else t)
    env.filters["age"] = describe_age
    # A viewer reads everything but secrets, and a URL may hold one anywhere past its origin:
    # user info, ?token=, a chat webhook's path.
    env.filters["origin"] = origin
    env.filters["percent"] = lambda r: "-" if r is None else f"{r:.0%}"
    return env


def describe_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    session = request.get(SESSION)
    page = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            version=__version__,
            path=request.path,
            csrf=session.csrf if session is not None else "",
            role=session.role if session is not None else None,
            **context,
        )
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")
