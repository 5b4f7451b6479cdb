"""`tillhook status`, `tillhook endpoints …`, `tillhook deliveries …`, `tillhook events …`: the
admin API from a terminal. The daemon's address and the admin token come from the same config
the daemon reads, unless --daemon/--token or $TILLHOOK_URL/$TILLHOOK_ADMIN_TOKEN say otherwise.
`--url` is always an endpoint's URL: the token goes to the daemon and nowhere else."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import aiohttp

from tillhook.cli_preview import PreviewUsage, add_preview, run_preview
from tillhook.cli_types import add_types, run_types
from tillhook.config import Config, parse_listen
from tillhook.errors import TillhookError

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
DAEMON_HELP = (
    "the daemon's address: http://HOST:PORT or unix:/PATH (default: $TILLHOOK_URL, else the config's listen address)"
)


class ApiError(TillhookError):
    """The daemon refused the request."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        first, newline, rest = detail.partition("\n")
        super().__init__(f"{first} (HTTP {status}){newline}{rest}")


class UsageError(TillhookError):
    """The command line asks for something that cannot be done as given."""


class _Null:
    """An option's value that asks the API to clear a field (JSON null)."""

    def __repr__(self) -> str:
        return "null"


NULL = _Null()


def _or_null(parse: Callable[[str], Any], word: str, what: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if text.strip().lower() == word:
            return NULL
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, or {word}, not {text!r}") from None

    return convert


def add_commands(commands: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    def admin(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_config(parser)
        parser.add_argument("--daemon", metavar="URL", help=DAEMON_HELP)
        parser.add_argument(
            "--token", help="admin token (default: $TILLHOOK_ADMIN_TOKEN, else the config's or the database's)"
        )
        parser.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
        return parser

    admin(commands.add_parser("status", help="version, backlog and the health of each endpoint"))

    endpoints = commands.add_parser("endpoints", help="list and manage endpoints").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    listing = admin(endpoints.add_parser("list", help="list endpoints"))
    listing.add_argument(
        "--category", metavar="NAME", help='only the endpoints in this category, exactly as written; "" for none'
    )
    add = admin(endpoints.add_parser("add", help="create an endpoint (prints its secret once)"))
    add.add_argument("name")
    add.add_argument("url_arg", metavar="URL", nargs="?", help="where to deliver (or --url)")
    add.add_argument("--url", help="where to deliver, if not given as URL")
    _endpoint_options(add)
    add.add_argument("--secret", help="whsec_… secret (default: generated)")
    add.add_argument("--disabled", action="store_true", help="create it disabled")
    for action, text in (
        ("show", "show one endpoint"),
        ("remove", "delete an endpoint (cancels its pending deliveries)"),
        ("enable", "enable an endpoint"),
        ("disable", "disable an endpoint (pending deliveries wait)"),
        ("secret", "print its current secret and any still in grace, for the receiver"),
    ):
        admin(endpoints.add_parser(action, help=text)).add_argument("endpoint", metavar="ID|NAME")
    test = admin(
        endpoints.add_parser("test", help="deliver a test event to it: a tillhook.ping, or a catalogue type's example")
    )
    test.add_argument("endpoint", metavar="ID|NAME")
    test.add_argument(
        "--type", dest="event_type", metavar="TYPE", help="send this [[event_types]] type's example instead of a ping"
    )
    update = admin(endpoints.add_parser("update", help="change an endpoint"))
    update.add_argument("endpoint", metavar="ID|NAME")
    update.add_argument("--name", help="rename it")
    update.add_argument("--url", help="deliver to this URL from now on")
    update.add_argument("--endpoint-url", dest="url", help=argparse.SUPPRESS)  # the old spelling
    _endpoint_options(update)
    add_preview(endpoints, admin)
    rotate = admin(
        endpoints.add_parser("rotate-secret", help="new secret (printed once); the old one signs on for --grace")
    )
    rotate.add_argument("endpoint", metavar="ID|NAME")
    rotate.add_argument("--grace", default="24h", help="how long the old secret keeps signing (default 24h)")
    replay = admin(endpoints.add_parser("replay", help="deliver past events to it again"))
    replay.add_argument("endpoint", metavar="ID|NAME")
    replay.add_argument("--since", required=True, help="RFC 3339 time, or a duration ago like 2h")
    replay.add_argument("--until", help="RFC 3339 time, or a duration ago (default: now)")
    replay.add_argument("--all", action="store_true", help="every matching event, not only those that failed")

    deliveries = commands.add_parser("deliveries", help="the delivery log").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    listing = _log_filters(admin(deliveries.add_parser("list", help="deliveries, newest first")))
    listing.add_argument("--endpoint", metavar="ID|NAME")
    listing.add_argument("--state", choices=["pending", "delivering", "delivered", "failed", "cancelled"])
    listing.add_argument("--event", metavar="EVENT_ID")
    for action, text in (("show", "one delivery with every attempt"), ("retry", "send it again now")):
        admin(deliveries.add_parser(action, help=text)).add_argument("delivery", metavar="ID")

    events = commands.add_parser("events", help="the events received").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    _log_filters(admin(events.add_parser("list", help="events, newest first")))
    admin(events.add_parser("show", help="one event, its payload and its deliveries")).add_argument(
        "event", metavar="EVENT_ID"
    )
    add_types(events, admin)


def _log_filters(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--type", help="event type or pattern, like sale.*")
    parser.add_argument("--since", help="RFC 3339 time, or a duration ago like 2h")
    parser.add_argument("--until", help="RFC 3339 time, or a duration ago")
    parser.add_argument("--limit", type=int, default=50, help="rows per page, up to 500 (default 50)")
    parser.add_argument("--cursor", help="next_cursor of the previous page")
    return parser


def _endpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", nargs="+", metavar="PATTERN", help='event patterns, like "sale.*" (default: all)')
    parser.add_argument(
        "--max-in-flight",
        metavar="N|default",
        type=_or_null(int, "default", "a whole number"),
        help="attempts at once; default: the daemon's delivery.endpoint_max_in_flight",
    )
    parser.add_argument(
        "--rate-limit",
        metavar="N|off",
        type=_or_null(float, "off", "a number"),
        help="attempts per second; off: unlimited",
    )
    parser.add_argument(
        "--ordered", action=argparse.BooleanOptionalAction, default=None, help="one at a time, strictly in order"
    )
    parser.add_argument("--header", action="append", metavar="NAME=VALUE", help="extra header (repeatable)")
    expression = _or_null(str, "off", "an expression")
    parser.add_argument(
        "--filter",
        metavar="EXPR|off",
        type=expression,
        help='CEL over the event: only events it holds for are delivered, like "data.amount > 100.0"',
    )
    parser.add_argument(
        "--transform",
        metavar="EXPR|off",
        type=expression,
        help="CEL over the event: its result, as JSON, is the body sent",
    )
    parser.add_argument(
        "--preset",
        metavar="NAME|off",
        type=_or_null(str, "off", "a preset"),
        help="a built-in transform into a chat message: slack, discord, teams or google-chat",
    )
    parser.add_argument(
        "--description",
        metavar="TEXT|none",
        type=_or_null(str, "none", "a line of text"),
        help="what the endpoint is for, in one line (at most 500 characters)",
    )
    parser.add_argument(
        "--category",
        metavar="NAME|none",
        type=_or_null(str, "none", "a category"),
        help='what the dashboard groups it under, like "Loyalty"',
    )
    parser.add_argument(
        "--extra-signature",
        metavar="HEADER|off",
        type=_or_null(str, "off", "a header name"),
        help="also sign the body as sha256=<hex> in this header (GitHub-style receivers)",
    )


def _endpoint_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in (
        "name",
        "url",
        "events",
        "max_in_flight",
        "rate_limit",
        "ordered",
        "secret",
        "filter",
        "transform",
        "preset",
        "description",
        "category",
    ):
        value = getattr(args, key, None)
        if value is not None:
            fields[key] = None if value is NULL else value
    if args.extra_signature is not None:
        fields["extra_signature"] = None if args.extra_signature is NULL else {"header": args.extra_signature}
    if args.header:
        headers = {}
        for item in args.header:
            name, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"--header {item!r} must look like NAME=VALUE")
            headers[name.strip()] = value
        fields["headers"] = headers
    return fields


def _new_endpoint_fields(args: argparse.Namespace) -> dict[str, Any]:
    if args.url and args.url_arg and args.url != args.url_arg:
        raise UsageError(f"two URLs given ({args.url_arg} and --url {args.url}): give one")
    url = args.url or args.url_arg
    if not url:
        raise UsageError("give the endpoint's URL: tillhook endpoints add NAME URL")
    return _endpoint_fields(args) | {"name": args.name, "url": url, "enabled": not args.disabled}


def daemon_address(config: Config, args: argparse.Namespace) -> tuple[str, str | None]:
    """The daemon's base URL, and its unix socket when it listens on one."""
    given = args.daemon or os.environ.get("TILLHOOK_URL")
    if not given:
        address = config.server.address
        return address.base_url(), address.unix_path
    if given.startswith("unix:"):
        try:
            address = parse_listen(given)
        except ValueError as exc:
            raise UsageError(f"--daemon {given!r}: {exc}") from None
        return address.base_url(), address.unix_path
    if not given.startswith(("http://", "https://")):
        raise UsageError(f"--daemon {given!r} is not an address: give http://HOST:PORT or unix:/PATH")
    return given.rstrip("/"), None


class Client:
    def __init__(self, config: Config, args: argparse.Namespace, token: str) -> None:
        self.base, self._unix = daemon_address(config, args)
        self._headers = {"Authorization": f"Bearer {token}"}

    async def __call__(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        connector = aiohttp.UnixConnector(self._unix) if self._unix else None
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        url = self.base + path
        try:
            timeout = aiohttp.ClientTimeout(total=30)
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.request(method, url, json=body, params=params, headers=self._headers) as response,
            ):
                text = await response.text()
        except aiohttp.ClientError as exc:
            raise TillhookError(f"cannot reach tillhook at {self.base} ({exc}); is `tillhook serve` running?") from None
        data = json.loads(text) if text else None
        if response.status >= 400:
            detail = data.get("detail", text) if isinstance(data, dict) else text
            errors = data.get("errors") if isinstance(data, dict) else None
            if errors:
                detail = "the daemon refused it:" + "".join(f"\n  {e.get('field')}: {e.get('message')}" for e in errors)
            raise ApiError(response.status, detail)
        return data


async def run(config: Config, args: argparse.Namespace, token: str) -> int:
    call = Client(config, args, token)
    if args.command == "status":
        return _show(args, await call("GET", "/v1/status"), _print_status)
    if args.command == "endpoints":
        return await _endpoints(call, args)
    return await _log(call, args)


async def _endpoints(call: Client, args: argparse.Namespace) -> int:
    action, ep = args.action, f"/v1/endpoints/{_quote(getattr(args, 'endpoint', None) or '')}"
    if action == "list":
        return _show(
            args,
            await call("GET", "/v1/endpoints", query={"category": args.category}),
            lambda d: _table([_endpoint_row(e) for e in d["data"]], _ENDPOINT_COLUMNS),
        )
    if action == "add":
        return _show(args, await call("POST", "/v1/endpoints", _new_endpoint_fields(args)), _print_with_secret)
    if action == "update":
        fields = _endpoint_fields(args)
        if not fields:
            raise UsageError("nothing to change: give at least one option, like --url or --events")
        return _show(args, await call("PATCH", ep, fields), _print_record)
    if action == "test":
        body = {"event_type": args.event_type} if args.event_type else None
        return _show(args, await call("POST", f"{ep}/test", body), _print_record)
    if action in ("show", "enable", "disable"):
        method, path = ("GET", ep) if action == "show" else ("POST", f"{ep}/{action}")
        return _show(args, await call(method, path), _print_record)
    if action == "secret":
        return _show(args, await call("GET", f"{ep}/secret"), _print_secret)
    if action == "preview":
        try:
            return await run_preview(call, ep, args)
        except PreviewUsage as exc:
            raise UsageError(str(exc)) from None
    if action == "remove":
        await call("DELETE", ep)
        print(f"endpoint {args.endpoint} deleted; its unfinished deliveries were cancelled")
        return EXIT_OK
    if action == "rotate-secret":
        return _show(args, await call("POST", f"{ep}/rotate-secret", {"grace": args.grace}), _print_with_secret)
    if action == "replay":
        body = {"since": args.since, "until": args.until, "only_failed": not args.all}
        body = {k: v for k, v in body.items() if v is not None}
        return _show(
            args,
            await call("POST", f"{ep}/replay", body),
            lambda d: print(f"{_count(d['deliveries'], 'delivery', 'deliveries')} queued for {args.endpoint}"),
        )
    raise AssertionError(f"unhandled command endpoints {action}")


async def _log(call: Client, args: argparse.Namespace) -> int:
    command = f"{args.command} {args.action}"
    filters = ("type", "since", "until", "limit", "cursor")
    if command == "deliveries list":
        query = {k: getattr(args, k) for k in ("endpoint", "state", "event", *filters)}
        return _show(args, await call("GET", "/v1/deliveries", query=query), _print_deliveries)
    if command in ("deliveries show", "deliveries retry"):
        dl = f"/v1/deliveries/{_quote(args.delivery)}"
        if args.action == "show":
            return _show(args, await call("GET", dl), _print_delivery)
        return _show(args, await call("POST", f"{dl}/retry"), _print_record)
    if command == "events list":
        query = {k: getattr(args, k) for k in filters}
        return _show(args, await call("GET", "/v1/events", query=query), _print_events)
    if command == "events show":
        return _show(args, await call("GET", f"/v1/events/{_quote(args.event)}"), _print_event)
    if command == "events types":
        return await run_types(call, args, _table)
    raise AssertionError(f"unhandled command {command}")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _show(args: argparse.Namespace, data: Any, human: Callable[[Any], None]) -> int:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        human(data)
    return EXIT_OK


_ENDPOINT_COLUMNS = (
    "id",
    "name",
    "category",
    "state",
    "url",
    "events",
    "filter",
    "body",
    "extra_signature",
    "description",
)
_DESCRIPTION_CHARS = 40  # in the table; `endpoints show` prints it whole
_DELIVERY_COLUMNS = (
    "id",
    "state",
    "endpoint",
    "event_type",
    "attempts",
    "last_status",
    "created_at",
    "next_attempt_at",
)


def _endpoint_row(endpoint: dict[str, Any]) -> dict[str, Any]:
    """Expressions cut to fit a table; `endpoints show` prints them whole."""
    source = " ".join((endpoint.get("filter") or "").split())
    preset = endpoint.get("preset")
    body = "transform" if endpoint.get("transform") else f"preset:{preset}" if preset else "event"
    signature = endpoint.get("extra_signature")
    description = endpoint.get("description") or ""
    return endpoint | {
        "filter": _cut(source, 40) or None,
        "description": _cut(description, _DESCRIPTION_CHARS) or None,
        "body": body,
        "extra_signature": signature["header"] if signature else None,
    }


def _cut(text: str, chars: int) -> str:
    return text[: chars - 1] + "…" if len(text) > chars else text


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _print_record(data: dict[str, Any]) -> None:
    width = max(len(k) for k in data)
    for key, value in data.items():
        shown = json.dumps(value) if isinstance(value, dict | list) and value else _cell(value)
        print(f"{key.ljust(width)}  {shown}")


def _print_with_secret(data: dict[str, Any]) -> None:
    _print_record({k: v for k, v in data.items() if k != "secret"})
    print(f"\nsecret: {data['secret']}\n(shown only now: give it to the receiver, which verifies signatures with it)")


def _print_status(data: dict[str, Any]) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in data["deliveries"].items())
    oldest = data["oldest_pending_age_s"]
    print(
        f"tillhook {data['version']}, up {data['uptime_s']:.0f}s, database {data['database']['path']}"
        f" ({data['database']['size_bytes'] / 1e6:.1f} MB)"
    )
    print(f"deliveries: {counts}")
    print(
        f"backlog {data['backlog']}, in flight {data['in_flight']}"
        + (f", oldest pending {oldest:.0f}s" if oldest is not None else "")
    )
    print()
    daemons = data.get("daemons") or []  # an older daemon's status has none
    if daemons:
        print("daemons sharing the outbox:")
        _table(
            [d | {"live": "yes" if d["live"] else "no", "this": "yes" if d["this"] else None} for d in daemons],
            ("id", "listen", "started_at", "last_seen_at", "live", "this"),
        )
        print()

    def why(e: dict[str, Any]) -> str | None:
        if e["state"] == "disabled":
            return f"disabled: {e['disabled_reason'] or 'no reason recorded'}"
        # Until when is the serving daemon's to say (null on another one).
        if e["state"] == "paused":
            return f"paused until {e['paused_until']}" if e["paused_until"] else "paused"
        if e["state"] == "backing_off":
            return f"backing off, next probe {e['next_probe_at']}" if e["next_probe_at"] else "backing off"
        return None

    rows = [
        e
        | {
            "success_1h": "-" if e["success_rate_last_hour"] is None else f"{e['success_rate_last_hour']:.0%}",
            "why": why(e),
        }
        for e in data["endpoints"]
    ]
    columns = ("name", "state", "held", "in_flight", "pending", "success_1h", "last_success_at", "why")
    served = ("served_by",) if daemons else ()
    _table(rows, (*columns, *served, "last_failure_reason"))


def _print_deliveries(data: dict[str, Any]) -> None:
    _table(data["data"], _DELIVERY_COLUMNS)
    _more(data)


def _more(data: dict[str, Any]) -> None:
    # On stderr, so the table on stdout stays a table when piped.
    if data["next_cursor"]:
        print(f"\nmore: --cursor {data['next_cursor']}", file=sys.stderr)


def _print_schema_errors(problems: list[dict[str, str]] | None, whose: str) -> None:
    if problems:
        print(f"\n{whose} did not match its type's schema (not strict, so accepted):")
        for problem in problems:
            print(f"  {problem['field']}: {problem['message']}")


def _print_delivery(data: dict[str, Any]) -> None:
    _print_record({k: v for k, v in data.items() if k not in ("attempt_log", "event_schema_errors")})
    _print_schema_errors(data.get("event_schema_errors"), "its event's data")
    print()
    _table(data["attempt_log"], ("number", "started_at", "duration_ms", "status", "outcome", "error"))
    for attempt in data["attempt_log"]:
        if attempt["response_excerpt"]:
            print(f"\nattempt {attempt['number']} response: {attempt['response_excerpt']}")


def _print_secret(data: dict[str, Any]) -> None:
    print(f"endpoint: {data['name']} ({data['endpoint_id']})")
    print(f"secret:   {data['secret']}")
    for previous in data["previous"]:
        print(f"previous: {previous['secret']} (still signs until {previous['expires_at']})")


def _print_events(data: dict[str, Any]) -> None:
    _table(data["data"], ("id", "type", "idempotency_key", "received_at"))
    _more(data)


def _print_event(data: dict[str, Any]) -> None:
    _print_record({k: v for k, v in data.items() if k not in ("payload", "deliveries", "schema_errors")})
    _print_schema_errors(data.get("schema_errors"), "its data")
    print(f"\npayload:\n{json.dumps(data['payload'], indent=2)}\n\ndeliveries:")
    _table(
        data["deliveries"], ("id", "state", "endpoint", "attempts", "last_status", "last_attempt_at", "next_attempt_at")
    )
