"""Reaching PostgreSQL: the target (its URL, and the password kept apart from it so no log
line, message or repr can show it), connections and pools, and the driver's errors said as
the operator can act on them."""

from __future__ import annotations

import errno
import re
import socket
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, quote, unquote, urlencode

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from tillhook.errors import InvalidInput, StoreUnavailable

# A connection of its own or one lent by the pool: the verbs run on either.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

# What the driver and the OS raise when PostgreSQL cannot be used: the storage is
# unavailable, not a bug. The driver's internal errors are among them: a session the server
# ends while a query starts leaves its protocol in a state it refuses.
DRIVER_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError)

_SCHEMES = ("postgresql", "postgres")
_DEFAULT_PORT = 5432
# The address in "Connect call failed ('127.0.0.1', 5432)", as asyncio words a refusal.
_CALL_ADDRESS = re.compile(r"\('([^']+)', (\d+)")


@dataclass(frozen=True, slots=True, repr=False)
class PostgresTarget:
    """Where the outbox lives. `dsn` never holds a password: that is `password`, or None
    for the driver's own sources (~/.pgpass)."""

    dsn: str
    password: str | None = None

    @classmethod
    def from_url(cls, url: str, *, default_password: str | None = None) -> PostgresTarget:
        """The target of a postgresql:// or postgres:// URL, its password (in the user info,
        else a `password` query parameter, else `default_password`) taken out. A ValueError
        says what is wrong without quoting the URL, which may hold the password."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in _SCHEMES:
            raise ValueError("must start with postgresql:// or postgres://")
        end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
        netloc, tail = rest[:end], rest[end:]
        if "@" in tail:
            # Most likely a password with a / ? or # left unencoded: what follows it would
            # be read as the host and the database, and shown wherever the URL is.
            raise ValueError("has an @ after the host: percent-encode any / ? # or @ in the user or the password")
        userinfo, at, hosts = netloc.rpartition("@")
        password: str | None = None
        if at:
            user, colon, secret = userinfo.partition(":")
            password = unquote(secret) if colon and secret else None
            hosts = f"{user}@{hosts}"
        _check_ports(hosts.rpartition("@")[2])
        before, hash_, fragment = tail.partition("#")
        path, qmark, query = before.partition("?")
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            password = password or next(v for k, v in pairs if k == "password") or None
            query = urlencode([(k, v) for k, v in pairs if k != "password"])
            qmark = "?" if query else ""
        dsn = f"{scheme}://{hosts}{path}{qmark}{query}{hash_}{fragment}"
        return cls(dsn=dsn, password=password or default_password or None)

    @property
    def display(self) -> str:
        """The URL as logs and messages show it: never with a password (the client key's
        `sslpassword`, which the connection needs in the URL, is shown masked)."""
        before, qmark, query = self.dsn.partition("?")
        if "sslpassword" not in query:
            return self.dsn
        tail, hash_, fragment = query.partition("#")
        pairs = [(k, "***" if k == "sslpassword" else v) for k, v in parse_qsl(tail, keep_blank_values=True)]
        return f"{before}{qmark}{urlencode(pairs, safe='*')}{hash_}{fragment}"

    @property
    def where(self) -> str:
        """host:port (each, when several are listed), for messages."""
        hosts = self.dsn.partition("://")[2]
        hosts = hosts[: min((i for i in map(hosts.find, "/?#") if i >= 0), default=len(hosts))]
        hosts = hosts.rpartition("@")[2]
        if not hosts:
            return "the local socket"
        return ",".join(h if _port_of(h) else f"{h}:{_DEFAULT_PORT}" for h in hosts.split(","))

    def __repr__(self) -> str:
        return f"PostgresTarget({self.display!r})"


def _port_of(host: str) -> str:
    if host.startswith("["):
        return host.partition("]")[2].removeprefix(":")
    return host.partition(":")[2]


def _check_ports(hosts: str) -> None:
    for host in hosts.split(",") if hosts else ():
        port = _port_of(host)
        if host.startswith("[") and "]" not in host:
            raise ValueError("has an IPv6 address without its closing ]")
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("has a port that is not a number from 1 to 65535")


def describe_pg_error(exc: BaseException, *, target: PostgresTarget | None = None) -> str:
    """Words for the operator: what failed and what to check. Never a password: the
    driver's texts do not hold one, and the target's is struck out should one appear."""
    text = _words(exc, target)
    if target is not None and target.password:
        for secret in {target.password, quote(target.password, safe="")}:
            text = text.replace(secret, "***")
    return text


def unavailable(exc: BaseException, target: PostgresTarget | None = None) -> StoreUnavailable | InvalidInput:
    """What to raise for a driver or OS error (`raise unavailable(exc) from exc`): the storage
    unavailable, or, for a value PostgreSQL cannot hold in text (a NUL character), the
    request's own mistake, said as such."""
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError):
        return InvalidInput(
            "the request holds a NUL (or other character) that PostgreSQL cannot store in text: take it out",
            slug="invalid-character",
        )
    return StoreUnavailable(describe_pg_error(exc, target=target))


def _words(exc: BaseException, target: PostgresTarget | None) -> str:
    where = target.where if target is not None else "the configured address"
    if isinstance(exc, ConnectionRefusedError) or (isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED):
        called = _CALL_ADDRESS.search(str(exc))
        at = f"{called[1]}:{called[2]}" if called else where
        return f"PostgreSQL at {at} refused the connection: is PostgreSQL running, and listening there?"
    if isinstance(exc, socket.gaierror):
        return f"cannot find the PostgreSQL host {where}: {exc.strerror}"
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return f"PostgreSQL refused the login: {exc} (check the user and its password)"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return f"PostgreSQL refused the login: {exc}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"PostgreSQL at {where} has no such database: {exc} (create it, or fix the database in the URL)"
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return f"PostgreSQL is starting up or shutting down: {exc}; try again in a moment"
    if isinstance(exc, asyncpg.AdminShutdownError | asyncpg.CrashShutdownError):
        return f"PostgreSQL closed the connection: {exc} (shutting down or restarting, or the session was ended)"
    if isinstance(exc, asyncpg.DiskFullError):
        return f"PostgreSQL's disk is full: {exc}"
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return f"PostgreSQL has too many connections: {exc} (raise its max_connections, or close other clients)"
    if isinstance(exc, TimeoutError):
        return f"PostgreSQL at {where} did not answer in time"
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return f"the PostgreSQL URL has a setting the driver refuses: {exc}"
    if isinstance(exc, asyncpg.ConnectionDoesNotExistError | asyncpg.InterfaceError | ConnectionError):
        return f"the connection to PostgreSQL was lost: {str(exc) or type(exc).__name__}"
    if isinstance(exc, OSError):
        return f"cannot reach PostgreSQL at {where}: {exc.strerror or exc}"
    if isinstance(exc, asyncpg.InternalClientError):
        return f"the PostgreSQL driver lost track of the connection: {exc}"
    return f"PostgreSQL failed: {str(exc) or type(exc).__name__}"


async def connect(target: PostgresTarget, *, connect_timeout: float = 10.0, **kwargs: Any) -> asyncpg.Connection:
    """A connection of its own; StoreUnavailable, in words, when PostgreSQL cannot give one
    within `connect_timeout` seconds."""
    try:
        return await asyncpg.connect(target.dsn, password=target.password, timeout=connect_timeout, **kwargs)
    except DRIVER_ERRORS as exc:
        raise unavailable(exc, target) from exc


async def create_pool(
    target: PostgresTarget, *, min_size: int, max_size: int, connect_timeout: float = 10.0, **kwargs: Any
) -> asyncpg.Pool:
    """A pool holding `min_size` open connections already; StoreUnavailable, in words, when
    they cannot be opened (each within `connect_timeout` seconds)."""
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            target.dsn,
            password=target.password,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            **kwargs,
        )
    except DRIVER_ERRORS as exc:
        raise unavailable(exc, target) from exc
    return pool
