"""The sandbox process: `python -m tillhook.expressions.worker`, started by sandbox.Sandbox.
It evaluates filters and transforms for the daemon, framed over stdin and stdout (protocol.py),
inside an address-space bound, and exits when stdin closes or the daemon dies."""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import resource
import signal
import sys
from collections import OrderedDict
from typing import IO, Any

import cel
import orjson

from tillhook.expressions.functions import bind, make_context
from tillhook.expressions.language import syntax_error
from tillhook.expressions.protocol import BODY_PREFIX, HEADER, frame, parse_request
from tillhook.expressions.results import (
    PANIC,
    Failure,
    describe,
    filter_result,
    is_memory,
    transform_body,
)

PROGRAMS_CACHED = 256
_PR_SET_PDEATHSIG = 1
# Written when the heap is exhausted, so it is made while there is memory.
_MEMORY_REPLY = frame(orjson.dumps({"error": "out of memory", "bound": "memory", "size": None}))


class Programs:
    """Compiled programs by source, the least recently used dropped first."""

    def __init__(self, size: int = PROGRAMS_CACHED) -> None:
        self._size = size
        self._programs: OrderedDict[str, cel.Program] = OrderedDict()

    def get(self, source: str) -> cel.Program:
        program = self._programs.get(source)
        if program is None:
            try:
                program = cel.compile(source)
            except ValueError as e:
                raise Failure(f"the expression does not compile: {syntax_error(str(e))}") from None
            self._programs[source] = program
            if len(self._programs) > self._size:
                self._programs.popitem(last=False)
        else:
            self._programs.move_to_end(source)
        return program


class Worker:
    def __init__(self, output_bytes: int) -> None:
        self.output_bytes = output_bytes
        self.context = make_context()
        self.programs = Programs()

    def handle(self, kind: str, source: str, events: list[bytes]) -> bytes:
        try:
            program = self.programs.get(source)
            if kind == "filter":
                return orjson.dumps({"results": [self._filter(program, source, event) for event in events]})
            return BODY_PREFIX + transform_body(self._evaluate(program, source, events[0]), self.output_bytes)
        except Failure as e:
            return orjson.dumps({"error": e.reason, "bound": e.bound, "size": e.size})

    def _filter(self, program: cel.Program, source: str, event: bytes) -> bool | str:
        try:
            return filter_result(self._evaluate(program, source, event))
        except Failure as e:
            return e.reason

    def _evaluate(self, program: cel.Program, source: str, event: bytes) -> Any:
        loaded = _loads(event)
        try:
            context = bind(self.context, loaded)
        except ValueError as e:
            if is_memory(e):
                raise MemoryError from None
            raise Failure(f"the event holds a value CEL cannot take ({describe(e, source)})") from None
        try:
            return program.execute(context)
        except BaseException as e:
            # CEL raises most kinds (KeyError, TypeError, OverflowError, ...), the functions it
            # calls any; each is the expression's failure, said in words.
            if not isinstance(e, Exception) and type(e).__name__ != PANIC:
                raise
            if is_memory(e):
                raise MemoryError from None
            raise Failure(describe(e, source)) from None


def _loads(event: bytes) -> dict[str, Any]:
    try:
        loaded = orjson.loads(event)
    except orjson.JSONDecodeError:
        try:
            # orjson stops at 64-bit integers; a stored event may hold larger ones.
            loaded = json.loads(event)
        except ValueError:
            raise Failure("the event is not valid JSON") from None
    if not isinstance(loaded, dict):
        raise Failure("the event is not a JSON object")
    return loaded


def _read(stream: IO[bytes]) -> bytes | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (length,) = HEADER.unpack(header)
    payload = stream.read(length)
    return payload if len(payload) == length else None


def _address_space_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _bound_memory(memory_bytes: int) -> int | None:
    """RLIMIT_AS at the interpreter's own address space (measured now, with everything
    imported and the context made: about 46 MiB) plus the bound. None where it cannot be set."""
    baseline = _address_space_bytes()
    if baseline is None:
        return None
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = baseline + memory_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return baseline


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the daemon dies, so none is ever left behind."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the daemon died before the request took effect
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tillhook.expressions.worker")
    parser.add_argument("--memory-bytes", type=int, required=True)
    parser.add_argument("--output-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    # Ctrl-C in a terminal reaches the whole process group; the daemon decides when this stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    # cel logs each failing function with the values it failed on: event data, not for stderr.
    logging.getLogger("cel").disabled = True
    # The frames own stdout; anything else printed goes to stderr instead of corrupting them.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = os.fdopen(0, "rb")
    worker = Worker(args.output_bytes)
    worker.handle("filter", "true", [b'{"data": {}}'])  # warm up
    baseline = _bound_memory(args.memory_bytes)
    replies.write(frame(orjson.dumps({"ready": True, "baseline_bytes": baseline})))
    replies.flush()
    while (payload := _read(requests)) is not None:
        try:
            reply = frame(worker.handle(*parse_request(payload)))
        except MemoryError:
            reply = None
        if reply is None:
            replies.write(_MEMORY_REPLY)
            replies.flush()
            return 3
        replies.write(reply)
        replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
