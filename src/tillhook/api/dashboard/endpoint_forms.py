"""From the endpoint pages' form fields to the admin API's own models (api/schemas.py), and
their errors back to words beside each field. Only shapes change here: what is valid is
what the models say."""

from __future__ import annotations

import re
from typing import Any

from multidict import MultiDictProxy

from tillhook.api.parsing import invalid, validate
from tillhook.api.schemas import EndpointIn, EndpointPatch, ReplayIn, RotateIn
from tillhook.envelope import read_json
from tillhook.errors import InvalidInput
from tillhook.models import Endpoint

Form = MultiDictProxy[Any]

# The fields a person edits on the page; the API's PATCH takes these and the name.
EDITED = (
    "url",
    "events",
    "headers",
    "max_in_flight",
    "rate_limit",
    "ordered",
    "filter",
    "transform",
    "preset",
    "extra_signature",
    "description",
    "category",
)
PREVIEW_SAMPLE = '{"type": "transaction.completed", "data": {"amount": 55.39}}'


def text(form: Form, field: str) -> str:
    value = form.get(field)
    return value.strip() if isinstance(value, str) else ""


def _optional(form: Form, field: str) -> str | None:
    return text(form, field) or None


def _patterns(form: Form) -> list[str]:
    return [p for p in re.split(r"[\s,]+", text(form, "events")) if p]


def _headers(form: Form) -> dict[str, str]:
    """One `Name: value` a line."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text(form, "headers").splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise invalid([{"field": "headers", "message": f"line {number} is not `Name: value`"}], "the form")
        headers[name.strip()] = value.strip()
    return headers


def _settings(form: Form) -> dict[str, Any]:
    return {
        "url": text(form, "url"),
        "events": _patterns(form) or ["*"],
        "headers": _headers(form),
        "max_in_flight": _optional(form, "max_in_flight"),
        "rate_limit": _optional(form, "rate_limit"),
        "ordered": form.get("ordered") == "on",
        # An empty field clears it: the page shows every field, so what is left empty is meant.
        "filter": _optional(form, "filter"),
        "transform": _optional(form, "transform"),
        "preset": _optional(form, "preset"),
        "extra_signature": {"header": header} if (header := text(form, "extra_signature")) else None,
        "description": _optional(form, "description"),
        "category": _optional(form, "category"),
    }


def new_endpoint(form: Form, context: dict[str, object]) -> EndpointIn:
    return validate(EndpointIn, {"name": text(form, "name"), **_settings(form)}, "the form", context=context)


def changes(form: Form, context: dict[str, object]) -> dict[str, Any]:
    patch = validate(EndpointPatch, _settings(form), "the form", context=context)
    return patch.model_dump(include=set(EDITED))


def rotate_request(form: Form) -> RotateIn:
    return validate(RotateIn, {"grace": text(form, "grace") or "24h"}, "the form")


def replay_request(form: Form) -> ReplayIn:
    return validate(
        ReplayIn,
        {"since": text(form, "since"), "until": _optional(form, "until"), "only_failed": form.get("scope") != "all"},
        "the form",
    )


def preview_document(form: Form) -> dict[str, Any]:
    """The preview's body: a stored event's id when given (the event field holds a sample
    from the start), else the event typed, read as ingest reads one."""
    event_id = text(form, "event_id")
    if event_id:
        return {"event_id": event_id}
    source = text(form, "event")
    if not source:
        return {}  # the API's own words say what to give
    try:
        return {"event": read_json(source.encode(), "the event")}
    except InvalidInput as exc:
        raise invalid([{"field": "event", "message": exc.message}], "the form") from None


def moment(form: Form, field: str) -> float:
    """A unix time the confirmation page carried over from the first submit."""
    try:
        return float(text(form, field))
    except ValueError:
        raise invalid([{"field": field, "message": "is not a time this page sent; start again"}], "the form") from None


def values_of(endpoint: Endpoint) -> dict[str, str]:
    """An endpoint's settings as the form's fields show them."""
    return {
        "name": endpoint.name,
        "url": endpoint.url,
        "events": ", ".join(endpoint.events),
        "headers": "\n".join(f"{k}: {v}" for k, v in endpoint.headers),
        "max_in_flight": "" if endpoint.max_in_flight is None else str(endpoint.max_in_flight),
        "rate_limit": "" if endpoint.rate_limit is None else f"{endpoint.rate_limit:g}",
        "ordered": "on" if endpoint.ordered else "",
        "filter": endpoint.filter or "",
        "transform": endpoint.transform or "",
        "preset": endpoint.preset or "",
        "extra_signature": endpoint.extra_signature.header if endpoint.extra_signature else "",
        "description": endpoint.description or "",
        "category": endpoint.category or "",
    }


def entered(form: Form) -> dict[str, str]:
    """What the person typed, to show again beside the errors."""
    return {field: text(form, field) for field in ("name", *EDITED)} | {
        "ordered": "on" if form.get("ordered") == "on" else ""
    }


def field_errors(exc: InvalidInput) -> dict[str, list[str]]:
    """Each message under the form field it belongs to (`headers.X-Key` -> headers)."""
    found: dict[str, list[str]] = {}
    for error in exc.errors or [{"field": "form", "message": exc.message}]:
        field = re.split(r"[.\[]", error["field"], maxsplit=1)[0] or "form"
        where = error["field"] if error["field"] != field else ""
        found.setdefault(field, []).append(f"{where} {error['message']}".strip())
    return found
