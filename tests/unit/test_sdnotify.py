"""The notify protocol on a real datagram socket: plain and abstract addresses, and a
watchdog that stays silent when the delivery loop is stuck."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tillhook.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock, str(tmp_path / "notify")
    sock.close()


def pending(sock: socket.socket) -> list[str]:
    got = []
    sock.setblocking(False)
    try:
        while True:
            got.append(sock.recv(4096).decode())
    except BlockingIOError:
        return got
    finally:
        sock.settimeout(5)


def test_ready_reaches_the_socket(notify_socket) -> None:
    sock, path = notify_socket
    assert Notifier({"NOTIFY_SOCKET": path}).send("READY=1", "STATUS=ok")
    assert sock.recv(4096) == b"READY=1\nSTATUS=ok"


def test_abstract_socket_address() -> None:
    name = f"tillhook-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).send("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_without_systemd_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.send("READY=1") and notifier.watchdog_s is None


def test_watchdog_pings_only_while_the_loop_ticks(notify_socket) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})
    assert notifier.watchdog_s == 30.0
    assert notifier.ping_if_alive(silent_s=1.0)
    assert pending(sock) == ["WATCHDOG=1"]
    assert not notifier.ping_if_alive(silent_s=31.0)  # stuck: silence makes systemd restart it
    assert pending(sock) == []


def test_watchdog_meant_for_another_process_is_ignored(notify_socket) -> None:
    _, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_s is None
