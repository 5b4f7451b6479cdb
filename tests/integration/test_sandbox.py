"""The expression sandbox with real child processes: results, every bound, a child killed from
outside, concurrency, and no child left behind."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from tillhook.expressions.sandbox import Bounds, EvaluationError, Sandbox, fingerprint

pytestmark = pytest.mark.timeout(120)

RUNAWAY = "lists.range(10000).map(x, x)"  # about 11 s: cel-rust's map is quadratic
SECRET = "c_secret_4417"  # event data: never in a log line


def event(amount: float | None = 150.0, **data: Any) -> bytes:
    fields = {"customer_id": SECRET, **data} if amount is None else {"amount": amount, "customer_id": SECRET, **data}
    return orjson.dumps({"id": "msg_01", "type": "sale.completed", "timestamp": "2026-11-22T10:30:00Z", "data": fields})


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = Sandbox()
    yield box
    await box.close()


def gone(pid: int) -> bool:
    """Not running any more: reaped, or a zombie waiting for a reaper that is not us."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Until condition() holds, looking every few milliseconds; fails the test after timeout_s."""
    async with asyncio.timeout(timeout_s):
        # A child's state in /proc has no event to wait on: look again every few milliseconds.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def ended(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether the process ends within timeout_s, told by a pidfd (no polling)."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    readable = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(handle, readable.set)
    try:
        async with asyncio.timeout(timeout_s):
            await readable.wait()
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(handle)
        os.close(handle)


def evaluating(pid: int | None) -> bool:
    """The child is running on the CPU: it has the request and is evaluating it."""
    if pid is None:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "R"


def no_event_data(logs: list[MutableMapping[str, Any]]) -> bool:
    return SECRET not in repr(logs)


async def test_starts_its_child_on_first_use_only(sandbox: Sandbox) -> None:
    assert sandbox.pid is None
    assert await sandbox.filter("data.amount > 100.0", []) == []
    assert sandbox.pid is None  # nothing to evaluate, nothing started
    assert await sandbox.filter("data.amount > 100.0", [event()]) == [True]
    assert sandbox.pid is not None


async def test_filter_true_false_and_errors_per_event(sandbox: Sandbox) -> None:
    results = await sandbox.filter("data.amount > 100.0", [event(150.0), event(50.0), event(None), b"[1]"])
    assert results[:2] == [True, False]
    assert [str(r) for r in results[2:]] == [
        "the filter failed: no field 'amount' in data (test for it with has(data.amount))",
        "the filter failed: the event is not a JSON object",
    ]
    assert all(isinstance(r, EvaluationError) for r in results[2:])
    assert await sandbox.filter("has(data.amount) && data.amount > 100.0", [event(None), event(101.0)]) == [False, True]


async def test_filter_that_gives_no_bool_fails_in_words(sandbox: Sandbox) -> None:
    (result,) = await sandbox.filter("data.customer_id", [event()])
    assert isinstance(result, EvaluationError)
    assert str(result) == "the filter failed: it gives a string, not true or false"
    (result,) = await sandbox.filter("data.amount + 1 > 2", [event()])
    assert str(result) == (
        "the filter failed: unsupported operation: float + int "
        "(CEL does not convert between types: use int(), uint(), double() or string())"
    )


async def test_a_batch_of_1000_events_in_one_round_trip(sandbox: Sandbox) -> None:
    events = [event(float(i)) for i in range(1000)]
    results = await sandbox.filter("data.amount > 100.0", events)
    assert results == [i > 100 for i in range(1000)]
    pid = sandbox.pid
    assert await sandbox.filter("data.amount >= 999.0", events) == [i >= 999 for i in range(1000)]
    assert sandbox.pid == pid  # the same child, and its compiled programs, serve every batch


async def test_transform_gives_the_exact_body(sandbox: Sandbox) -> None:
    body = await sandbox.transform('{"text": "Sale: " + string(data.amount), "customer": data.customer_id}', event())
    assert body == b'{"customer":"c_secret_4417","text":"Sale: 150"}'  # compact, keys sorted
    body = await sandbox.transform(
        "{'at': timestamp(timestamp), 'lines': data.items.map(i, i.qty), 'wait': duration('90s')}",
        event(items=[{"qty": 2}, {"qty": 3}]),
    )
    assert body == b'{"at":"2026-11-22T10:30:00Z","lines":[2,3],"wait":"90s"}'


async def test_transform_failures_in_words(sandbox: Sandbox) -> None:
    with pytest.raises(EvaluationError) as failed:
        await sandbox.transform("{'x': data.nope}", event())
    assert str(failed.value) == "the transform failed: no field 'nope' in data (test for it with has(data.nope))"
    with pytest.raises(EvaluationError) as failed:
        await sandbox.transform("{'raw': b'abc'}", event())
    assert str(failed.value) == (
        "the transform failed: the result holds bytes at raw, and JSON has none: encode them with base64.encode(...)"
    )


async def test_runaway_is_stopped_at_its_time_bound_and_the_next_call_gets_a_new_child(sandbox: Sandbox) -> None:
    assert await sandbox.transform("data.amount", event()) == b"150.0"
    first = sandbox.pid
    assert first is not None
    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(EvaluationError) as stopped:
        await sandbox.transform(RUNAWAY, event())
    assert time.monotonic() - started < 5.0  # not the 11 s it would run
    assert str(stopped.value) == "the transform was stopped after 250 ms, its time bound"
    assert gone(first)
    assert [(log["reason"], log["expression"]) for log in logs if log["event"] == "sandbox_stopped"] == [
        ("time bound", fingerprint(RUNAWAY))
    ]
    assert all(RUNAWAY not in json.dumps(log) for log in logs)  # the source itself is not logged
    assert await sandbox.transform("data.amount", event()) == b"150.0"
    assert sandbox.pid not in (None, first)


async def test_a_filter_batch_past_its_time_bound_fails_every_event(sandbox: Sandbox) -> None:
    results = await sandbox.filter(f"{RUNAWAY}.size() > 0", [event(), event()])
    assert [str(r) for r in results] == ["the filter was stopped after 250 ms, its time bound"] * 2
    assert await sandbox.filter("data.amount > 1.0", [event()]) == [True]


async def test_huge_result_is_stopped_by_the_output_bound() -> None:
    box = Sandbox(Bounds(time_s=20.0))  # room to build the list on a busy machine
    try:
        expected = len(orjson.dumps(list(range(200_000))))
        with pytest.raises(EvaluationError) as refused:
            await box.transform("lists.range(200000)", event())
        assert str(refused.value) == f"the transform's body would be 1.2 MiB ({expected:,} bytes), over its 1 MiB bound"
        pid = box.pid
        assert await box.transform("lists.range(3)", event()) == b"[0,1,2]"
        assert box.pid == pid  # an oversized body costs no child
    finally:
        await box.close()


@pytest.mark.parametrize(
    "source",
    [
        "lists.range(50000000)",  # the list is built in Python: MemoryError, reported by the child
        "lists.range(3000000)",  # built, then copied into Rust values: Rust aborts the child
    ],
)
async def test_memory_blow_up_is_stopped_by_the_memory_bound(source: str, capfd: pytest.CaptureFixture[str]) -> None:
    box = Sandbox(Bounds(time_s=30.0, memory_bytes=256 * 2**20))
    try:
        with capture_logs() as logs, pytest.raises(EvaluationError) as stopped:
            await box.transform(source, event())
        assert str(stopped.value) == "the transform needed more than its 256 MiB of memory and was stopped"
        assert [log["reason"] for log in logs if log["event"] == "sandbox_stopped"] == ["memory bound"]
        assert capfd.readouterr().err == ""  # the child's stderr went to the log, not to ours
        assert await box.transform("data.amount", event()) == b"150.0"
    finally:
        await box.close()


async def test_memory_blow_up_under_the_default_bounds_is_stopped_in_words(sandbox: Sandbox) -> None:
    with pytest.raises(EvaluationError) as stopped:
        await sandbox.transform("lists.range(100000000)", event())
    assert str(stopped.value) in (
        "the transform needed more than its 512 MiB of memory and was stopped",
        "the transform was stopped after 250 ms, its time bound",
    )
    assert await sandbox.filter("data.amount > 1.0", [event()]) == [True]


async def test_child_killed_from_outside_mid_request_fails_only_that_request() -> None:
    box = Sandbox(Bounds(time_s=60.0))
    try:
        with capture_logs() as logs:
            running = asyncio.create_task(box.transform(RUNAWAY, event()))
            await until(lambda: evaluating(box.pid))
            pid = box.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(EvaluationError) as died:
                await running
        assert str(died.value) == "the transform was stopped: the sandbox process died (killed by SIGKILL)"
        stopped = [log for log in logs if log["event"] == "sandbox_stopped"]
        assert [(log["reason"], log["pid"]) for log in stopped] == [("died: killed by SIGKILL", pid)]
        assert no_event_data(logs)
        assert await box.transform("data.amount", event()) == b"150.0"
        assert box.pid != pid
    finally:
        await box.close()


async def test_a_cancelled_call_leaves_no_reply_for_the_next() -> None:
    box = Sandbox(Bounds(time_s=60.0))
    try:
        with capture_logs() as logs:
            running = asyncio.create_task(box.filter(f"{RUNAWAY}.size() > 0", [event()]))
            await until(lambda: evaluating(box.pid))
            pid = box.pid
            assert pid is not None
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
        # The runaway's answer never comes to this call: a new child answers it.
        assert await box.filter("data.amount > 100.0", [event(150.0), event(1.0)]) == [True, False]
        assert box.pid != pid
        assert [log["reason"] for log in logs if log["event"] == "sandbox_stopped"] == ["cancelled"]
        assert await ended(pid)
    finally:
        await box.close()


async def test_a_child_that_died_between_calls_is_replaced_without_failing_a_call(sandbox: Sandbox) -> None:
    assert await sandbox.filter("true", [event()]) == [True]
    pid = sandbox.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert await ended(pid)
    # Until asyncio has reaped it, the sandbox cannot tell it is gone: wait for that.
    assert sandbox._child is not None
    await asyncio.wait_for(sandbox._child.process.wait(), 10.0)
    with capture_logs() as logs:
        assert await sandbox.filter("data.amount > 100.0", [event()]) == [True]
    assert [log["reason"] for log in logs if log["event"] == "sandbox_stopped"] == [
        "died while idle: killed by SIGKILL"
    ]
    assert sandbox.pid != pid


async def test_fifty_concurrent_calls_are_all_answered_right(sandbox: Sandbox) -> None:
    async def one(i: int) -> None:
        if i % 2:
            assert await sandbox.filter("data.amount > 25.0", [event(float(i))]) == [i > 25]
        else:
            assert await sandbox.transform("{'n': data.amount}", event(float(i))) == b'{"n":%d.0}' % i

    await asyncio.gather(*(one(i) for i in range(50)))


async def test_close_leaves_no_child_and_may_be_called_again() -> None:
    box = Sandbox()
    assert await box.filter("true", [event()]) == [True]
    pid = box.pid
    assert pid is not None
    await box.close()
    assert gone(pid)
    assert box.pid is None
    await box.close()
    with pytest.raises(EvaluationError) as closed:
        await box.transform("data", event())
    assert str(closed.value) == "the transform was not evaluated: the sandbox is closed"


async def test_the_childs_stderr_never_holds_event_data() -> None:
    """cel logs a failing function with the values it failed on; the child silences it."""
    box = Sandbox(Bounds(time_s=60.0))
    try:
        (failed,) = await box.filter("bool(data.customer_id)", [event()])
        assert isinstance(failed, EvaluationError)
        with capture_logs() as logs:
            running = asyncio.create_task(box.transform(RUNAWAY, event()))
            await until(lambda: evaluating(box.pid))
            os.kill(box.pid or 0, signal.SIGKILL)
            with pytest.raises(EvaluationError):
                await running
        (stopped,) = [log for log in logs if log["event"] == "sandbox_stopped"]
        assert stopped["stderr"] == []
    finally:
        await box.close()


def test_child_dies_with_the_daemon() -> None:
    """A daemon killed with SIGKILL cannot stop its sandbox, busy with a runaway that would not
    see its stdin close for a minute: the kernel does (PR_SET_PDEATHSIG)."""
    program = textwrap.dedent(
        """
        import asyncio, sys
        from tillhook.expressions.sandbox import Bounds, Sandbox
        async def main():
            box = Sandbox(Bounds(time_s=600.0))
            await box.filter("true", [b'{"data": {}}'])
            print(box.pid, file=sys.stderr, flush=True)
            await box.filter("lists.range(20000).map(x, x).size() > 0", [b'{"data": {}}'])
        asyncio.run(main())
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as daemon:
        assert daemon.stderr is not None
        child = int(daemon.stderr.readline())
        deadline = time.monotonic() + 20
        while not evaluating(child):
            assert time.monotonic() < deadline, "the child never got the runaway"
            os.sched_yield()
        ended = os.pidfd_open(child)  # readable once the process has ended
        try:
            daemon.kill()
            daemon.wait(timeout=10)
            assert select.select([ended], [], [], 5.0)[0] == [ended]
        finally:
            os.close(ended)
    assert gone(child)
