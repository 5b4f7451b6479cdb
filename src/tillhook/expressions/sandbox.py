"""Filters and transforms evaluated in a child process, within bounds on time, memory and output.

Why a process: CEL has no loops, but a comprehension over a long list (`lists.range(10000)
.map(x, x)` takes 11 s in cel-rust, whose map is quadratic), nested comprehensions, or a huge
list still take unbounded time and memory. The interpreter is Rust code that holds the thread
for the whole evaluation: Python cannot interrupt it, a thread cannot be killed, and a memory
bound would be the daemon's own. A child process can be killed at its deadline and can carry
its own RLIMIT_AS, and its death costs one request, never the daemon.

One child per Sandbox, started on first use (a daemon without expressions starts none), one
request at a time. A request that overruns its time kills the child; the next call starts
another."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson
import structlog

from tillhook.expressions.protocol import BODY_PREFIX, HEADER, MAX_REASON_CHARS, request

log = structlog.get_logger("tillhook.expressions")

Kind = Literal["filter", "transform"]
START_TIMEOUT_S = 10.0  # the child's imports, not the expression: no part of its time bound
STOP_TIMEOUT_S = 2.0
STDERR_TAIL_BYTES = 8192
STDERR_TAIL_LINES = 20
_RUST_OUT_OF_MEMORY = b"memory allocation of "  # what Rust prints before it aborts


@dataclass(frozen=True)
class Bounds:
    time_s: float = 0.25
    memory_bytes: int = 512 * 2**20
    output_bytes: int = 2**20


class EvaluationError(Exception):
    """A filter or transform that gave no result, said in one sentence."""


def size_words(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n // scale} {unit}" if n % scale == 0 else f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class _Child:
    """One sandbox process, with the tail of what it wrote to stderr."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.stderr = bytearray()
        self.out_of_memory = False
        assert process.stderr is not None
        self.drain = asyncio.create_task(self._drain(process.stderr), name=f"{name}-stderr-{process.pid}")

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        # Read all of it, always: a full pipe would block the child. Keep only the end.
        while chunk := await stream.read(65536):
            self.stderr += chunk
            # Seen in the tail before it is cut, so the words are caught even when a long
            # backtrace follows them (RUST_BACKTRACE=1) or they span two reads.
            self.out_of_memory = self.out_of_memory or _RUST_OUT_OF_MEMORY in self.stderr
            del self.stderr[:-STDERR_TAIL_BYTES]

    def stderr_lines(self) -> list[str]:
        return self.stderr.decode("utf-8", "replace").splitlines()[-STDERR_TAIL_LINES:]

    async def read_frame(self, max_bytes: int) -> bytes:
        stdout = self.process.stdout
        assert stdout is not None
        (length,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
        if length > max_bytes:
            raise _Oversized(length, max_bytes)
        return await stdout.readexactly(length)

    async def exchange(self, payload: bytes, max_reply: int) -> bytes:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(payload)
        await stdin.drain()
        return await self.read_frame(max_reply)

    async def stop(self, gently: bool = False) -> int:
        """Its exit status, once it is gone and its stderr read to the end."""
        process = self.process
        if gently and process.stdin is not None:
            process.stdin.close()  # the child exits at the end of its input
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                pass
        if process.returncode is None:
            process.kill()
        returncode = await process.wait()
        await self.drain
        return returncode


class _Oversized(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the sandbox process replied {size:,} bytes, more than the {limit:,} it may")


class Sandbox:
    def __init__(self, bounds: Bounds = Bounds(), *, name: str = "expressions") -> None:
        self.bounds = bounds
        self.name = name
        self._lock = asyncio.Lock()
        self._child: _Child | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._child.process.pid if self._child is not None else None

    async def filter(self, source: str, events: Sequence[bytes]) -> list[bool | EvaluationError]:
        """Whether each stored event passes the filter, in one round trip under one deadline;
        an event it fails on gets its EvaluationError, and if the whole batch fails (its time,
        its memory, the child's death) every event gets that one."""
        if not events:
            return []
        max_reply = 4096 + len(events) * (4 * MAX_REASON_CHARS + 16)
        try:
            reply = orjson.loads(await self._call("filter", source, events, max_reply))
        except EvaluationError as e:
            return [e] * len(events)
        if "error" in reply:
            return [self._failure("filter", reply)] * len(events)
        results: list[bool | EvaluationError] = [
            result if isinstance(result, bool) else EvaluationError(f"the filter failed: {result}")
            for result in reply["results"]
        ]
        return results

    async def transform(self, source: str, event: bytes) -> bytes:
        """The body the transform makes of a stored event, exactly as it is to be sent."""
        reply = await self._call("transform", source, [event], self.bounds.output_bytes + 4096)
        if reply.startswith(BODY_PREFIX):
            return reply[len(BODY_PREFIX) :]
        raise self._failure("transform", orjson.loads(reply))

    async def close(self) -> None:
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            returncode = await child.stop(gently=True)
            log.debug("sandbox_stopped", sandbox=self.name, pid=child.process.pid, reason="closed", returncode=returncode)

    def _failure(self, kind: Kind, reply: dict[str, object]) -> EvaluationError:
        bound, reason = reply.get("bound"), reply["error"]
        if bound == "memory":
            return self._out_of_memory(kind)
        if bound == "output":
            size = int(reply["size"])  # type: ignore[call-overload]
            return EvaluationError(
                f"the {kind}'s body would be {size_words(size)} ({size:,} bytes), "
                f"over its {size_words(self.bounds.output_bytes)} bound"
            )
        return EvaluationError(f"the {kind} failed: {reason}")

    def _out_of_memory(self, kind: Kind) -> EvaluationError:
        return EvaluationError(f"the {kind} needed more than its {size_words(self.bounds.memory_bytes)} of memory and was stopped")

    async def _call(self, kind: Kind, source: str, events: Sequence[bytes], max_reply: int) -> bytes:
        async with self._lock:
            if self._closed:
                raise EvaluationError(f"the {kind} was not evaluated: the sandbox is closed")
            child = self._child or await self._start(kind)
            try:
                async with asyncio.timeout(self.bounds.time_s):
                    reply = await child.exchange(request(kind, source, events), max_reply)
            except TimeoutError:
                await self._stopped(child, "time bound", source)
                raise EvaluationError(f"the {kind} was stopped after {self.bounds.time_s * 1000:g} ms, its time bound") from None
            except (asyncio.IncompleteReadError, ConnectionError):
                raise await self._died(child, kind, source) from None
            except _Oversized as e:
                await self._stopped(child, str(e), source)
                raise EvaluationError(f"the {kind} was not evaluated: {e}") from None
            if reply.startswith(b'{"error"') and orjson.loads(reply).get("bound") == "memory":
                await self._stopped(child, "memory bound", source)
            return reply

    async def _start(self, kind: Kind) -> _Child:
        loop = asyncio.get_running_loop()
        started = loop.time()
        process = await asyncio.create_subprocess_exec(
            # -P: the daemon's working directory is no place to import modules from.
            sys.executable, "-P", "-m", "tillhook.expressions.worker",
            "--memory-bytes", str(self.bounds.memory_bytes),
            "--output-bytes", str(self.bounds.output_bytes),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        child = _Child(process, self.name)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                ready = orjson.loads(await child.read_frame(4096))
        except (TimeoutError, asyncio.IncompleteReadError, _Oversized, orjson.JSONDecodeError) as e:
            returncode = await child.stop()
            why = "it did not answer in time" if isinstance(e, TimeoutError) else _how_it_ended(returncode)
            log.error("sandbox_start_failed", sandbox=self.name, pid=process.pid, reason=why, stderr=child.stderr_lines())
            raise EvaluationError(f"the {kind} was not evaluated: the sandbox process did not start ({why})") from None
        log.debug(
            "sandbox_started", sandbox=self.name, pid=process.pid, baseline_bytes=ready.get("baseline_bytes"),
            start_ms=round((loop.time() - started) * 1000, 1),
        )  # fmt: skip
        self._child = child
        return child

    async def _stopped(self, child: _Child, reason: str, source: str) -> int:
        """Kill the child for a reason of ours (or see it gone) and forget it."""
        if self._child is child:
            self._child = None
        returncode = await child.stop()
        log.warning("sandbox_stopped", sandbox=self.name, pid=child.process.pid, reason=reason, expression=source[:200])
        return returncode

    async def _died(self, child: _Child, kind: Kind, source: str) -> EvaluationError:
        if self._child is child:
            self._child = None
        returncode = await child.stop()
        if self._closed:
            return EvaluationError(f"the {kind} was not evaluated: the sandbox was closed meanwhile")
        out_of_memory = child.out_of_memory
        log.warning(
            "sandbox_stopped", sandbox=self.name, pid=child.process.pid,
            reason="memory bound" if out_of_memory else f"died: {_how_it_ended(returncode)}",
            expression=source[:200], stderr=child.stderr_lines(),
        )  # fmt: skip
        if out_of_memory:
            return self._out_of_memory(kind)
        return EvaluationError(f"the {kind} was stopped: the sandbox process died ({_how_it_ended(returncode)})")


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"
