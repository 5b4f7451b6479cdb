"""The configuration: TOML into frozen pydantic models. The only module that reads files or
the environment."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from tillhook.catalogue import MAX_TYPES, EventTypeSpec, duplicate_names
from tillhook.endpoint_rules import EndpointSettings, url_policy
from tillhook.errors import ConfigError
from tillhook.store.pg.connect import PostgresTarget
from tillhook.wording import TOML, field_errors, part_refused

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """ "500ms", "5s", "10m", "2h", "3d" -> seconds."""
    if not isinstance(value, str):
        raise ValueError('must be a duration string with a unit, like "500ms", "5s", "10m", "2h" or "3d"')
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(f'{value!r} is not a duration; write a number and a unit, like "5s" or "10m"')
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]


def _lease_bounds(seconds: float) -> float:
    # Shorter, and a daemon briefly stalled (a long pause, a slow disk) loses deliveries it is
    # still attempting; longer, and a dead daemon's deliveries wait that long for another.
    if not 2.0 <= seconds <= 600.0:
        raise ValueError('must be from "2s" to "10m"')
    return seconds


Lease = Annotated[Duration, AfterValidator(_lease_bounds)]


@dataclass(frozen=True, slots=True)
class Listen:
    host: str | None = None
    port: int | None = None
    unix_path: str | None = None

    @property
    def is_loopback(self) -> bool:
        if self.unix_path is not None:
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host or "").is_loopback
        except ValueError:
            return False

    def base_url(self) -> str:
        if self.unix_path is not None:
            return "http://localhost"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_listen(value: str) -> Listen:
    if value.startswith("unix:"):
        path = value.removeprefix("unix:")
        if not path.startswith("/"):
            raise ValueError('a unix socket needs an absolute path, like "unix:/run/tillhook/tillhook.sock"')
        return Listen(unix_path=path)
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise ValueError(f'{value!r} is not "host:port" (like "127.0.0.1:8787") or "unix:/path"')
    return Listen(host=host, port=int(port))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    listen: str = "127.0.0.1:8787"
    max_body_bytes: int = Field(default=262144, ge=1024, le=64 * 1024 * 1024)
    shutdown_grace: Duration = 10.0
    # Lowered at start if the open-file limit cannot hold this many beside the deliveries.
    max_connections: int = Field(default=1024, ge=1, le=1_000_000)
    idle_timeout: Duration = 30.0
    header_timeout: Duration = 10.0
    body_timeout: Duration = 30.0

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @property
    def address(self) -> Listen:
        return parse_listen(self.listen)


class AuthConfig(_Section):
    ingest_token: SecretStr | None = Field(default=None, min_length=16)
    admin_token: SecretStr | None = Field(default=None, min_length=16)
    viewer_token: SecretStr | None = Field(default=None, min_length=16)

    @model_validator(mode="after")
    def _distinct(self) -> AuthConfig:
        # A token shared by two roles would be taken for the stronger one.
        given = [t.get_secret_value() for t in (self.ingest_token, self.admin_token, self.viewer_token) if t]
        if len(set(given)) < len(given):
            raise ValueError("the ingest, admin and viewer tokens must all differ")
        return self


class StorageConfig(_Section):
    """The outbox: a SQLite file at `path`, or PostgreSQL at `url`. The URL is secret (it may
    hold the password), so it is a SecretStr and no message quotes it."""

    path: str = "tillhook.db"
    url: SecretStr | None = None
    password_file: str | None = None
    lease: Lease = 30.0
    retention: Duration = 30 * 86400.0
    # The password from password_file or $PGPASSWORD, for a URL without one; set by load_config.
    _password: str | None = PrivateAttr(default=None)

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                PostgresTarget.from_url(value.get_secret_value())
            except ValueError as exc:
                raise ValueError(
                    f'{exc} (a PostgreSQL URL looks like "postgresql://tillhook@db.lan:5432/tillhook";'
                    " a SQLite file is storage.path)"
                ) from None
        return value

    @model_validator(mode="after")
    def _one_outbox(self) -> StorageConfig:
        if self.url is not None and "path" in self.model_fields_set:
            raise part_refused("url", "cannot go with storage.path: path is a SQLite file, url a PostgreSQL database")
        if self.url is None and self.password_file is not None:
            raise part_refused("password_file", "is the password for storage.url, which is not set")
        return self

    @property
    def postgres(self) -> PostgresTarget | None:
        """Where the PostgreSQL outbox is, with its password; None for SQLite."""
        if self.url is None:
            return None
        return PostgresTarget.from_url(self.url.get_secret_value(), default_password=self._password)


def _network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError('must be a CIDR string, like "192.168.1.0/24"')
    try:
        return ipaddress.ip_network(value.strip())
    except ValueError as exc:
        raise ValueError(f'{value!r} is not a network in CIDR form, like "192.168.1.0/24" ({exc})') from None


Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, PlainValidator(_network)]


class DeliveryConfig(_Section):
    timeout: Duration = 15.0
    retry_schedule: list[Duration] = Field(
        default=[5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0], min_length=1, max_length=50
    )
    give_up_after: Duration = 72 * 3600.0
    max_in_flight: int = Field(default=256, ge=1, le=10000)
    endpoint_max_in_flight: int = Field(default=4, ge=1, le=1000)
    allow_http: StrictBool = False  # TOML has booleans; "true" in quotes is a mistake worth naming
    allow_networks: list[Network] = []
    response_body_limit: int = Field(default=2048, ge=0, le=1024 * 1024)


class EndpointConfig(EndpointSettings):
    """An `[[endpoints]]` table. Its URL is judged under the delivery section's policy, which
    validate_config passes as the validation context."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class AlertsConfig(_Section):
    backlog_age: Duration = 15 * 60.0


class Config(_Section):
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    storage: StorageConfig = StorageConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    log: LogConfig = LogConfig()
    alerts: AlertsConfig = AlertsConfig()
    endpoints: list[EndpointConfig] = []
    event_types: list[EventTypeSpec] = Field(default=[], max_length=MAX_TYPES)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems = _cross_problems(
            [e.model_dump() for e in self.endpoints],
            [{"name": t.name} for t in self.event_types],
            listen=self.server.listen,
            has_tokens=bool(self.auth.ingest_token and self.auth.admin_token and self.auth.viewer_token),
        )
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _cross_problems(endpoints: list[Any], event_types: list[Any], listen: object, has_tokens: bool) -> list[str]:
    """Checks that span keys; written over plain values so they also run when fields fail."""
    problems = duplicate_names(event_types)
    seen: set[str] = set()
    for index, endpoint in enumerate(endpoints):
        if not isinstance(endpoint, dict):
            continue
        name = endpoint.get("name")
        if isinstance(name, str) and name in seen:
            problems.append(f"endpoints[{index}].name: {name!r} is used by another endpoint")
        if isinstance(name, str):
            seen.add(name)
    try:
        loopback = parse_listen(listen).is_loopback if isinstance(listen, str) else True
    except ValueError:
        loopback = True  # reported by the field itself
    if not loopback and not has_tokens:
        problems.append(
            f"server.listen: {listen!r} is not a loopback address, so auth.ingest_token,"
            " auth.admin_token and auth.viewer_token must all be set"
        )
    return problems


def _url_policy(raw: dict[str, Any]) -> dict[str, Any]:
    """The delivery section's URL policy read from the raw values, so endpoint URLs are judged
    even when that section has errors of its own: only a real true allows http, and only the
    networks that parse count (the others are named by their own field)."""
    delivery = raw.get("delivery", {})
    delivery = delivery if isinstance(delivery, dict) else {}
    networks = delivery.get("allow_networks", [])
    parsed = [n for n in map(_parsed_network, networks if isinstance(networks, list) else []) if n is not None]
    return url_policy(delivery.get("allow_http", False) is True, parsed)


def _parsed_network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return _network(value)
    except ValueError:
        return None


def _describe(exc: ValidationError) -> list[str]:
    """One line per line of each message: a cross check's lines each name their own key."""
    described = []
    for error in field_errors(exc, terms=TOML):
        path = error["field"]
        described += [f"{path}: {line}" if path else line for line in error["message"].splitlines()]
    return described


def validate_config(raw: dict[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(raw, context=_url_policy(raw))
    except ValidationError as exc:
        errors = _describe(exc)
        errors += [p for p in _raw_cross_problems(raw) if p not in errors]
        raise ConfigError(f"{source} has {len(errors)} error(s)", errors=errors) from None


def _raw_cross_problems(raw: dict[str, Any]) -> list[str]:
    def section(name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        return value if isinstance(value, dict) else {}

    endpoints = raw.get("endpoints", [])
    event_types = raw.get("event_types", [])
    auth = section("auth")
    return _cross_problems(
        endpoints if isinstance(endpoints, list) else [],
        event_types if isinstance(event_types, list) else [],
        listen=section("server").get("listen", ServerConfig().listen),
        has_tokens=bool(auth.get("ingest_token") and auth.get("admin_token") and auth.get("viewer_token")),
    )


def load_config(path: str | os.PathLike[str] | None, env: dict[str, str] | None = None) -> Config:
    """The config at `path` (or the embedded defaults), with the database path resolved and
    the PostgreSQL password found."""
    env = dict(os.environ) if env is None else env
    if path is None:
        return _resolve_paths(Config(), env)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    config = validate_config(raw, str(path))
    return _resolve_password(_resolve_paths(config, env), env, str(path))


def _resolve_paths(config: Config, env: dict[str, str]) -> Config:
    db_path = Path(config.storage.path)
    state_dir = env.get("STATE_DIRECTORY")
    if not db_path.is_absolute() and state_dir:
        # systemd's StateDirectory= may list several; the first is ours.
        db_path = Path(state_dir.split(":")[0]) / db_path
    storage = config.storage.model_copy(update={"path": str(db_path)})
    return config.model_copy(update={"storage": storage})


def _resolve_password(config: Config, env: dict[str, str], source: str) -> Config:
    """The PostgreSQL password when the URL has none: password_file, else $PGPASSWORD."""
    storage = config.storage
    target = storage.postgres
    if target is None or target.password is not None:
        return config
    password = _read_password(storage.password_file, source) if storage.password_file else None
    storage = storage.model_copy()
    storage._password = password or env.get("PGPASSWORD") or None
    return config.model_copy(update={"storage": storage})


def _read_password(path: str, source: str) -> str:
    def refused(why: str) -> ConfigError:
        return ConfigError(f"{source} has 1 error(s)", errors=[f"storage.password_file: {path} {why}"])

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise refused("does not exist") from None
    except OSError as exc:
        raise refused(f"cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise refused("is not UTF-8 text") from None
    # Editors and `echo` end the file with a newline that is no part of the password.
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise refused("is empty")
    return password


def config_path_from(cli_value: str | None, env: dict[str, str] | None = None) -> str | None:
    """--config, else $TILLHOOK_CONFIG; None means the embedded defaults."""
    env = dict(os.environ) if env is None else env
    return cli_value or env.get("TILLHOOK_CONFIG") or None
