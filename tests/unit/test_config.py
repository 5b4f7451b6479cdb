"""Config: defaults, durations, and every mistake named at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tillhook.config import load_config, parse_duration, validate_config
from tillhook.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_config(raw, "test.toml")
    return caught.value.errors


def test_defaults_match_the_contract(tmp_path: Path) -> None:
    config = load_config(None, env={})
    assert config.server.listen == "127.0.0.1:8787"
    assert config.server.max_body_bytes == 262144
    assert config.server.shutdown_grace == 10.0
    assert config.storage.retention == 30 * 86400
    assert config.delivery.timeout == 15.0
    assert config.delivery.retry_schedule == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert config.delivery.give_up_after == 72 * 3600
    assert (config.delivery.max_in_flight, config.delivery.endpoint_max_in_flight) == (256, 4)
    assert config.delivery.allow_http is False
    assert config.endpoints == []


def test_database_goes_to_the_state_directory_under_systemd(tmp_path: Path) -> None:
    config = load_config(None, env={"STATE_DIRECTORY": str(tmp_path)})
    assert Path(config.storage.path) == tmp_path / "tillhook.db"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5.0), ("10m", 600.0), ("2h", 7200.0), ("3d", 259200.0), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5", "5x", "-1s", "s", "", "5 minutes", 5])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_every_error_is_named_at_once() -> None:
    errors = errors_of({
        "server": {"listen": "nowhere", "shutdown_grace": "soon"},
        "delivery": {"timeout": "0s", "max_in_flight": 0},
        "storage": {"colour": "blue"},
        "endpoints": [
            {"name": "a", "url": "http://lan.example/hook"},
            {"name": "a", "url": "https://x.example", "secret": "nope", "events": ["bad pattern"]},
            {"name": "b", "url": "https://x.example", "headers": {"webhook-id": "x"}},
        ],
    })
    text = "\n".join(errors)
    for expected in (
        "server.listen", "server.shutdown_grace", "delivery.timeout", "delivery.max_in_flight", "storage.colour",
        "endpoints[0].url", "endpoints[1].name", "endpoints[1].secret", "endpoints[1].events",
        "endpoints[2].headers",
    ):
        assert expected in text, f"{expected} not named in:\n{text}"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"unknown": {}}, "unknown"),  # extra="forbid" at the top
        ({"endpoints": [{"name": "x", "url": "https://x.example", "colour": 1}]}, "endpoints[0].colour"),
        ({"endpoints": [{"name": "bad name", "url": "https://x.example"}]}, "endpoints[0].name"),
        ({"endpoints": [{"name": "x"}]}, "endpoints[0].url"),
        ({"delivery": {"allow_networks": ["not-a-cidr"]}}, "delivery.allow_networks"),
        ({"delivery": {"retry_schedule": []}}, "delivery.retry_schedule"),
        ({"server": {"listen": "0.0.0.0:8787"}}, "auth"),  # beyond loopback only with tokens set
    ],
)
def test_single_mistakes(raw: dict[str, Any], named: str) -> None:
    assert any(named in line for line in errors_of(raw))


def test_http_endpoint_allowed_with_allow_http() -> None:
    config = validate_config(
        {"delivery": {"allow_http": True}, "endpoints": [{"name": "lan", "url": "http://10.0.0.5/hook"}]}, "t"
    )
    assert config.endpoints[0].url == "http://10.0.0.5/hook"


def test_secrets_stay_out_of_reprs() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    config = validate_config(
        {"auth": {"admin_token": "admin-token-very-secret"},
         "endpoints": [{"name": "x", "url": "https://x.example", "secret": secret}]},
        "t",
    )
    assert secret not in repr(config) and "admin-token-very-secret" not in repr(config)


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tillhook", "check-config", str(path)], capture_output=True, text=True, timeout=60
    )


def test_check_config_accepts_the_example() -> None:
    done = _check_config(REPO / "config.example.toml")
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_check_config_names_every_error_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nlisten = "x"\n[delivery]\ntimeout = "fast"\n[[endpoints]]\nname = "a"\n')
    done = _check_config(path)
    assert done.returncode == 2
    for named in ("server.listen", "delivery.timeout", "endpoints[0].url"):
        assert named in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_reports_broken_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[server\nlisten = ")
    done = _check_config(path)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.strip()


def test_check_config_reports_a_missing_file(tmp_path: Path) -> None:
    done = _check_config(tmp_path / "absent.toml")
    assert done.returncode == 2 and "absent.toml" in done.stderr
