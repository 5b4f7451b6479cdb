"""Every HTTP connection the daemon accepts, from accept to close: how many may be open, and
how long one may sit idle, take to send its headers, or linger after a timed-out body.

aiohttp closes an idle keep-alive connection only after an hour and has no limit on the time
or the number of connections, so a few hundred idle or slowly-sending clients used to take
all the file descriptors. Here each connection's protocol is wrapped so its state is known:
fresh (accepted, nothing received), reading (a request's bytes are arriving), handling (a
handler runs; the body read has its own timeout, see parsing.read_body), idle (between
keep-alive requests) or closing (answered, to be closed). One sweeper task closes those past
their deadline. At the cap, a new connection takes the place of the longest-idle one; when
none is idle it gets a 503 and is closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from tillhook.config import Listen

log = structlog.get_logger("tillhook.api")

# A request key: set by a handler whose reply must end the connection (a body that stopped
# arriving), so the rest of that body is not waited for.
CLOSE_AFTER_RESPONSE = web.RequestKey("close_after_response", bool)

BACKLOG = 128  # also how many connections asyncio accepts in one go, before any is counted
MAX_REFUSING = 32  # refusals whose 503 is still being sent; more are closed at once
_REFUSE_LINGER_S = 1.0
_REPORT_EVERY_S = 10.0

FRESH, READING, HANDLING, IDLE, CLOSING = "fresh", "reading", "handling", "idle", "closing"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    idle_timeout: float
    header_timeout: float


def _raw_problem(status: int, reason: str, slug: str, detail: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 response, written straight to a transport that aiohttp does not
    answer (a refused connection, headers that never finished)."""
    body = json.dumps(
        {"type": f"urn:tillhook:problem:{slug}", "title": reason, "status": status, "detail": detail}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


_BUSY = _raw_problem(
    503,
    "Service Unavailable",
    "too-many-connections",
    "every connection tillhook allows (server.max_connections) is busy; retry shortly",
    "Retry-After: 1\r\n",
)
_HEADER_TIMEOUT = _raw_problem(
    408,
    "Request Timeout",
    "request-timeout",
    "the request's headers did not arrive within server.header_timeout; send the whole request at once",
)


class _Tracked(asyncio.Protocol):
    """aiohttp's protocol for one connection, seen through: it tells the tracker what the
    connection is doing and forwards everything unchanged."""

    __slots__ = ("inner", "lingering", "open", "state", "tracker", "transport")

    def __init__(self, tracker: ConnectionTracker, inner: RequestHandler) -> None:
        self.tracker = tracker
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.state = FRESH
        self.open = True
        self.lingering = False  # told why it was closed: what it still sends is dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.inner.connection_made(transport)
        if not self.open:  # evicted between accept() and now, within one burst of accepts
            self.inner.force_close()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        if self.state is FRESH or self.state is IDLE:
            self.tracker.move(self, READING)
        self.inner.data_received(data)

    def eof_received(self) -> None:
        self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.tracker.forget(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def close(self, reply: bytes = b"") -> None:
        transport = self.transport
        if reply and transport is not None and not transport.is_closing():
            transport.write(reply)
            if transport.can_write_eof():
                # The reply, then our end of the stream, reading on for a moment: closed at
                # once, a byte the client is still sending would reset the connection, and
                # the client would lose the reply that says why.
                transport.write_eof()
                self.lingering = True
                asyncio.get_running_loop().call_later(_REFUSE_LINGER_S, self.inner.force_close)
                return
        self.inner.force_close()


class _Refusal(asyncio.Protocol):
    """A connection beyond the cap with none idle to make room: a 503, then closed. Reading
    on for a moment lets the client read the 503 instead of a reset."""

    def __init__(self, tracker: ConnectionTracker, linger: bool) -> None:
        self.tracker = tracker
        self.linger = linger
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY)
        if not self.linger:
            transport.close()
            return
        if transport.can_write_eof():
            transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(_REFUSE_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client is done: close now

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.tracker.refusing -= 1


class ConnectionTracker:
    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        # Insertion order is age order: a connection is re-inserted whenever it changes
        # state, and each queue has one timeout, so the sweeper only looks at the front.
        self._idle: dict[_Tracked, float] = {}  # fresh and idle
        self._reading: dict[_Tracked, float] = {}
        self._closing: list[_Tracked] = []
        self._by_handler: dict[RequestHandler, _Tracked] = {}
        self.refusing = 0
        self._evicted = 0
        self._refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def open_count(self) -> int:
        return len(self._by_handler)

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for loop.create_server, in place of aiohttp's Server."""

        def make() -> asyncio.Protocol:
            if len(self._by_handler) >= self.limits.max_connections and not self._evict_oldest_idle():
                self._refused += 1
                self.refusing += 1
                return _Refusal(self, linger=self.refusing <= MAX_REFUSING)
            inner = server()
            conn = _Tracked(self, inner)
            self._by_handler[inner] = conn
            self._idle[conn] = self._now()
            return conn

        return make

    def _now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def _evict_oldest_idle(self) -> bool:
        oldest = next(iter(self._idle), None)
        if oldest is None:
            return False
        self._evicted += 1
        self._drop(oldest)
        oldest.close()
        return True

    def move(self, conn: _Tracked, state: str) -> None:
        if not conn.open or conn.state is CLOSING:
            return
        self._idle.pop(conn, None)
        self._reading.pop(conn, None)
        conn.state = state
        if state is IDLE:
            self._idle[conn] = self._now()
        elif state is READING:
            self._reading[conn] = self._now()
        elif state is CLOSING:
            self._closing.append(conn)

    def _drop(self, conn: _Tracked) -> None:
        """No longer counted: closed, or being closed (its descriptor is freed a moment later)."""
        conn.open = False
        self._by_handler.pop(conn.inner, None)
        self._idle.pop(conn, None)
        self._reading.pop(conn, None)

    def forget(self, conn: _Tracked) -> None:
        if conn.open:
            self._drop(conn)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        conn = self._by_handler.get(request.protocol)
        if conn is None:  # an app served without the tracker (tests)
            response: web.StreamResponse = await handler(request)
            return response
        self.move(conn, HANDLING)
        closing = True
        try:
            response = await handler(request)
            closing = bool(request.get(CLOSE_AFTER_RESPONSE))
            if closing:
                response.force_close()
            return response
        finally:
            self.move(conn, CLOSING if closing else IDLE)

    def sweep_once(self) -> None:
        now = self._now()
        self._close_expired(self._idle, now - self.limits.idle_timeout, b"")
        self._close_expired(self._reading, now - self.limits.header_timeout, _HEADER_TIMEOUT)
        closing, self._closing = self._closing, []
        for conn in closing:
            if conn.open and conn.state is CLOSING:
                self._drop(conn)
                conn.close()

    def _close_expired(self, queue: dict[_Tracked, float], started_before: float, reply: bytes) -> None:
        while queue:
            conn, since = next(iter(queue.items()))
            if since > started_before:
                return
            self._drop(conn)
            conn.close(reply)

    async def sweep(self) -> None:
        """Runs for the life of the daemon: closes connections past their deadline, and says
        when the cap was reached (at once, then at most every few seconds)."""
        limits = self.limits
        tick = min(max(min(limits.idle_timeout, limits.header_timeout) / 4, 0.05), 1.0)
        next_report = 0.0
        while True:
            await asyncio.sleep(tick)
            self.sweep_once()
            if (self._evicted or self._refused) and self._now() >= next_report:
                next_report = self._now() + _REPORT_EVERY_S
                log.warning(
                    "connection_limit_reached",
                    max_connections=limits.max_connections,
                    idle_closed=self._evicted,
                    refused_503=self._refused,
                    open=self.open_count,
                )
                self._evicted = self._refused = 0


class TrackedSite(web.BaseSite):
    """A TCP or Unix-socket listener whose connections go through the tracker."""

    __slots__ = ("_address", "_tracker")

    def __init__(self, runner: web.BaseRunner, address: Listen, tracker: ConnectionTracker) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._address = address
        self._tracker = tracker

    @property
    def name(self) -> str:
        return self._address.base_url()

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        assert self._runner.server is not None
        factory = self._tracker.factory(self._runner.server)
        if self._address.unix_path is not None:
            self._server = await loop.create_unix_server(factory, self._address.unix_path, backlog=self._backlog)
        else:
            assert self._address.port is not None
            self._server = await loop.create_server(
                factory, self._address.host, self._address.port, backlog=self._backlog
            )
