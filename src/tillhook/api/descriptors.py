"""The file-descriptor budget: the open-file limit, the connection cap it leaves room for, and
failed accept() calls logged as one line with a count instead of a traceback each."""

from __future__ import annotations

import asyncio
import errno
import resource
from dataclasses import dataclass
from typing import Any

import structlog

from tillhook.api.connections import BACKLOG, MAX_REFUSING
from tillhook.errors import TillhookError

log = structlog.get_logger("tillhook.api")

# The database (file, WAL, shared memory, lock), stdio, the event loop's own descriptors,
# the listening socket, the resolver's threads: a generous allowance.
RESERVED_FDS = 64
MIN_CONNECTIONS = 16
_NO_CEILING = 1 << 20  # when the hard limit is "unlimited", the kernel still has nr_open
_ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_REPORT_EVERY_S = 5.0


def raise_open_file_limit() -> int:
    """The soft RLIMIT_NOFILE raised to the hard limit (common practice for servers); returns
    the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _NO_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("open_file_limit_kept", soft=soft, hard=hard, error=str(exc))
    return _NO_CEILING if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True, slots=True)
class Budget:
    max_connections: int
    open_files: int
    lowered: bool


def connection_budget(configured: int, max_in_flight: int, open_files: int) -> Budget:
    """server.max_connections, lowered so that connections in, deliveries out and the rest of
    the daemon fit in the open-file limit together."""
    room = open_files - max_in_flight - BACKLOG - MAX_REFUSING - RESERVED_FDS
    if room < min(configured, MIN_CONNECTIONS):
        raise TillhookError(
            f"the open-file limit ({open_files}) leaves room for only {max(room, 0)} connections beside "
            f"delivery.max_in_flight ({max_in_flight}); raise it (LimitNOFILE= in the systemd unit, "
            "ulimit -n) or lower delivery.max_in_flight"
        )
    return Budget(min(configured, room), open_files, lowered=room < configured)


class AcceptErrors:
    """A loop exception handler. asyncio reports every accept() that fails for want of a
    descriptor, with a traceback, up to a listen backlog of them per retry: megabytes a
    second. Those are counted and logged at most every few seconds; anything else goes to
    the handler that was there before."""

    def __init__(self, every_s: float = ACCEPT_REPORT_EVERY_S) -> None:
        self._every_s = every_s
        self._count = 0
        self._next_report = 0.0
        self._previous: Any = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self._previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in _ACCEPT_ERRNOS and "accept" in context.get("message", "")):
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self._count += 1
        now = loop.time()
        if now >= self._next_report:
            log.error(
                "accept_failing",
                count=self._count,
                error=exc.strerror or str(exc),
                action="new connections wait; raise the open-file limit or lower server.max_connections",
            )
            self._count = 0
            self._next_report = now + self._every_s
