"""The systemd notify protocol: one datagram per message to $NOTIFY_SOCKET. READY=1 once the
database is open and the listener bound; WATCHDOG=1 only while the delivery loop keeps
ticking, so a stuck loop gets the service restarted."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("tillhook")


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is a socket in the abstract namespace: the leading byte is NUL.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        for_us = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and for_us else None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> bool:
        if not self._address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto("\n".join(lines).encode(), self._address)
            except OSError as exc:
                log.warning("sd_notify_failed", error=str(exc))
                return False
        return True

    async def keep_alive(self, last_tick_monotonic: Callable[[], float], monotonic: Callable[[], float]) -> None:
        """Ping at half the watchdog interval, but only while the loop has ticked within it."""
        if self.watchdog_s is None:
            return
        while True:
            self.ping_if_alive(monotonic() - last_tick_monotonic())
            await asyncio.sleep(self.watchdog_s / 2)

    def ping_if_alive(self, silent_s: float) -> bool:
        """WATCHDOG=1 if the loop ticked within the watchdog interval; else nothing, so that
        systemd restarts the service."""
        if self.watchdog_s is None:
            return False
        if silent_s < self.watchdog_s:
            return self.send("WATCHDOG=1")
        log.error("delivery_loop_stuck", silent_s=round(silent_s, 1), action="no watchdog ping")
        return False
