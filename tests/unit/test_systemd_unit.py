"""The shipped unit file passes systemd's own checker and keeps the settings that matter."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tillhook.api.descriptors import connection_budget
from tillhook.config import Config

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "tillhook.service"


def settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        match = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (Debian package: systemd)"
    # verify checks that ExecStart exists: point it at this environment's tillhook.
    installed = Path(sys.executable).with_name("tillhook")
    unit = tmp_path / "tillhook.service"
    unit.write_text(UNIT.read_text().replace("/opt/tillhook/bin/tillhook", str(installed)))
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_the_unit_keeps_its_promises() -> None:
    s = settings()
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert s["DynamicUser"] == ["yes"] and s["StateDirectory"] == ["tillhook"]
    assert s["ConfigurationDirectory"] == ["tillhook"] and s["UMask"] == ["0077"]
    for hardening in ("ProtectSystem", "NoNewPrivileges", "PrivateTmp", "ProtectHome", "RestrictAddressFamilies"):
        assert hardening in s
    # SIGTERM drains for shutdown_grace (10s) plus one attempt (timeout 15s): stop must allow more.
    stop_s = int(s["TimeoutStopSec"][0].removesuffix("s"))
    assert stop_s > 10 + 15
    assert int(s["WatchdogSec"][0].removesuffix("s")) >= 10


def test_the_open_file_limit_holds_the_default_connections_and_deliveries() -> None:
    (limit,) = settings()["LimitNOFILE"]
    defaults = Config()
    budget = connection_budget(defaults.server.max_connections, defaults.delivery.max_in_flight, int(limit))
    assert not budget.lowered
