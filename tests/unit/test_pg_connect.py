"""store/pg/connect.py, the pure half: a URL split into a target that never shows its
password, and the driver's errors in words (the real server's are in
tests/integration/test_pg_connect.py)."""

from __future__ import annotations

import socket

import asyncpg
import pytest

from tillhook.store.pg.connect import PostgresTarget, describe_pg_error, unavailable

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("url", "dsn", "password"),
    [
        (f"postgresql://till:{SECRET}@db.lan:5432/outbox", "postgresql://till@db.lan:5432/outbox", SECRET),
        (f"postgres://till:{SECRET}@db.lan/outbox", "postgres://till@db.lan/outbox", SECRET),
        ("postgresql://till@db.lan/outbox", "postgresql://till@db.lan/outbox", None),
        ("postgresql://till:@db.lan/outbox", "postgresql://till@db.lan/outbox", None),  # empty: none given
        ("postgresql://till:p%40ss%2Fw%3Fd@db.lan/outbox", "postgresql://till@db.lan/outbox", "p@ss/w?d"),
        ("postgresql://till:pa@ss@db.lan/outbox", "postgresql://till@db.lan/outbox", "pa@ss"),  # the last @ ends it
        (
            f"postgresql://till@db.lan/outbox?sslmode=require&password={SECRET}",
            "postgresql://till@db.lan/outbox?sslmode=require",
            SECRET,
        ),
        (f"postgresql:///outbox?password={SECRET}", "postgresql:///outbox", SECRET),
        ("postgresql://a:5432,[::1]:5433/outbox", "postgresql://a:5432,[::1]:5433/outbox", None),
        ("postgresql://", "postgresql://", None),
        ("POSTGRESQL://db.lan/outbox", "POSTGRESQL://db.lan/outbox", None),
    ],
)
def test_a_url_is_split_into_a_target_without_its_password(url: str, dsn: str, password: str | None) -> None:
    target = PostgresTarget.from_url(url)
    assert (target.dsn, target.password) == (dsn, password)
    assert target.display == dsn


def test_the_urls_password_wins_over_the_default() -> None:
    assert PostgresTarget.from_url(f"postgresql://u:{SECRET}@h/d", default_password="other").password == SECRET
    assert PostgresTarget.from_url("postgresql://u@h/d", default_password="other").password == "other"
    assert PostgresTarget.from_url("postgresql://u@h/d", default_password="").password is None


def test_neither_repr_nor_display_shows_the_password() -> None:
    target = PostgresTarget.from_url(f"postgresql://till:{SECRET}@db.lan/outbox")
    for shown in (repr(target), str(target), target.display, f"{target}", repr([target])):
        assert SECRET not in shown
    assert repr(target) == "PostgresTarget('postgresql://till@db.lan/outbox')"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"mysql://u:{SECRET}@h/d", "must start with postgresql:// or postgres://"),
        (f"sqlite:///{SECRET}.db", "must start with postgresql:// or postgres://"),
        (f"{SECRET}", "must start with postgresql:// or postgres://"),
        (f"postgresql://u:{SECRET}@h:99999/d", "has a port that is not a number from 1 to 65535"),
        (f"postgresql://u:{SECRET}@h:port/d", "has a port that is not a number from 1 to 65535"),
        (f"postgresql://u:{SECRET}@[::1/d", "has an IPv6 address without its closing ]"),
        # An unencoded / in the password: what follows would pass for the host and be shown.
        ("postgresql://u:12/ab@h/d", "has an @ after the host"),
        ("postgresql://u:12?ab@h/d", "has an @ after the host"),
    ],
)
def test_a_bad_url_is_refused_without_quoting_it(url: str, said: str) -> None:
    with pytest.raises(ValueError) as caught:
        PostgresTarget.from_url(url)
    assert str(caught.value).startswith(said)
    assert SECRET not in str(caught.value) and "ab@" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("postgresql://u@db.lan/d", "db.lan:5432"),
        ("postgresql://u@db.lan:6543/d", "db.lan:6543"),
        ("postgresql://[::1]/d", "[::1]:5432"),
        ("postgresql://a,b:7/d", "a:5432,b:7"),
        ("postgresql:///d", "the local socket"),
    ],
)
def test_where_names_each_host_and_port(url: str, where: str) -> None:
    assert PostgresTarget.from_url(url).where == where


TARGET = PostgresTarget.from_url(f"postgresql://till:{SECRET}@db.lan:6543/outbox")


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (
            ConnectionRefusedError(111, "Connect call failed ('10.0.0.7', 6543)"),
            "PostgreSQL at 10.0.0.7:6543 refused the connection: is PostgreSQL running, and listening there?",
        ),
        (
            ConnectionRefusedError(111, "Connection refused"),  # no address in the text: the target's
            "PostgreSQL at db.lan:6543 refused the connection: is PostgreSQL running, and listening there?",
        ),
        (socket.gaierror(-2, "Name or service not known"), "cannot find the PostgreSQL host db.lan:6543:"),
        (
            asyncpg.InvalidPasswordError('password authentication failed for user "till"'),
            'PostgreSQL refused the login: password authentication failed for user "till" (check the user and',
        ),
        (
            asyncpg.InvalidAuthorizationSpecificationError('role "till" does not exist'),
            'PostgreSQL refused the login: role "till" does not exist',
        ),
        (
            asyncpg.InvalidCatalogNameError('database "outbox" does not exist'),
            'PostgreSQL at db.lan:6543 has no such database: database "outbox" does not exist (create it',
        ),
        (
            asyncpg.CannotConnectNowError("the database system is starting up"),
            "PostgreSQL is starting up or shutting down: the database system is starting up; try again",
        ),
        (
            asyncpg.AdminShutdownError("terminating connection due to administrator command"),
            "PostgreSQL closed the connection: terminating connection due to administrator command",
        ),
        (asyncpg.DiskFullError("could not extend file"), "PostgreSQL's disk is full: could not extend file"),
        (
            asyncpg.TooManyConnectionsError("sorry, too many clients already"),
            "PostgreSQL has too many connections: sorry, too many clients already (raise its max_connections",
        ),
        (TimeoutError(), "PostgreSQL at db.lan:6543 did not answer in time"),
        (
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            "the connection to PostgreSQL was lost: connection was closed in the middle of operation",
        ),
        (asyncpg.InterfaceError("connection is closed"), "the connection to PostgreSQL was lost: connection is closed"),
        (ConnectionResetError(104, "Connection reset by peer"), "the connection to PostgreSQL was lost:"),
        (
            asyncpg.ClientConfigurationError("`sslmode` parameter must be one of: disable, allow"),
            "the PostgreSQL URL has a setting the driver refuses: `sslmode` parameter",
        ),
        (OSError(101, "Network is unreachable"), "cannot reach PostgreSQL at db.lan:6543: Network is unreachable"),
        (
            asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in progress"),
            "the PostgreSQL driver lost track of the connection: cannot switch to state 11",
        ),
        (asyncpg.UniqueViolationError("duplicate key"), "PostgreSQL failed: duplicate key"),
    ],
)
def test_errors_are_said_for_the_operator(exc: BaseException, said: str) -> None:
    assert describe_pg_error(exc, target=TARGET).startswith(said)
    assert unavailable(exc, TARGET).message == describe_pg_error(exc, target=TARGET)


def test_without_a_target_the_words_still_stand() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    assert describe_pg_error(refused).startswith("PostgreSQL at the configured address refused the connection")
    assert describe_pg_error(TimeoutError()) == "PostgreSQL at the configured address did not answer in time"


@pytest.mark.parametrize("shown", ["p@ss word", "p%40ss%20word"])
def test_a_password_in_a_driver_text_is_struck_out(shown: str) -> None:
    target = PostgresTarget.from_url("postgresql://till:p%40ss%20word@db.lan/outbox")
    said = describe_pg_error(asyncpg.PostgresError(f"could not use {shown}"), target=target)
    assert said == "PostgreSQL failed: could not use ***"


def test_the_client_keys_password_is_kept_for_the_connection_but_never_shown() -> None:
    target = PostgresTarget.from_url("postgresql://shop:pw@db.lan/tillhook?sslmode=verify-full&sslpassword=k3y")
    assert "sslpassword=k3y" in target.dsn  # libpq needs it to open the client key
    assert "k3y" not in target.display and "k3y" not in repr(target)
    assert target.display == "postgresql://shop@db.lan/tillhook?sslmode=verify-full&sslpassword=***"
