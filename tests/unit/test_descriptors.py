"""The file-descriptor budget: the limit raised at start, the connection cap it leaves room
for, and failed accept() calls logged once with a count."""

from __future__ import annotations

import asyncio
import errno
import resource
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from structlog.testing import capture_logs

from tillhook.api.connections import BACKLOG, MAX_REFUSING
from tillhook.api.descriptors import RESERVED_FDS, AcceptErrors, connection_budget
from tillhook.errors import TillhookError


def test_the_cap_is_kept_when_the_limit_has_room() -> None:
    budget = connection_budget(1024, 256, 8192)
    assert (budget.max_connections, budget.lowered) == (1024, False)


def test_the_cap_is_lowered_to_fit_the_limit_beside_the_deliveries() -> None:
    budget = connection_budget(1024, 256, 1024)
    assert budget.lowered and budget.max_connections == 1024 - 256 - BACKLOG - MAX_REFUSING - RESERVED_FDS


def test_a_limit_with_no_room_for_connections_is_a_clear_error() -> None:
    with pytest.raises(TillhookError, match=r"open-file limit \(512\).*delivery.max_in_flight \(500\)"):
        connection_budget(1024, 500, 512)


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 600:
        pytest.skip("needs a hard open-file limit of at least 600")
    script = textwrap.dedent("""
        import resource
        from tillhook.api.descriptors import raise_open_file_limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 600))
        print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["600", "600"]


def accept_failed() -> dict[str, Any]:
    # What asyncio's selector loop passes when accept() runs out of descriptors.
    return {
        "message": "socket.accept() out of system resource",
        "exception": OSError(errno.EMFILE, "Too many open files"),
    }


async def test_accept_failures_are_logged_once_with_a_count() -> None:
    loop = asyncio.get_running_loop()
    errors = AcceptErrors(every_s=3600)
    errors.install(loop)
    try:
        with capture_logs() as logs:
            for _ in range(1000):
                loop.call_exception_handler(accept_failed())
    finally:
        errors.uninstall(loop)
    assert [(e["event"], e["count"]) for e in logs] == [("accept_failing", 1)]
    assert logs[0]["error"] == "Too many open files"


async def test_other_loop_errors_go_to_the_handler_that_was_there() -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    errors = AcceptErrors()
    errors.install(loop)
    try:
        loop.call_exception_handler({"message": "something else", "exception": ValueError("x")})
        loop.call_exception_handler(accept_failed())
    finally:
        errors.uninstall(loop)
    assert [c["message"] for c in seen] == ["something else"]
    assert loop.get_exception_handler() is not errors
    loop.set_exception_handler(None)
