"""`tillhook endpoints preview`: the request an endpoint would get for an event, printed as an
HTTP request; nothing is stored or sent."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

EXIT_OK, EXIT_RUNTIME = 0, 1
SAMPLE = '{"type": "transaction.completed", "data": {"amount": 55.39}}'

Call = Callable[..., Awaitable[Any]]


class PreviewUsage(ValueError):
    """The options do not make one event to preview."""


def add_preview(endpoints: Any, admin: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    parser = admin(
        endpoints.add_parser(
            "preview",
            help="the exact request it would get for an event, or that its filter leaves it out (sends nothing)",
        )
    )
    parser.add_argument("endpoint", metavar="ID|NAME")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--event-id", metavar="ID", help="a stored event (tillhook events list shows them)")
    source.add_argument("--event", metavar="JSON", help=f"an event to try, like '{SAMPLE}'")
    source.add_argument("--type", metavar="TYPE", help="an event of this type to try, with --data")
    parser.add_argument("--data", metavar="JSON", help="the data object of the --type event (default: {})")


def _json(option: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PreviewUsage(f"{option} is not valid JSON ({exc})") from None


def preview_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.data is not None and args.type is None:
        raise PreviewUsage("--data goes with --type: give both, or the whole event as --event")
    if args.event_id is not None:
        return {"event_id": args.event_id}
    if args.event is not None:
        return {"event": _json("--event", args.event)}
    return {"event": {"type": args.type, "data": _json("--data", args.data) if args.data is not None else {}}}


async def run_preview(call: Call, path: str, args: argparse.Namespace) -> int:
    """Exit 1 when the endpoint's filter or transform fails on the event: what needs fixing."""
    data = await call("POST", f"{path}/preview", preview_body(args))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_preview(data)
    return EXIT_RUNTIME if data["error"] else EXIT_OK


def print_preview(data: dict[str, Any]) -> None:
    # Notes and errors on stderr: stdout is the request alone, to read or to pipe.
    for note in data["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if data["error"]:
        print(f"tillhook: {data['error']}", file=sys.stderr)
        return
    if data["filtered_out"]:
        print(f"the filter of {data['endpoint']} leaves this event out: no delivery, nothing sent")
        return
    request = data["request"]
    print(f"{request['method']} {request['url']}")
    for name, value in request["headers"].items():
        print(f"{name}: {value}")
    print()
    body = request["body"]
    print(json.dumps(body, indent=2, ensure_ascii=False) if body is not None else request["body_text"])
