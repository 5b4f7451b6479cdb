"""Config: defaults, durations, listen forms, and every mistake named at once."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tillhook import cli
from tillhook.config import (
    Config,
    Listen,
    load_config,
    parse_duration,
    parse_listen,
    validate_config,
)
from tillhook.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TOKENS = {"ingest_token": "i" * 16, "admin_token": "a" * 16, "viewer_token": "v" * 16}
GOOD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_config(raw, "test.toml")
    # The headline counts what the list names, so a reader knows nothing was left out.
    assert caught.value.message == f"test.toml has {len(caught.value.errors)} error(s)"
    return caught.value.errors


def assert_defaults(config: Config) -> None:
    assert config.server.listen == "127.0.0.1:8787"
    assert config.server.address == Listen(host="127.0.0.1", port=8787)
    assert config.server.max_body_bytes == 262144
    assert config.server.shutdown_grace == 10.0
    assert config.server.max_connections == 1024
    assert (config.server.idle_timeout, config.server.header_timeout, config.server.body_timeout) == (30.0, 10.0, 30.0)
    assert config.auth.ingest_token is None and config.auth.admin_token is None
    assert config.storage.retention == 30 * 86400
    assert (config.storage.url, config.storage.password_file, config.storage.lease) == (None, None, 30.0)
    assert config.storage.postgres is None  # SQLite
    assert config.delivery.timeout == 15.0
    assert config.delivery.retry_schedule == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert config.delivery.give_up_after == 72 * 3600
    assert (config.delivery.max_in_flight, config.delivery.endpoint_max_in_flight) == (256, 4)
    assert config.delivery.allow_http is False
    assert config.delivery.allow_networks == []
    assert config.delivery.response_body_limit == 2048
    assert (config.log.level, config.log.format) == ("info", "auto")
    assert config.alerts.backlog_age == 15 * 60
    assert config.endpoints == []


def test_embedded_defaults_match_the_contract() -> None:
    config = load_config(None, env={})
    assert_defaults(config)
    assert config.storage.path == "tillhook.db"


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    assert_defaults(load_config(path, env={}))


def test_empty_sections_give_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sections.toml"
    path.write_text("[server]\n[auth]\n[storage]\n[delivery]\n[log]\n[alerts]\n")
    assert_defaults(load_config(path, env={}))


def test_the_example_file_holds_the_defaults() -> None:
    # config.example.toml claims to show every key with its default.
    assert_defaults(load_config(REPO / "config.example.toml", env={}))


def test_database_goes_to_the_state_directory_under_systemd(tmp_path: Path) -> None:
    config = load_config(None, env={"STATE_DIRECTORY": f"{tmp_path}:/var/lib/other"})
    assert Path(config.storage.path) == tmp_path / "tillhook.db"


def test_an_absolute_database_path_ignores_the_state_directory(tmp_path: Path) -> None:
    path = tmp_path / "abs.toml"
    path.write_text(f'[storage]\npath = "{tmp_path}/x.db"\n')
    assert load_config(path, env={"STATE_DIRECTORY": "/var/lib/tillhook"}).storage.path == f"{tmp_path}/x.db"


def test_a_full_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "full.toml"
    path.write_text(
        '[server]\nlisten = "0.0.0.0:9000"\nshutdown_grace = "500ms"\n'
        '[auth]\ningest_token = "ingest-token-0123456"\nadmin_token = "admin-token-01234567"\n'
        'viewer_token = "viewer-token-0123456"\n'
        '[delivery]\nretry_schedule = ["1s", "1m"]\ngive_up_after = "1d"\nallow_http = true\n'
        'allow_networks = ["192.168.1.0/24", "fd00::/8"]\n'
        '[[endpoints]]\nname = "lan"\nurl = "http://192.168.1.5/hook"\nevents = ["order.*"]\n'
        f'secret = "{GOOD_SECRET}"\nrate_limit = 2.5\nordered = true\nheaders = {{ "x-api-key" = "k" }}\n'
    )
    config = load_config(path, env={})
    assert config.server.address == Listen(host="0.0.0.0", port=9000)
    assert config.server.shutdown_grace == 0.5
    assert config.delivery.retry_schedule == [1.0, 60.0] and config.delivery.give_up_after == 86400.0
    assert config.delivery.allow_networks == [ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("fd00::/8")]
    (endpoint,) = config.endpoints
    assert (endpoint.name, endpoint.url, endpoint.events) == ("lan", "http://192.168.1.5/hook", ["order.*"])
    assert endpoint.secret is not None and endpoint.secret.get_secret_value() == GOOD_SECRET
    assert (endpoint.rate_limit, endpoint.ordered, endpoint.headers) == (2.5, True, {"x-api-key": "k"})


def test_config_is_frozen() -> None:
    config = load_config(None, env={})
    with pytest.raises(ValueError):
        config.server.listen = "0.0.0.0:1"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1ms", 0.001),
        ("5s", 5.0),
        ("1m", 60.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("3d", 259200.0),
        ("1.5s", 1.5),
        ("0.5h", 1800.0),
        (" 5s ", 5.0),
        ("0s", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["5", "5x", "-1s", "s", "", "5 s", "5 minutes", "5S", "1w", "1y", ".5s", "5.s", "1e3s", "5s5", 5, 5.0, None]
)
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("section", "key"),
    [("server", "shutdown_grace"), ("storage", "retention"), ("delivery", "timeout"), ("delivery", "give_up_after")],
)
def test_a_zero_duration_is_refused(section: str, key: str) -> None:
    (error,) = errors_of({section: {key: "0s"}})
    assert error == f"{section}.{key}: must be longer than zero"


PG_SECRET = "Pg-s3cret-0123"


def load_storage(tmp_path: Path, storage: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "pg.toml"
    path.write_text(f"[storage]\n{storage}\n")
    return load_config(path, env=env or {})


def test_a_postgresql_url_makes_a_target_without_the_password(tmp_path: Path) -> None:
    config = load_storage(tmp_path, f'url = "postgresql://till:{PG_SECRET}@db.lan:5432/outbox"\nlease = "10s"')
    target = config.storage.postgres
    assert target is not None
    assert (target.dsn, target.password) == ("postgresql://till@db.lan:5432/outbox", PG_SECRET)
    assert config.storage.lease == 10.0
    for shown in (repr(config), str(config), repr(target), target.display, str(config.model_dump())):
        assert PG_SECRET not in shown
    assert "db.lan" not in repr(config)  # the URL is secret as a whole: it may hold the password


def test_postgres_scheme_is_accepted_too() -> None:
    config = validate_config({"storage": {"url": "postgres://till@db.lan/outbox"}}, "t")
    assert config.storage.postgres is not None and config.storage.postgres.dsn == "postgres://till@db.lan/outbox"


@pytest.mark.parametrize(
    ("storage", "env", "password"),
    [
        # The URL's own password comes first, then the file, then $PGPASSWORD.
        (f'url = "postgresql://till:{PG_SECRET}@h/d"\npassword_file = "FILE"', {"PGPASSWORD": "env"}, PG_SECRET),
        ('url = "postgresql://till@h/d"\npassword_file = "FILE"', {"PGPASSWORD": "env"}, "from the file"),
        ('url = "postgresql://till@h/d"', {"PGPASSWORD": "env"}, "env"),
        ('url = "postgresql://till@h/d"', {"PGPASSWORD": ""}, None),  # left to ~/.pgpass
        ('url = "postgresql://till@h/d"', {}, None),
    ],
)
def test_where_the_password_comes_from(tmp_path: Path, storage: str, env: dict[str, str], password: str | None) -> None:
    secret = tmp_path / "pgpassword"
    secret.write_text("from the file\n")  # the newline `echo` and editors add is no part of it
    target = load_storage(tmp_path, storage.replace("FILE", str(secret)), env).storage.postgres
    assert target is not None and target.password == password


def test_only_one_trailing_newline_is_taken_off_the_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pgpassword"
    secret.write_bytes(b" spaced pass \r\n")
    target = load_storage(tmp_path, f'url = "postgresql://till@h/d"\npassword_file = "{secret}"').storage.postgres
    assert target is not None and target.password == " spaced pass "


@pytest.mark.parametrize(
    ("content", "why"),
    [(None, "does not exist"), (b"", "is empty"), (b"\n", "is empty"), (b"\xff\xfe", "is not UTF-8 text")],
)
def test_an_unusable_password_file_is_named(tmp_path: Path, content: bytes | None, why: str) -> None:
    secret = tmp_path / "pgpassword"
    if content is not None:
        secret.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_storage(tmp_path, f'url = "postgresql://till@h/d"\npassword_file = "{secret}"')
    assert caught.value.errors == [f"storage.password_file: {secret} {why}"]


def test_an_unreadable_password_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_storage(tmp_path, f'url = "postgresql://till@h/d"\npassword_file = "{tmp_path}"')  # a directory
    (error,) = caught.value.errors
    assert error.startswith(f"storage.password_file: {tmp_path} cannot be read: ")


@pytest.mark.parametrize(
    ("storage", "named"),
    [
        ({"url": f"sqlite:///{PG_SECRET}.db"}, "storage.url: must start with postgresql:// or postgres://"),
        ({"url": f"{PG_SECRET}"}, "storage.url: must start with postgresql:// or postgres://"),
        ({"url": f"postgresql://u:{PG_SECRET}@h:0/d"}, "storage.url: has a port that is not a number"),
        ({"url": f"postgresql://u:{PG_SECRET}/x@h/d"}, "storage.url: has an @ after the host"),
        ({"url": 5}, "storage.url: must be a string"),
        (
            {"url": f"postgresql://u:{PG_SECRET}@h/d", "path": "x.db"},
            "storage.url: cannot go with storage.path: path is a SQLite file, url a PostgreSQL database",
        ),
        ({"password_file": "/etc/pw"}, "storage.password_file: is the password for storage.url, which is not set"),
        ({"url": "postgresql://h/d", "lease": "1s"}, 'storage.lease: must be from "2s" to "10m"'),
        ({"url": "postgresql://h/d", "lease": "11m"}, 'storage.lease: must be from "2s" to "10m"'),
        ({"lease": "30"}, "storage.lease:"),  # a duration needs its unit
    ],
)
def test_bad_storage_keys_are_named_without_the_url(storage: dict[str, Any], named: str) -> None:
    (error,) = errors_of({"storage": storage})
    assert error.startswith(named), error
    assert PG_SECRET not in error


@pytest.mark.parametrize(("lease", "seconds"), [("2s", 2.0), ("10m", 600.0), ("90s", 90.0)])
def test_lease_bounds_are_inclusive(lease: str, seconds: float) -> None:
    assert validate_config({"storage": {"lease": lease}}, "t").storage.lease == seconds


def test_connection_keys_are_read(tmp_path: Path) -> None:
    path = tmp_path / "connections.toml"
    path.write_text(
        '[server]\nmax_connections = 200\nidle_timeout = "5s"\nheader_timeout = "2s"\nbody_timeout = "1m"\n'
    )
    server = load_config(path, env={}).server
    assert (server.max_connections, server.idle_timeout, server.header_timeout, server.body_timeout) == (
        200,
        5.0,
        2.0,
        60.0,
    )


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"max_connections": 0}, "server.max_connections: must be at least 1"),
        ({"max_connections": "many"}, "server.max_connections:"),
        ({"idle_timeout": "0s"}, "server.idle_timeout: must be longer than zero"),
        ({"header_timeout": "10"}, "server.header_timeout:"),
        ({"body_timeout": 30}, "server.body_timeout:"),
    ],
)
def test_bad_connection_keys_are_named(raw: dict[str, Any], named: str) -> None:
    errors = errors_of({"server": raw})
    assert len(errors) == 1 and errors[0].startswith(named), errors


@pytest.mark.parametrize(
    ("value", "listen"),
    [
        ("127.0.0.1:8787", Listen(host="127.0.0.1", port=8787)),
        ("localhost:1", Listen(host="localhost", port=1)),
        ("[::1]:8787", Listen(host="::1", port=8787)),
        ("0.0.0.0:80", Listen(host="0.0.0.0", port=80)),
        ("pos.lan:65535", Listen(host="pos.lan", port=65535)),
        ("unix:/run/tillhook/tillhook.sock", Listen(unix_path="/run/tillhook/tillhook.sock")),
    ],
)
def test_listen_forms(value: str, listen: Listen) -> None:
    assert parse_listen(value) == listen
    assert validate_config({"server": {"listen": value}, "auth": TOKENS}, "t").server.address == listen


@pytest.mark.parametrize(
    ("value", "loopback", "base_url"),
    [
        ("127.0.0.1:8787", True, "http://127.0.0.1:8787"),
        ("127.8.9.10:1", True, "http://127.8.9.10:1"),
        ("localhost:8787", True, "http://localhost:8787"),
        ("[::1]:8787", True, "http://[::1]:8787"),
        ("unix:/run/t.sock", True, "http://localhost"),
        ("0.0.0.0:8787", False, "http://0.0.0.0:8787"),
        ("[::]:8787", False, "http://[::]:8787"),
        ("192.168.1.2:8787", False, "http://192.168.1.2:8787"),
        ("pos.lan:8787", False, "http://pos.lan:8787"),  # a name could resolve anywhere
    ],
)
def test_listen_loopback_and_url(value: str, loopback: bool, base_url: str) -> None:
    address = parse_listen(value)
    assert address.is_loopback is loopback
    assert address.base_url() == base_url


@pytest.mark.parametrize(
    "value",
    [
        "8787",
        "127.0.0.1",
        "127.0.0.1:",
        ":8787",
        "127.0.0.1:http",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "unix:",
        "unix:run/t.sock",
        "[::1]",
    ],
)
def test_bad_listen_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)
    (error,) = errors_of({"server": {"listen": value}})
    assert error.startswith("server.listen:")


def test_every_error_is_named_at_once() -> None:
    errors = errors_of(
        {
            "server": {"listen": "nowhere", "shutdown_grace": "soon"},
            "delivery": {"timeout": "0s", "max_in_flight": 0, "retry_schedule": ["5s", "5"]},
            "storage": {"colour": "blue"},
            "endpoints": [
                {"name": "a", "url": "http://lan.example/hook"},
                {"name": "a", "url": "https://x.example", "secret": "nope", "events": ["bad pattern"]},
                {"name": "b", "url": "https://x.example", "headers": {"webhook-id": "x"}},
            ],
        }
    )
    expected = [
        "server.listen:",
        "server.shutdown_grace:",
        "delivery.timeout:",
        "delivery.max_in_flight:",
        "delivery.retry_schedule[1]:",
        "storage.colour: unknown key",
        "endpoints[0].url:",
        "endpoints[1].name:",
        "endpoints[1].secret:",
        "endpoints[1].events:",
        "endpoints[2].headers:",
    ]
    for prefix in expected:
        assert sum(line.startswith(prefix) for line in errors) == 1, f"{prefix} not named once in:\n{errors}"
    assert len(errors) == len(expected)


def test_cross_key_problems_are_reported_with_field_errors() -> None:
    # The duplicate name and the http URL are only visible across keys; they must not hide
    # behind (or be hidden by) an ordinary field error.
    errors = errors_of(
        {
            "delivery": {"timeout": "x"},
            "server": {"listen": "0.0.0.0:8787"},
            "endpoints": [{"name": "a", "url": "http://a.example"}, {"name": "a", "url": "https://b.example"}],
        }
    )
    assert [e.split(":")[0] for e in errors] == [
        "delivery.timeout",
        "endpoints[0].url",
        "endpoints[1].name",
        "server.listen",
    ]


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"unknown": {}}, "unknown: unknown key"),  # extra="forbid" at every level
        ({"server": {"port": 1}}, "server.port: unknown key"),
        ({"auth": {"token": "x" * 16}}, "auth.token: unknown key"),
        ({"delivery": {"retries": 3}}, "delivery.retries: unknown key"),
        ({"log": {"colour": True}}, "log.colour: unknown key"),
        ({"endpoints": [{"name": "x", "url": "https://x.example", "colour": 1}]}, "endpoints[0].colour: unknown key"),
        ({"endpoints": [{"name": "bad name", "url": "https://x.example"}]}, "endpoints[0].name:"),
        ({"endpoints": [{"name": "x"}]}, "endpoints[0].url:"),
        ({"endpoints": [{"url": "https://x.example"}]}, "endpoints[0].name:"),
        ({"endpoints": [{"name": "x", "url": "ftp://x.example"}]}, "endpoints[0].url:"),
        ({"endpoints": [{"name": "x", "url": "https://x.example:99999"}]}, "endpoints[0].url:"),
        ({"endpoints": [{"name": "x", "url": "https://x.example", "events": []}]}, "endpoints[0].events:"),
        ({"endpoints": [{"name": "x", "url": "https://x.example", "secret": "whsec_AAAA"}]}, "endpoints[0].secret:"),
        ({"endpoints": [{"name": "x", "url": "https://x.example", "max_in_flight": 0}]}, "endpoints[0].max_in_flight:"),
        ({"endpoints": [{"name": "x", "url": "https://x.example", "rate_limit": 0}]}, "endpoints[0].rate_limit:"),
        ({"endpoints": [{"name": "x", "url": "https://x.example", "headers": {"Host": "y"}}]}, "endpoints[0].headers:"),
        (
            {"endpoints": [{"name": "x", "url": "https://x.example", "filter": "data.amount >"}]},
            "endpoints[0].filter: line 1, column",
        ),
        (
            {"endpoints": [{"name": "x", "url": "https://x.example", "transform": "amount"}]},
            "endpoints[0].transform: line 1, column 1",
        ),
        ({"endpoints": [{"name": "x", "url": "https://x.example", "preset": "slak"}]}, "endpoints[0].preset:"),
        (
            {"endpoints": [{"name": "x", "url": "https://x.example", "extra_signature": {"header": "webhook-id"}}]},
            "endpoints[0].extra_signature.header: 'webhook-id' is set by tillhook",  # as the API names it
        ),
        (
            {
                "endpoints": [
                    {"name": "x", "url": "https://x.example", "extra_signature": {"header": "x-s", "scheme": "md5"}}
                ]
            },
            "endpoints[0].extra_signature.scheme:",
        ),
        ({"endpoints": "x"}, "endpoints:"),
        ({"delivery": {"retry_schedule": []}}, "delivery.retry_schedule:"),
        ({"delivery": {"retry_schedule": ["5s", "0s"]}}, "delivery.retry_schedule[1]:"),
        ({"delivery": {"give_up_after": "72"}}, "delivery.give_up_after:"),
        ({"delivery": {"endpoint_max_in_flight": 0}}, "delivery.endpoint_max_in_flight:"),
        ({"server": {"max_body_bytes": 10}}, "server.max_body_bytes:"),
        ({"storage": {"retention": "forever"}}, "storage.retention:"),
        ({"auth": {"admin_token": "short"}}, "auth.admin_token:"),
        ({"log": {"level": "verbose"}}, "log.level:"),
        ({"alerts": {"backlog": "15m"}}, "alerts.backlog: unknown key"),
        ({"alerts": {"backlog_age": "15"}}, "alerts.backlog_age:"),  # a duration needs its unit
        ({"alerts": {"backlog_age": "0s"}}, "alerts.backlog_age:"),
        ({"endpoints": [{"name": "x", "url": "https://x.example", "events": ["a.**.b"]}]}, "endpoints[0].events:"),
        (
            {"endpoints": [{"name": "x", "url": "https://x.example", "category": "Loyalty/App"}]},
            "endpoints[0].category: must be 1 to 64 letters",
        ),
        (
            {"endpoints": [{"name": "x", "url": "https://x.example", "description": "two\nlines"}]},
            "endpoints[0].description: must not hold control characters",
        ),
    ],
)
def test_single_mistakes(raw: dict[str, Any], named: str) -> None:
    errors = errors_of(raw)
    assert len(errors) == 1 and errors[0].startswith(named), errors


@pytest.mark.parametrize("network", ["not-a-cidr", "192.168.1.5/24", "10.0.0.0/33"])  # /24 with host bits set
def test_bad_allow_networks_are_named(network: str) -> None:
    errors = errors_of({"delivery": {"allow_networks": ["10.0.0.0/8", network]}})
    assert errors and all(e.startswith("delivery.allow_networks[1]") for e in errors)


@pytest.mark.parametrize("network", ["not-a-cidr", "192.168.1.5/24"])
def test_a_bad_allow_network_is_one_error_with_a_plain_path(network: str) -> None:
    errors = errors_of({"delivery": {"allow_networks": [network]}})
    assert len(errors) == 1 and errors[0].startswith("delivery.allow_networks[0]: "), errors


def test_duplicate_endpoint_names() -> None:
    errors = errors_of(
        {
            "endpoints": [
                {"name": "a", "url": "https://a.example"},
                {"name": "b", "url": "https://b.example"},
                {"name": "a", "url": "https://c.example"},
            ]
        }
    )
    assert errors == ["endpoints[2].name: 'a' is used by another endpoint"]


@pytest.mark.parametrize("url", ["http://10.0.0.5/hook", "http://lan.example:8080/hook"])
def test_http_endpoint_needs_allow_http(url: str) -> None:
    (error,) = errors_of({"endpoints": [{"name": "lan", "url": url}]})
    assert error.startswith("endpoints[0].url:") and "allow_http" in error
    delivery = {"allow_http": True, "allow_networks": ["10.0.0.0/8"]}
    config = validate_config({"delivery": delivery, "endpoints": [{"name": "lan", "url": url}]}, "t")
    assert config.endpoints[0].url == url


@pytest.mark.parametrize(
    ("url", "networks", "error"),
    [
        (
            "https://127.0.0.1/h",
            [],
            (
                "endpoints[0].url: 127.0.0.1 is a loopback address: add a network covering it"
                ' to delivery.allow_networks, like "127.0.0.1/32"'
            ),
        ),
        (
            "https://[::1]:8443/h",
            ["127.0.0.0/8"],
            (
                "endpoints[0].url: ::1 is a loopback address: add a network covering"
                ' it to delivery.allow_networks, like "::1/128"'
            ),
        ),
        (
            "https://10.1.2.3/h",
            ["192.168.0.0/16"],
            (
                "endpoints[0].url: 10.1.2.3 is a private address: add a network"
                ' covering it to delivery.allow_networks, like "10.1.2.3/32"'
            ),
        ),
        (
            "https://api.localhost/h",
            [],
            (
                "endpoints[0].url: api.localhost is a loopback name: add a network covering"
                ' 127.0.0.1 to delivery.allow_networks, like "127.0.0.1/32"'
            ),
        ),
        (
            "https://2130706433/h",
            ["127.0.0.0/8"],
            ("endpoints[0].url: 2130706433 is read as the IPv4 address 127.0.0.1: write the address as a.b.c.d"),
        ),
    ],
)
def test_undeliverable_endpoint_urls_are_config_errors(url: str, networks: list[str], error: str) -> None:
    assert errors_of({"delivery": {"allow_networks": networks}, "endpoints": [{"name": "x", "url": url}]}) == [error]


@pytest.mark.parametrize(
    ("url", "networks"),
    [
        ("https://127.0.0.1/h", ["127.0.0.0/8"]),
        ("https://localhost:8443/h", ["127.0.0.0/8"]),
        ("https://[::1]/h", ["::1/128"]),
        ("https://10.1.2.3/h", ["10.0.0.0/8"]),
        ("https://hooks.lan/h", []),
    ],
)
def test_endpoint_urls_inside_allow_networks_are_fine(url: str, networks: list[str]) -> None:
    config = validate_config({"delivery": {"allow_networks": networks}, "endpoints": [{"name": "x", "url": url}]}, "t")
    assert config.endpoints[0].url == url


def test_undeliverable_urls_are_named_when_other_keys_fail_too() -> None:
    # The cross checks then run over the raw values; an unparsable network is named by its
    # own field and the others still count.
    errors = errors_of(
        {
            "delivery": {"timeout": "soon", "allow_networks": ["10.0.0.0/8", "nonsense"]},
            "endpoints": [{"name": "a", "url": "https://127.0.0.1/h"}, {"name": "b", "url": "https://10.0.0.7/h"}],
        }
    )
    assert [e.split(":", 1)[0] for e in errors] == [
        "delivery.timeout",
        "delivery.allow_networks[1]",
        "endpoints[0].url",
    ]


@pytest.mark.parametrize("header", ["authorization", "Authorization"])
def test_user_info_and_an_authorization_header_are_a_config_error(header: str) -> None:
    endpoint = {"name": "x", "url": "https://user:pass@a.example/h", "headers": {header: "Bearer t"}}
    (error,) = errors_of({"endpoints": [endpoint]})
    assert error.startswith("endpoints[0].headers: an authorization header cannot go with user info in the url")
    alone = {"name": "x", "url": "https://user:pass@a.example/h", "headers": {"x-api-key": "k"}}
    assert validate_config({"endpoints": [alone]}, "t").endpoints[0].headers == {"x-api-key": "k"}


@pytest.mark.parametrize("value", ["true", "yes", 1])
def test_allow_http_must_be_a_real_boolean(value: object) -> None:
    # TOML has booleans; a quoted "true" is a mistake, and must be judged the same whether or
    # not another key is wrong too.
    endpoints = [{"name": "lan", "url": "http://lan.example"}]
    alone = _errors_or_none({"delivery": {"allow_http": value}, "endpoints": endpoints})
    assert alone is not None and any(e.startswith("delivery.allow_http:") for e in alone)
    with_other = errors_of({"delivery": {"allow_http": value, "timeout": "x"}, "endpoints": endpoints})
    assert [e for e in with_other if not e.startswith("delivery.timeout:")] == alone


def _errors_or_none(raw: dict[str, Any]) -> list[str] | None:
    try:
        validate_config(raw, "t")
    except ConfigError as exc:
        return exc.errors
    return None


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"ingest_token": "i" * 16},
        {"admin_token": "a" * 16},
        {"ingest_token": "i" * 16, "admin_token": "a" * 16},  # the viewer token is needed too
    ],
)
@pytest.mark.parametrize("listen", ["0.0.0.0:8787", "192.168.1.2:8787", "[::]:8787", "pos.lan:8787"])
def test_non_loopback_listen_needs_all_three_tokens(listen: str, auth: dict[str, str]) -> None:
    (error,) = errors_of({"server": {"listen": listen}, "auth": auth})
    assert error.startswith("server.listen:")
    assert all(f"auth.{name}_token" in error for name in ("ingest", "admin", "viewer")), error


@pytest.mark.parametrize(
    "auth",
    [
        {"ingest_token": "s" * 16, "viewer_token": "s" * 16},
        {"admin_token": "s" * 16, "viewer_token": "s" * 16},
        {"ingest_token": "s" * 16, "admin_token": "s" * 16},
    ],
)
def test_a_token_shared_by_two_roles_is_refused(auth: dict[str, str]) -> None:
    (error,) = errors_of({"auth": auth})
    assert error == "auth: the ingest, admin and viewer tokens must all differ", error


def test_a_short_viewer_token_is_refused() -> None:
    (error,) = errors_of({"auth": {"viewer_token": "short"}})
    assert error.startswith("auth.viewer_token:"), error


@pytest.mark.parametrize("listen", ["0.0.0.0:8787", "192.168.1.2:8787", "[::]:8787"])
def test_non_loopback_listen_with_all_three_tokens_is_fine(listen: str) -> None:
    assert validate_config({"server": {"listen": listen}, "auth": TOKENS}, "t").server.listen == listen


@pytest.mark.parametrize("listen", ["127.0.0.1:8787", "localhost:8787", "[::1]:8787", "unix:/run/t.sock"])
def test_loopback_listen_needs_no_tokens(listen: str) -> None:
    assert validate_config({"server": {"listen": listen}}, "t").auth.admin_token is None


def test_secrets_stay_out_of_reprs() -> None:
    config = validate_config(
        {
            "auth": {"admin_token": "admin-token-very-secret"},
            "endpoints": [{"name": "x", "url": "https://x.example", "secret": GOOD_SECRET}],
        },
        "t",
    )
    assert GOOD_SECRET not in repr(config) and "admin-token-very-secret" not in repr(config)
    assert GOOD_SECRET not in str(config.model_dump())


@pytest.mark.parametrize(
    ("text", "said"),
    [("[server\nlisten = ", "not valid TOML"), ("listen = 1\nlisten = 2\n", "not valid TOML")],
)
def test_broken_toml_is_a_config_error(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=said):
        load_config(path, env={})


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", env={})


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[storage]\npath = "caf\xe9.db"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})


# Each check-config run is a fresh interpreter (about a second); they start together once.
CHECK_CASES = {
    "example": None,
    "good": '[[endpoints]]\nname = "a"\nurl = "https://a.example/hook"\n'
    '[[endpoints]]\nname = "b"\nurl = "https://b.example/hook"\nevents = ["x.*"]\n',
    "bad": '[server]\nlisten = "x"\ncolour = "red"\n[delivery]\ntimeout = "fast"\n'
    '[[endpoints]]\nname = "a"\n[[endpoints]]\nname = "b"\nurl = "http://b.example"\n',
    "targets": '[delivery]\nallow_http = true\nallow_networks = ["192.168.1.0/24"]\n'
    '[[endpoints]]\nname = "lo"\nurl = "http://127.0.0.1:9000/h"\n'
    '[[endpoints]]\nname = "local"\nurl = "https://localhost/h"\n'
    '[[endpoints]]\nname = "short"\nurl = "https://127.1/h"\n'
    '[[endpoints]]\nname = "both"\nurl = "https://u:p@a.example/h"\nheaders = { authorization = "Bearer x" }\n'
    '[[endpoints]]\nname = "lan"\nurl = "http://192.168.1.5/h"\n',
}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def check_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    directory = tmp_path_factory.mktemp("check-config")
    paths = {"example": REPO / "config.example.toml"}
    for name, text in CHECK_CASES.items():
        if text is not None:
            paths[name] = directory / f"{name}.toml"
            paths[name].write_text(text)
    started = {
        name: subprocess.Popen(
            [sys.executable, "-m", "tillhook", "check-config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, path in paths.items()
    }
    runs = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=60)
        runs[name] = Run(process.returncode, stdout, stderr)
    return runs


def test_check_config_accepts_the_example(check_config: dict[str, Run]) -> None:
    done = check_config["example"]
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout and done.stderr == ""


def test_check_config_accepts_a_good_file(check_config: dict[str, Run]) -> None:
    done = check_config["good"]
    assert done.returncode == 0, done.stderr
    assert "ok (2 endpoint(s)" in done.stdout


def test_check_config_names_every_error_and_exits_2(check_config: dict[str, Run]) -> None:
    done = check_config["bad"]
    assert done.returncode == 2
    assert done.stdout == ""
    assert "5 error(s)" in done.stderr
    for named in (
        "server.listen:",
        "server.colour: unknown key",
        "delivery.timeout:",
        "endpoints[0].url:",
        "endpoints[1].url:",
    ):
        assert named in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_refuses_undeliverable_targets_and_exits_2(check_config: dict[str, Run]) -> None:
    done = check_config["targets"]
    assert done.returncode == 2 and done.stdout == ""
    assert "4 error(s)" in done.stderr
    for named in (
        (
            "endpoints[0].url: 127.0.0.1 is a loopback address: add a network covering it to delivery.allow_networks,"
            ' like "127.0.0.1/32"'
        ),
        "endpoints[1].url: localhost is a loopback name",
        "endpoints[2].url: 127.1 is read as the IPv4 address 127.0.0.1: write the address as a.b.c.d",
        "endpoints[3].headers: an authorization header cannot go with user info in the url",
    ):
        assert named in done.stderr
    assert "endpoints[4]" not in done.stderr  # inside allow_networks
    assert "Traceback" not in done.stderr


# The remaining cases run the same entry point in-process: no need for another interpreter.
def test_check_config_reports_broken_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[server\nlisten = ")
    assert cli.main(["check-config", str(path)]) == cli.EXIT_USAGE == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "not valid TOML" in captured.err and str(path) in captured.err


def test_check_config_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml does not exist" in capsys.readouterr().err


def test_check_config_prints_one_line_per_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "two.toml"
    path.write_text('[server]\nlisten = "x"\n[log]\nlevel = "loud"\n')
    assert cli.main(["check-config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"tillhook: {path} has 2 error(s)"
    assert [line.split(":")[0] for line in lines[1:]] == ["  server.listen", "  log.level"]
