"""The dashboard's routes: `/` and everything under `/ui/`."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from tillhook.api.dashboard import endpoint_pages, pages
from tillhook.api.dashboard.guard import SESSIONS
from tillhook.api.dashboard.log_pages import add_log_pages
from tillhook.api.dashboard.render import TEMPLATES, environment
from tillhook.api.dashboard.sessions import Sessions
from tillhook.api.dashboard.type_pages import add_type_pages
from tillhook.clock import Clock

STATIC = Path(__file__).with_name("static")
SESSION_IDLE_S = 30 * 60.0


def add_dashboard(app: web.Application, clock: Clock) -> None:
    app[SESSIONS] = Sessions(SESSION_IDLE_S, clock.monotonic)
    app[TEMPLATES] = environment()
    app.router.add_get("/", pages.overview)
    app.router.add_get("/ui/signin", pages.sign_in_page)
    app.router.add_post("/ui/signin", pages.sign_in)
    app.router.add_post("/ui/signout", pages.sign_out)
    add_log_pages(app)
    add_type_pages(app)
    _add_endpoint_pages(app)
    app.router.add_static("/ui/static/", STATIC, append_version=True)


def _add_endpoint_pages(app: web.Application) -> None:
    app.router.add_get("/ui/endpoints", endpoint_pages.list_page)
    app.router.add_post("/ui/endpoints", endpoint_pages.add)
    app.router.add_get("/ui/endpoints/{name}", endpoint_pages.detail)
    app.router.add_get("/ui/endpoints/{name}/edit", endpoint_pages.edit_page)
    for verb, page in (
        ("edit", endpoint_pages.edit),
        ("enable", endpoint_pages.enable),
        ("disable", endpoint_pages.disable),
        ("test", endpoint_pages.send_test),
        ("rotate-secret", endpoint_pages.rotate),
        ("secret", endpoint_pages.show_secret),
        ("replay", endpoint_pages.replay),
        ("preview", endpoint_pages.preview),
        ("delete", endpoint_pages.delete),
    ):
        app.router.add_post(f"/ui/endpoints/{{name}}/{verb}", page)
