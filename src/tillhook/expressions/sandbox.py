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
import contextlib
import hashlib
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


class Stopped(EvaluationError):
    """Stopped at its time or memory bound (or the process died under it): such a stop costs
    a new process and, for whoever waits behind it, up to the time bound."""


def fingerprint(source: str) -> str:
    """How logs name an expression: its source may hold what a receiver's body needs, an API
    key say, which has no place in a log. The endpoint's own lines name the endpoint."""
    return f"sha256:{hashlib.sha256(source.encode()).hexdigest()[:12]} ({len(source)} chars)"


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

    async def stop(self, gently: bool = False, ending: bool = False) -> int:
        """Its exit status, once it is gone and its stderr read to the end. Gently: its stdin
        closed first, which ends it. Ending: it is ending by itself (it closed its stdout); a
        kill now would reap it early and lose its status (Popen polls before it signals)."""
        process = self.process
        if gently and process.stdin is not None:
            process.stdin.close()
        if gently or ending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        self.kill()
        returncode = await process.wait()
        await self.drain
        return returncode

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended, and was reaped, just now
                self.process.kill()


class _Oversized(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the sandbox process replied {size:,} bytes, more than the {limit:,} it may")


class Sandbox:
    def __init__(self, bounds: Bounds = Bounds(), *, name: str = "expressions") -> None:
        self.bounds = bounds
        self.name = name
        self._lock = asyncio.Lock()
        self._child: _Child | None = None  # the one that takes the next request
        self._children: set[_Child] = set()  # every one started and not yet reaped
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
        # JSON may write a character of a reason as six (\u0001).
        max_reply = 4096 + len(events) * (6 * MAX_REASON_CHARS + 16)
        try:
            reply = orjson.loads(await self._call("filter", source, events, max_reply))
            if "error" in reply:
                raise self._failure("filter", reply)
            if len(reply["results"]) != len(events):
                got = len(reply["results"])
                raise EvaluationError(f"the filter was not evaluated: {got} results for {len(events)} events")
        except EvaluationError as e:
            return [e] * len(events)
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
        """Stop every child this sandbox started; later calls fail. Safe to call again."""
        self._closed = True
        self._child = None
        while self._children:
            child = next(iter(self._children))
            returncode = await self._reap(child, gently=True)
            pid = child.process.pid
            log.debug("sandbox_stopped", sandbox=self.name, pid=pid, reason="closed", returncode=returncode)

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
        bound = size_words(self.bounds.memory_bytes)
        return Stopped(f"the {kind} needed more than its {bound} of memory and was stopped")

    async def _call(self, kind: Kind, source: str, events: Sequence[bytes], max_reply: int) -> bytes:
        async with self._lock:
            if self._closed:
                raise EvaluationError(f"the {kind} was not evaluated: the sandbox is closed")
            child = await self._ready_child(kind)
            try:
                async with asyncio.timeout(self.bounds.time_s):
                    reply = await child.exchange(request(kind, source, events), max_reply)
            except TimeoutError:
                await self._stopped(child, "time bound", source)
                bound_ms = self.bounds.time_s * 1000
                raise Stopped(f"the {kind} was stopped after {bound_ms:g} ms, its time bound") from None
            except (asyncio.IncompleteReadError, ConnectionError):
                raise await self._died(child, kind, source) from None
            except _Oversized as e:
                await self._stopped(child, str(e), source)
                raise EvaluationError(f"the {kind} was not evaluated: {e}") from None
            except asyncio.CancelledError:
                # Its reply would be read as the next request's: this child takes no more.
                # Killed now, reaped by a later call or close(), as awaiting here may not finish.
                self._retire(child)
                pid = child.process.pid
                log.info(
                    "sandbox_stopped", sandbox=self.name, pid=pid, reason="cancelled", expression=fingerprint(source)
                )
                raise
            if reply.startswith(b'{"error"') and orjson.loads(reply).get("bound") == "memory":
                await self._stopped(child, "memory bound", source, ending=True)  # it exits after this reply
            return reply

    async def _ready_child(self, kind: Kind) -> _Child:
        for retired in [c for c in self._children if c is not self._child and c.process.returncode is not None]:
            await self._reap(retired)
        child = self._child
        if child is not None and child.process.returncode is not None:  # died between requests
            returncode = await self._reap(child)
            log.warning(
                "sandbox_stopped", sandbox=self.name, pid=child.process.pid,
                reason=f"died while idle: {_how_it_ended(returncode)}", stderr=child.stderr_lines(),
            )  # fmt: skip
            child = None
        return child or await self._start(kind)

    async def _start(self, kind: Kind) -> _Child:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            process = await asyncio.create_subprocess_exec(
                # -P: the daemon's working directory is no place to import modules from.
                sys.executable, "-P", "-m", "tillhook.expressions.worker",
                "--memory-bytes", str(self.bounds.memory_bytes),
                "--output-bytes", str(self.bounds.output_bytes),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as e:
            log.error("sandbox_start_failed", sandbox=self.name, reason=str(e))
            raise EvaluationError(f"the {kind} was not evaluated: the sandbox process could not start ({e})") from None
        child = _Child(process, self.name)
        self._children.add(child)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                ready = orjson.loads(await child.read_frame(4096))
        except (TimeoutError, asyncio.IncompleteReadError, _Oversized, orjson.JSONDecodeError) as e:
            returncode = await self._reap(child)
            why = "it did not answer in time" if isinstance(e, TimeoutError) else _how_it_ended(returncode)
            log.error(
                "sandbox_start_failed", sandbox=self.name, pid=process.pid, reason=why, stderr=child.stderr_lines()
            )
            raise EvaluationError(f"the {kind} was not evaluated: the sandbox process did not start ({why})") from None
        except asyncio.CancelledError:
            self._retire(child)
            raise
        if self._closed:  # close() ran while this one started
            await self._reap(child)
            raise EvaluationError(f"the {kind} was not evaluated: the sandbox is closed")
        log.debug(
            "sandbox_started", sandbox=self.name, pid=process.pid, baseline_bytes=ready.get("baseline_bytes"),
            start_ms=round((loop.time() - started) * 1000, 1),
        )  # fmt: skip
        self._child = child
        return child

    def _retire(self, child: _Child) -> None:
        if self._child is child:
            self._child = None
        child.kill()

    async def _reap(self, child: _Child, gently: bool = False, ending: bool = False) -> int:
        if self._child is child:
            self._child = None
        try:
            return await child.stop(gently, ending)
        finally:
            self._children.discard(child)

    async def _stopped(self, child: _Child, reason: str, source: str, ending: bool = False) -> int:
        """Stop the child for a reason of ours and forget it."""
        returncode = await self._reap(child, ending=ending)
        log.warning(
            "sandbox_stopped", sandbox=self.name, pid=child.process.pid, reason=reason, expression=fingerprint(source)
        )
        return returncode

    async def _died(self, child: _Child, kind: Kind, source: str) -> EvaluationError:
        returncode = await self._reap(child, ending=True)
        if self._closed:
            return EvaluationError(f"the {kind} was not evaluated: the sandbox was closed meanwhile")
        log.warning(
            "sandbox_stopped", sandbox=self.name, pid=child.process.pid,
            reason="memory bound" if child.out_of_memory else f"died: {_how_it_ended(returncode)}",
            expression=fingerprint(source), stderr=child.stderr_lines(),
        )  # fmt: skip
        if child.out_of_memory:
            return self._out_of_memory(kind)
        return Stopped(f"the {kind} was stopped: the sandbox process died ({_how_it_ended(returncode)})")


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"
