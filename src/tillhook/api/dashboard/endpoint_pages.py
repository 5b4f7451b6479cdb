"""The endpoint pages: the list with the add form, one endpoint with its actions, and the
pages that show a secret or ask before a replay or a delete. Every change calls the same
verb in api/endpoint_verbs.py that the admin API's handler calls."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from tillhook.api import endpoint_verbs as verbs
from tillhook.api import preview as previews
from tillhook.api import viewing
from tillhook.api.dashboard import endpoint_forms as forms
from tillhook.api.dashboard.guard import SESSION
from tillhook.api.dashboard.render import render
from tillhook.api.endpoints import endpoint_out
from tillhook.api.parsing import find_endpoint
from tillhook.api.schemas import EndpointStatus
from tillhook.api.state import SERVICES, Services
from tillhook.api.status import status_report
from tillhook.errors import Conflict, InvalidInput, NotFound
from tillhook.models import Endpoint

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]
FILE_OWNS = "url, events, headers, limits and ordered"
VIEWER_READS = "signed in with the viewer token, which may only read: sign in with the admin token to edit"


def page_of(endpoint: Endpoint) -> str:
    return f"/ui/endpoints/{quote(endpoint.name, safe='')}"


def _back(location: str, notice: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{location}?{urlencode({'notice': notice})}")


def in_words(page: Page) -> Page:
    """A missing endpoint or a refused change as a page in words, never problem+json."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await page(request)
        except NotFound as exc:
            return render(request, "message.html", status=404, title="Not found", message=exc.message)
        except Conflict as exc:
            return render(request, "message.html", status=409, title="Not done", message=exc.message)
        except InvalidInput as exc:
            return render(request, "message.html", status=422, title="Not done", message=exc.message)

    return wrapped


def _endpoint(request: web.Request) -> tuple[Services, Endpoint]:
    services = request.app[SERVICES]
    return services, find_endpoint(services.registry, request.match_info["name"])


async def _statuses(request: web.Request, services: Services) -> dict[str, EndpointStatus]:
    return {e.id: e for e in (await status_report(services, viewer=viewing.is_viewer(request))).endpoints}


Row = tuple[Endpoint, EndpointStatus]


def by_category(rows: list[Row]) -> list[tuple[str | None, list[Row]]]:
    """The list's groups: one per category, sorted as a person reads them (then exactly, so
    `Loyalty` and `loyalty`, two categories, keep one order), those without one last."""
    groups: dict[str | None, list[Row]] = {}
    for row in rows:
        groups.setdefault(row[0].category, []).append(row)
    named = sorted((c for c in groups if c is not None), key=lambda c: (c.casefold(), c))
    return [(c, groups[c]) for c in named] + ([(None, groups[None])] if None in groups else [])


def categories(services: Services) -> list[str]:
    """Those in use, for the forms to offer."""
    return sorted({e.category for e in services.registry.all() if e.category}, key=lambda c: (c.casefold(), c))


@in_words
async def list_page(request: web.Request) -> web.Response:
    return await _list(request)


async def _list(request: web.Request, *, status: int = 200, **form: Any) -> web.Response:
    services = request.app[SERVICES]
    statuses = await _statuses(request, services)
    rows = [(e, statuses[e.id]) for e in services.registry.all() if e.id in statuses]
    template = "endpoints_live.html" if request.query.get("part") == "live" else "endpoints.html"
    form.setdefault("values", {"events": "*"})
    form.setdefault("errors", {})
    return render(
        request,
        template,
        status=status,
        groups=by_category(rows),
        categories=categories(services),
        notice=request.query.get("notice"),
        **form,
    )


@in_words
async def add(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    form = await request.post()
    try:
        created = await verbs.create(services, forms.new_endpoint(form, verbs.validation_context(services)))
    except InvalidInput as exc:
        return await _list(request, status=422, values=forms.entered(form), errors=forms.field_errors(exc))
    except Conflict as exc:
        return await _list(request, status=409, values=forms.entered(form), errors={"name": [exc.message]})
    return render(
        request,
        "endpoint_secret.html",
        status=201,
        endpoint=created,
        page=page_of(created),
        heading=f"Endpoint {created.name} added",
        secret=verbs.current_secret(created),
        previous=[],
        note="Its signing secret is shown this once here; give it to the receiver to verify signatures.",
    )


@in_words
async def detail(request: web.Request) -> web.Response:
    services, endpoint = _endpoint(request)
    return await _detail(request, services, endpoint)


async def _detail(
    request: web.Request, services: Services, endpoint: Endpoint, *, status: int = 200, **extra: Any
) -> web.Response:
    e = (await _statuses(request, services))[endpoint.id]
    template = "endpoint_live.html" if request.query.get("part") == "live" else "endpoint.html"
    extra.setdefault("replay_errors", {})
    extra.setdefault("preview", None)
    extra.setdefault("preview_values", {"event": forms.PREVIEW_SAMPLE, "event_id": ""})
    extra.setdefault("preview_errors", {})
    return render(
        request,
        template,
        status=status,
        endpoint=endpoint,
        e=e,
        page=page_of(endpoint),
        out=endpoint_out(services, endpoint, reveal=not viewing.is_viewer(request)),
        pinned=verbs.secret_pinned(services, endpoint),
        file_owns=FILE_OWNS,
        test_types=verbs.testable_types(services),
        notice=request.query.get("notice"),
        **extra,
    )


@in_words
async def edit_page(request: web.Request) -> web.Response:
    _, endpoint = _endpoint(request)
    if request[SESSION].role != "admin":
        # The form holds the url and the headers' values as they are, to be edited.
        return render(request, "message.html", status=403, title="Not shown", message=VIEWER_READS)
    return _edit_form(request, endpoint, forms.values_of(endpoint), {})


def _edit_form(
    request: web.Request, endpoint: Endpoint, values: dict[str, str], errors: dict[str, list[str]], status: int = 200
) -> web.Response:
    if endpoint.config_managed:
        raise Conflict(
            f"endpoint {endpoint.name!r} comes from the config file, which owns its {FILE_OWNS}:"
            " change it there and restart tillhook",
            slug="config-managed",
        )
    return render(
        request,
        "endpoint_edit.html",
        status=status,
        endpoint=endpoint,
        page=page_of(endpoint),
        values=values,
        errors=errors,
        categories=categories(request.app[SERVICES]),
    )


@in_words
async def edit(request: web.Request) -> web.StreamResponse:
    services, endpoint = _endpoint(request)
    form = await request.post()
    try:
        updated = await verbs.update(services, endpoint, forms.changes(form, verbs.validation_context(services)))
    except InvalidInput as exc:
        return _edit_form(request, endpoint, forms.entered(form), forms.field_errors(exc), status=422)
    raise _back(page_of(updated), "Saved.")


@in_words
async def enable(request: web.Request) -> web.StreamResponse:
    services, endpoint = _endpoint(request)
    await verbs.set_enabled(services, endpoint, True)
    raise _back(page_of(endpoint), "Enabled: its held deliveries go out now, in order.")


@in_words
async def disable(request: web.Request) -> web.StreamResponse:
    services, endpoint = _endpoint(request)
    await verbs.set_enabled(services, endpoint, False)
    raise _back(page_of(endpoint), "Disabled: its deliveries are held until it is enabled; nothing is dropped.")


@in_words
async def send_test(request: web.Request) -> web.StreamResponse:
    services, endpoint = _endpoint(request)
    form = await request.post()
    ping = await verbs.send_test(services, endpoint, forms.text(form, "event_type") or None)
    raise _back(
        page_of(endpoint), f"Test event {ping.event_id} ({ping.event_type}) sent as delivery {ping.delivery_id}."
    )


@in_words
async def rotate(request: web.Request) -> web.Response:
    services, endpoint = _endpoint(request)
    form = await request.post()
    try:
        rotated = await verbs.rotate(services, endpoint, forms.rotate_request(form))
    except InvalidInput as exc:
        return await _detail(request, services, endpoint, status=422, rotate_errors=forms.field_errors(exc))
    return _secret_page(
        request,
        services,
        rotated,
        f"New secret for {rotated.name}",
        "The old secret keeps signing beside it until the time shown, so the receiver can switch.",
    )


@in_words
async def show_secret(request: web.Request) -> web.Response:
    services, endpoint = _endpoint(request)
    if request[SESSION].role != "admin":  # the guard refuses a viewer's POST already
        raise Conflict("signed in with the viewer token, which may not see secrets")
    return _secret_page(
        request,
        services,
        endpoint,
        f"Signing secret of {endpoint.name}",
        "Receivers verify the webhook-signature header with it. Keep it out of chats and tickets.",
    )


def _secret_page(request: web.Request, services: Services, endpoint: Endpoint, heading: str, note: str) -> web.Response:
    secrets = verbs.secrets_of(services, endpoint)
    return render(
        request,
        "endpoint_secret.html",
        endpoint=endpoint,
        page=page_of(endpoint),
        heading=heading,
        secret=secrets.secret,
        previous=secrets.previous,
        note=note,
    )


@in_words
async def replay(request: web.Request) -> web.StreamResponse:
    """The first submit counts what the replay would make and asks; the confirmation runs it
    over the same window, carried as exact times."""
    services, endpoint = _endpoint(request)
    form = await request.post()
    if form.get("confirm") == "yes":
        since, until = forms.moment(form, "since"), forms.moment(form, "until")
        made = await verbs.replay(services, endpoint, since, until, form.get("scope") != "all")
        raise _back(page_of(endpoint), f"Replayed: {made} new deliveries.")
    try:
        spec = forms.replay_request(form)
        since, until = verbs.replay_window(services, spec)
    except InvalidInput as exc:
        return await _detail(request, services, endpoint, status=422, replay_errors=forms.field_errors(exc))
    count = await verbs.replay_count(services, endpoint, since, until, spec.only_failed)
    return render(
        request,
        "endpoint_replay.html",
        endpoint=endpoint,
        page=page_of(endpoint),
        count=count,
        since=repr(since),
        until=repr(until),
        since_text=forms.text(form, "since"),
        until_text=forms.text(form, "until") or "now",
        scope="failed" if spec.only_failed else "all",
    )


@in_words
async def preview(request: web.Request) -> web.Response:
    """The endpoint's page with what it would be sent for the event given: the request, the
    filter's verdict, or the error of an expression."""
    services, endpoint = _endpoint(request)
    form = await request.post()
    values = {"event": forms.text(form, "event"), "event_id": forms.text(form, "event_id")}
    try:
        shown = await previews.preview(
            services, endpoint, forms.preview_document(form), viewer=viewing.is_viewer(request)
        )
    except InvalidInput as exc:
        return await _detail(
            request, services, endpoint, status=422, preview_values=values, preview_errors=forms.field_errors(exc)
        )
    except NotFound as exc:
        return await _detail(
            request, services, endpoint, status=404, preview_values=values, preview_errors={"event_id": [exc.message]}
        )
    body = shown.request.body if shown.request is not None else None
    return await _detail(
        request,
        services,
        endpoint,
        preview=shown,
        preview_values=values,
        preview_body=json.dumps(body, indent=2, ensure_ascii=False),
    )


@in_words
async def delete(request: web.Request) -> web.StreamResponse:
    services, endpoint = _endpoint(request)
    form = await request.post()
    if form.get("confirm") != "yes":
        if endpoint.config_managed:
            raise Conflict(
                f"endpoint {endpoint.name!r} comes from the config file: remove it there and restart tillhook"
            )
        count = await verbs.unfinished_count(services, endpoint)
        return render(request, "endpoint_delete.html", endpoint=endpoint, page=page_of(endpoint), count=count)
    cancelled = await verbs.delete(services, endpoint)
    raise _back(
        "/ui/endpoints", f"Deleted {endpoint.name}; {cancelled} unfinished deliveries cancelled (kept in the log)."
    )
