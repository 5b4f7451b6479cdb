"""The `tillhook` command. Exit codes: 0 ok, 1 runtime error, 2 usage or config error."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

import aiohttp

from tillhook import __version__
from tillhook.cli_admin import (
    DAEMON_HELP,
    ApiError,
    UsageError,
    add_commands,
    daemon_address,
)
from tillhook.cli_admin import run as run_admin
from tillhook.config import Config, config_path_from, load_config
from tillhook.errors import ConfigError, StoreUnavailable, TillhookError
from tillhook.store.pg.connect import PostgresTarget, connect

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """Usage errors in one sentence, naming the command and where its options are listed."""

    def error(self, message: str) -> NoReturn:
        hint = ""
        if "unrecognized arguments" in message and "--url" in message:
            hint = "; --url is an endpoint's URL, the daemon's address is --daemon"
        self.exit(EXIT_USAGE, f"{self.prog}: {message}{hint} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tillhook", description="Webhook delivery daemon for point-of-sale servers.")
    parser.add_argument("--version", action="version", version=f"tillhook {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config", metavar="PATH", help="config file (default: $TILLHOOK_CONFIG, else built-in defaults)"
        )
        return p

    with_config(commands.add_parser("serve", help="run the daemon"))
    check = commands.add_parser("check-config", help="validate a config file and name every error")
    check.add_argument("path", metavar="PATH")
    with_config(commands.add_parser("tokens", help="print the ingest, admin and viewer tokens"))
    backup = with_config(commands.add_parser("backup", help="copy the live database consistently to PATH"))
    backup.add_argument("path", metavar="PATH", help="the new file (must not exist)")
    send = with_config(commands.add_parser("send", help="post one event to the running daemon"))
    send.add_argument("type", metavar="TYPE", help="event type, like transaction.completed")
    send.add_argument("data", metavar="JSON", nargs="?", default="{}", help="the event's data object (default: {})")
    send.add_argument("--id", dest="key", metavar="KEY", help="idempotency key")
    send.add_argument("--daemon", metavar="URL", help=DAEMON_HELP)
    send.add_argument("--token", help="ingest token (default: $TILLHOOK_TOKEN, else the config's or the database's)")
    add_commands(commands, with_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`tillhook events list | head`): the rest of the output has
        # nowhere to go. Point stdout at devnull so the interpreter's last flush cannot fail
        # again (Python's documented recipe), and exit 1: the output is incomplete, and a
        # script under `set -o pipefail` should see that, as it does for coreutils.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_RUNTIME


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.path)
        config = load_config(config_path_from(args.config))
        if args.command == "serve":
            return _serve(config)
        if args.command == "tokens":
            return _run(_tokens(config, args))
        if args.command == "backup":
            return _backup(config, args.path)
        if args.command == "send":
            return _run(_send(config, args))
        if args.command in ("status", "endpoints", "deliveries", "events"):
            return _run(_admin(config, args))
    except ConfigError as exc:
        _error(exc.message, *exc.errors)
        return EXIT_USAGE
    except UsageError as exc:
        _error(exc.message)
        return EXIT_USAGE
    except ApiError as exc:
        _error(exc.message)
        return EXIT_USAGE if exc.status in (400, 404, 409, 415, 422) else EXIT_RUNTIME
    except TillhookError as exc:
        _error(exc.message)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_RUNTIME
    raise AssertionError(f"unhandled command {args.command}")


def _error(message: str, *details: str) -> None:
    print(f"tillhook: {message}", file=sys.stderr)
    for line in details:
        print(f"  {line}", file=sys.stderr)


def _run(coro: object) -> int:
    result: int = asyncio.run(coro)  # type: ignore[arg-type]
    return result


def _check_config(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        _error(exc.message, *exc.errors)
        return EXIT_USAGE
    target = config.storage.postgres
    if target is None:
        print(f"{path}: ok ({len(config.endpoints)} endpoint(s), database {config.storage.path})")
        return EXIT_OK
    try:
        _run(_reach(target))
    except StoreUnavailable as exc:
        _error(f"{path} is valid, but its PostgreSQL cannot be used: {exc.message}")
        return EXIT_RUNTIME
    print(f"{path}: ok ({len(config.endpoints)} endpoint(s), PostgreSQL {target.display})")
    return EXIT_OK


async def _reach(target: PostgresTarget) -> None:
    """A config naming PostgreSQL is only good if it gets in: log in once, then leave."""
    conn = await connect(target)
    await conn.close()


def _serve(config: Config) -> int:
    from tillhook.app import serve
    from tillhook.logs import setup_logging

    setup_logging(config.log.level, config.log.format)
    return _run(serve(config))


async def _stored_tokens(config: Config, args: argparse.Namespace) -> tuple[str, str, str | None]:
    """The config's tokens, else those the daemon keeps in its database, read without
    creating one: run from the wrong directory, a command must not invent a database whose
    tokens the daemon does not know. The viewer token is None in a database from before it,
    until the daemon's next start makes one."""

    from tillhook.app import make_store
    from tillhook.errors import NoDatabase

    auth = config.auth
    ingest = auth.ingest_token.get_secret_value() if auth.ingest_token else None
    admin = auth.admin_token.get_secret_value() if auth.admin_token else None
    viewer = auth.viewer_token.get_secret_value() if auth.viewer_token else None
    if ingest and admin and viewer:
        return ingest, admin, viewer
    source = config_path_from(getattr(args, "config", None))
    shared = config.storage.postgres
    path = shared.display if shared is not None else _absolute(config.storage.path)
    key = "storage.url" if shared is not None else "storage.path"
    origin = f"{key} of {source}" if source else "the built-in default, as no --config or $TILLHOOK_CONFIG was given"
    try:
        stored = await make_store(config).read_tokens()
    except NoDatabase:
        if ingest and admin:  # the commands that need a token have theirs
            return ingest, admin, None
        raise ConfigError(
            f"there is no tillhook database at {path} ({origin}), so no tokens to read: point this command at the"
            " daemon's config with --config PATH or $TILLHOOK_CONFIG, or give the token"
            " (--token, $TILLHOOK_ADMIN_TOKEN / $TILLHOOK_TOKEN, or [auth] in the config)"
        ) from None
    ingest, admin = ingest or stored.get("ingest_token"), admin or stored.get("admin_token")
    if not ingest or not admin:
        raise TillhookError(f"the database at {path} ({origin}) holds no tokens yet: start `tillhook serve` once")
    return ingest, admin, viewer or stored.get("viewer_token")


def _absolute(path: str) -> str:
    """As the operator should read it in a message, wherever the command ran from."""
    from pathlib import Path

    return str(Path(path).absolute())


def _backup(config: Config, path: str) -> int:
    from pathlib import Path

    from tillhook.app import make_store

    if config.storage.postgres is not None:
        _error(*_pg_dump_advice(config.storage.postgres, path, config.storage.password_file))
        return EXIT_USAGE
    target = Path(path).absolute()
    events = asyncio.run(make_store(config).backup(target))
    print(f"backed up {config.storage.path} to {target} ({events} events, {target.stat().st_size} bytes)")
    return EXIT_OK


def _pg_dump_advice(target: PostgresTarget, path: str, password_file: str | None) -> list[str]:
    """A PostgreSQL outbox is backed up by PostgreSQL's own tool: the command for it, which
    never holds the password."""
    url = "'" + target.dsn.replace("'", "'\"'\"'") + "'"  # always quoted: a URL may hold ? and &
    command = f"pg_dump --format=custom --file={shlex.quote(path)} {url}"
    lines = [
        f"tillhook backup copies a SQLite database; this outbox is in PostgreSQL ({target.display}):"
        " back it up with pg_dump instead:",
        command,
        "pg_dump takes the password from $PGPASSWORD or ~/.pgpass (see `man pg_dump`)",
    ]
    if password_file:
        lines.append(f'with the config\'s password file: PGPASSWORD="$(cat {shlex.quote(password_file)})" {command}')
    return lines


async def _tokens(config: Config, args: argparse.Namespace) -> int:
    ingest, admin, viewer = await _stored_tokens(config, args)
    print(f"ingest: {ingest}")
    print(f"admin:  {admin}")
    if viewer:
        print(f"viewer: {viewer}")
    else:  # a database from before the viewer token: the daemon makes one when it starts
        print("the viewer token appears after the next start of the daemon", file=sys.stderr)
    return EXIT_OK


async def _admin(config: Config, args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("TILLHOOK_ADMIN_TOKEN") or (await _stored_tokens(config, args))[1]
    return await run_admin(config, args, token)


async def _send(config: Config, args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        _error(f"JSON is not valid JSON: {exc}")
        return EXIT_USAGE
    token = args.token or os.environ.get("TILLHOOK_TOKEN") or (await _stored_tokens(config, args))[0]
    base, unix_path = daemon_address(config, args)
    url = base + "/v1/events"
    event: dict[str, object] = {"type": args.type, "data": data}
    if args.key:
        event["id"] = args.key
    connector = aiohttp.UnixConnector(unix_path) if unix_path else None
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(url, json=event, headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            body = await response.json(content_type=None)
    except aiohttp.ClientError as exc:
        _error(f"cannot reach tillhook at {url} ({exc}); is `tillhook serve` running?")
        return EXIT_RUNTIME
    if response.status != 202:
        _error(f"{response.status}: {body.get('detail', body) if isinstance(body, dict) else body}")
        return EXIT_RUNTIME
    print(json.dumps(body))
    return EXIT_OK
