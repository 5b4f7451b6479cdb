"""`tillhook status`, `tillhook endpoints …`, `tillhook deliveries …`: the admin API from a
terminal. The daemon's URL and admin token come from the same config the daemon reads,
unless --url/--token or $TILLHOOK_URL/$TILLHOOK_ADMIN_TOKEN say otherwise."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import aiohttp

from tillhook.config import Config
from tillhook.errors import TillhookError

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class ApiError(TillhookError):
    """The daemon refused the request."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        first, newline, rest = detail.partition("\n")
        super().__init__(f"{first} (HTTP {status}){newline}{rest}")


def add_commands(commands: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    def admin(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_config(parser)
        parser.add_argument("--url", help="daemon URL (default: $TILLHOOK_URL, else from the config's listen address)")
        parser.add_argument("--token", help="admin token (default: $TILLHOOK_ADMIN_TOKEN, else the config's or the database's)")
        parser.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
        return parser

    admin(commands.add_parser("status", help="version, backlog and the health of each endpoint"))

    endpoints = commands.add_parser("endpoints", help="list and manage endpoints").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    admin(endpoints.add_parser("list", help="list endpoints"))
    add = admin(endpoints.add_parser("add", help="create an endpoint (prints its secret once)"))
    add.add_argument("name")
    add.add_argument("endpoint", metavar="URL", help="where to deliver")
    _endpoint_options(add)
    add.add_argument("--secret", help="whsec_… secret (default: generated)")
    add.add_argument("--disabled", action="store_true", help="create it disabled")
    for action, text in (("show", "show one endpoint"), ("remove", "delete an endpoint (cancels its pending deliveries)"),
                         ("enable", "enable an endpoint"), ("disable", "disable an endpoint (pending deliveries wait)"),
                         ("test", "deliver a tillhook.ping event to it")):
        admin(endpoints.add_parser(action, help=text)).add_argument("endpoint", metavar="ID|NAME")
    update = admin(endpoints.add_parser("update", help="change an endpoint"))
    update.add_argument("endpoint", metavar="ID|NAME")
    update.add_argument("--name", help="rename it")
    # --url names the daemon, as everywhere else.
    update.add_argument("--endpoint-url", metavar="URL", help="deliver to this URL from now on")
    _endpoint_options(update)
    rotate = admin(endpoints.add_parser("rotate-secret", help="new secret (printed once); the old one signs on for --grace"))
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
    listing = admin(deliveries.add_parser("list", help="deliveries, newest first"))
    listing.add_argument("--endpoint", metavar="ID|NAME")
    listing.add_argument("--state", choices=["pending", "delivering", "delivered", "failed", "cancelled"])
    listing.add_argument("--type", help="event type or pattern, like sale.*")
    listing.add_argument("--event", metavar="EVENT_ID")
    listing.add_argument("--since", help="RFC 3339 time, or a duration ago like 2h")
    listing.add_argument("--until")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor", help="next_cursor of the previous page")
    for action, text in (("show", "one delivery with every attempt"), ("retry", "send it again now")):
        admin(deliveries.add_parser(action, help=text)).add_argument("delivery", metavar="ID")


def _endpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", nargs="+", metavar="PATTERN", help='event patterns, like "sale.*" (default: all)')
    parser.add_argument("--max-in-flight", type=int)
    parser.add_argument("--rate-limit", type=float, help="attempts per second")
    parser.add_argument("--ordered", action=argparse.BooleanOptionalAction, default=None,
                        help="one at a time, strictly in order")
    parser.add_argument("--header", action="append", metavar="NAME=VALUE", help="extra header (repeatable)")


def _endpoint_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("name", "events", "max_in_flight", "rate_limit", "ordered", "secret"):
        value = getattr(args, key, None)
        if value is not None:
            fields[key] = value
    if getattr(args, "endpoint_url", None) is not None:
        fields["url"] = args.endpoint_url
    if args.header:
        headers = {}
        for item in args.header:
            name, sep, value = item.partition("=")
            if not sep:
                raise TillhookError(f"--header {item!r} must look like NAME=VALUE")
            headers[name.strip()] = value
        fields["headers"] = headers
    return fields


class Client:
    def __init__(self, config: Config, args: argparse.Namespace, token: str) -> None:
        address = config.server.address
        self.base = (args.url or os.environ.get("TILLHOOK_URL") or address.base_url()).rstrip("/")
        self._unix = address.unix_path if address.unix_path and not (args.url or os.environ.get("TILLHOOK_URL")) else None
        self._headers = {"Authorization": f"Bearer {token}"}

    async def __call__(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        connector = aiohttp.UnixConnector(self._unix) if self._unix else None
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        url = self.base + path
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
                async with session.request(method, url, json=body, params=params, headers=self._headers) as response:
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
    command = args.command if args.command == "status" else f"{args.command} {args.action}"
    quoted = _quote(getattr(args, "endpoint", None) or getattr(args, "delivery", None) or "")
    ep, dl = f"/v1/endpoints/{quoted}", f"/v1/deliveries/{quoted}"
    if command == "status":
        return _show(args, await call("GET", "/v1/status"), _print_status)
    if command == "endpoints list":
        return _show(args, await call("GET", "/v1/endpoints"), lambda d: _table(d["data"], _ENDPOINT_COLUMNS))
    if command == "endpoints add":
        fields = _endpoint_fields(args) | {"name": args.name, "url": args.endpoint, "enabled": not args.disabled}
        return _show(args, await call("POST", "/v1/endpoints", fields), _print_with_secret)
    if command == "endpoints update":
        fields = _endpoint_fields(args)
        if not fields:
            raise TillhookError("nothing to change: give at least one option, like --endpoint-url or --events")
        return _show(args, await call("PATCH", ep, fields), _print_record)
    if command in ("endpoints show", "endpoints enable", "endpoints disable", "endpoints test"):
        method, path = ("GET", ep) if args.action == "show" else ("POST", f"{ep}/{args.action}")
        return _show(args, await call(method, path), _print_record)
    if command == "endpoints remove":
        await call("DELETE", ep)
        print(f"endpoint {args.endpoint} deleted; its unfinished deliveries were cancelled")
        return EXIT_OK
    if command == "endpoints rotate-secret":
        return _show(args, await call("POST", f"{ep}/rotate-secret", {"grace": args.grace}), _print_with_secret)
    if command == "endpoints replay":
        body = {"since": args.since, "until": args.until, "only_failed": not args.all}
        body = {k: v for k, v in body.items() if v is not None}
        return _show(args, await call("POST", f"{ep}/replay", body),
                     lambda d: print(f"{_count(d['deliveries'], 'delivery', 'deliveries')} queued for {args.endpoint}"))
    if command == "deliveries list":
        query = {k: getattr(args, k) for k in ("endpoint", "state", "type", "event", "since", "until", "limit", "cursor")}
        return _show(args, await call("GET", "/v1/deliveries", query=query), _print_deliveries)
    if command == "deliveries show":
        return _show(args, await call("GET", dl), _print_delivery)
    if command == "deliveries retry":
        return _show(args, await call("POST", f"{dl}/retry"), _print_record)
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


_ENDPOINT_COLUMNS = ("id", "name", "state", "url", "events")
_DELIVERY_COLUMNS = ("id", "state", "endpoint", "event_type", "attempts", "last_status", "created_at", "next_attempt_at")


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
    print(f"tillhook {data['version']}, up {data['uptime_s']:.0f}s, database {data['database']['path']}"
          f" ({data['database']['size_bytes'] / 1e6:.1f} MB)")
    print(f"deliveries: {counts}")
    print(f"backlog {data['backlog']}, in flight {data['in_flight']}"
          + (f", oldest pending {oldest:.0f}s" if oldest is not None else ""))
    print()
    def why(e: dict[str, Any]) -> str | None:
        if e["state"] == "disabled":
            return f"disabled: {e['disabled_reason'] or 'no reason recorded'}"
        if e["state"] == "paused":
            return f"paused until {e['paused_until']}"
        if e["state"] == "backing_off":
            return f"backing off, next probe {e['next_probe_at']}"
        return None

    rows = [
        e | {"success_1h": "-" if e["success_rate_last_hour"] is None else f"{e['success_rate_last_hour']:.0%}",
             "why": why(e)}
        for e in data["endpoints"]
    ]
    _table(rows, ("name", "state", "held", "in_flight", "pending", "success_1h", "last_success_at", "why",
                  "last_failure_reason"))


def _print_deliveries(data: dict[str, Any]) -> None:
    _table(data["data"], _DELIVERY_COLUMNS)
    if data["next_cursor"]:
        print(f"\nmore: --cursor {data['next_cursor']}", file=sys.stderr)


def _print_delivery(data: dict[str, Any]) -> None:
    _print_record({k: v for k, v in data.items() if k != "attempt_log"})
    print()
    _table(data["attempt_log"], ("number", "started_at", "duration_ms", "status", "outcome", "error"))
    for attempt in data["attempt_log"]:
        if attempt["response_excerpt"]:
            print(f"\nattempt {attempt['number']} response: {attempt['response_excerpt']}")
