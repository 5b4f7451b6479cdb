"""Exactly one delivery attempt: POST the stored bytes (or what the endpoint's transform makes
of them), signed, and say what happened."""

from __future__ import annotations

import asyncio
import ipaddress
from collections import defaultdict
from urllib.parse import urlsplit

import aiohttp

from tillhook.clock import Clock
from tillhook.errors import BlockedAddress
from tillhook.expressions.sandbox import EvaluationError, Sandbox, Stopped
from tillhook.models import AttemptResult, ClaimedDelivery, Endpoint
from tillhook.redact import Scrubber
from tillhook.retry import parse_retry_after
from tillhook.shaping import Quarantine, live_secrets, request_headers, shape
from tillhook.targets import AddressPolicy, GuardedResolver

CONNECT_TIMEOUT_S = 5.0


def make_session(policy: AddressPolicy) -> aiohttp.ClientSession:
    """The one client session of the process; connection limits are the dispatcher's job."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy), limit=0, limit_per_host=0)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


class Deliverer:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: AddressPolicy,
        clock: Clock,
        *,
        timeout_s: float,
        allow_http: bool,
        response_body_limit: int,
        sandbox: Sandbox | None = None,
    ) -> None:
        self._session = session
        self._sandbox = sandbox or Sandbox(name="delivery")
        self._policy = policy
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(CONNECT_TIMEOUT_S, timeout_s))
        self._timeout_s = timeout_s
        self._allow_http = allow_http
        self._body_limit = response_body_limit
        self._refusals: dict[str, str | None] = {}
        self._quarantine = Quarantine(clock)
        self._shaping: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._scrubbers: dict[tuple[str, tuple[tuple[str, str], ...]], Scrubber] = {}

    async def attempt(self, endpoint: Endpoint, delivery: ClaimedDelivery) -> AttemptResult:
        started_at = self._clock.now()
        started = self._clock.monotonic()

        scrub = self._scrubber(endpoint)

        def ended(**outcome: object) -> AttemptResult:
            duration_ms = (self._clock.monotonic() - started) * 1000.0
            # Error texts quote the URL and a receiver may echo it, or the request's headers:
            # no credential of either is written anywhere (attempt log, endpoint health, log
            # lines).
            error = outcome.get("error")
            if isinstance(error, str):
                outcome["error"] = scrub(error)
            excerpt = outcome.get("response_excerpt")
            if isinstance(excerpt, str):
                # Read past the limit by the longest credential, scrubbed, then cut: one
                # crossing the cut is masked whole instead of keeping its first characters.
                outcome["response_excerpt"] = _cut(scrub(excerpt), self._body_limit)
            return AttemptResult(started_at=started_at, duration_ms=duration_ms, **outcome)  # type: ignore[arg-type]

        refusal = self._refusal(endpoint.url)
        if refusal is not None:
            return ended(error=refusal)
        body = delivery.body
        if delivery.check_filter or endpoint.transform is not None or endpoint.preset is not None:
            # One at a time per endpoint (the sandbox takes one at a time anyway), so that the
            # attempts queued behind a stop see it before they cost another.
            async with self._shaping[endpoint.id]:
                held = self._quarantine.held(endpoint, delivery.event_id)
                if held is not None:
                    return ended(error=held, expression_failed=True)
                try:
                    shaped = await shape(self._sandbox, endpoint, body, check_filter=delivery.check_filter)
                except Stopped as exc:
                    self._quarantine.stopped(endpoint, delivery.event_id, str(exc))
                    return ended(error=str(exc), expression_failed=True)
                except EvaluationError as exc:
                    return ended(error=str(exc), expression_failed=True)
            if shaped is None:
                return ended(filtered_out=True)
            body = shaped.body
        sent = body if body is not delivery.body else None
        # Signed as it is sent: a transform may have waited its turn in the sandbox.
        signed_at = self._clock.now()
        timestamp_s = int(signed_at)
        live = live_secrets(endpoint, signed_at)
        headers = request_headers(endpoint, delivery.event_id, body, timestamp_s, live)
        try:
            async with self._session.post(
                endpoint.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                excerpt = await self._excerpt(response, scrub.reach)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
                return ended(
                    status=response.status, response_excerpt=excerpt, retry_after_s=retry_after, body_sent=sent
                )
        except TimeoutError:
            return ended(error=f"timed out after {self._timeout_s:g}s", body_sent=sent)
        except aiohttp.ClientError as exc:
            return ended(error=describe_client_error(exc), body_sent=sent)
        except (ValueError, OSError, UnicodeError) as exc:
            # Whatever else aiohttp refuses to send counts as a failed attempt, recorded and
            # retried, instead of leaving the delivery stuck in flight.
            return ended(error=f"the request could not be sent: {exc}", body_sent=sent)

    def _refusal(self, url: str) -> str | None:
        if url not in self._refusals:
            self._refusals[url] = self._check_url(url)
        return self._refusals[url]

    def _scrubber(self, endpoint: Endpoint) -> Scrubber:
        key = (endpoint.url, endpoint.headers)
        scrubber = self._scrubbers.get(key)
        if scrubber is None:
            scrubber = self._scrubbers[key] = Scrubber(endpoint.url, endpoint.headers)
        return scrubber

    def _check_url(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
        except ValueError:
            return None  # aiohttp refuses it too, and the attempt records why
        if parts.scheme == "http" and not self._allow_http:
            return "refused: http:// targets need delivery.allow_http = true"
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: checked by the resolver once resolved
        return self._policy.refusal(host)

    async def _excerpt(self, response: aiohttp.ClientResponse, reach: int) -> str | None:
        if self._body_limit <= 0:
            return None
        # All of it up to the limit and the reach, not the first chunk only: a credential split
        # between two chunks would keep its first part.
        chunks: list[bytes] = []
        wanted = self._body_limit + reach
        try:
            while wanted > 0:
                chunk = await response.content.read(wanted)
                if not chunk:
                    break
                chunks.append(chunk)
                wanted -= len(chunk)
        except (TimeoutError, aiohttp.ClientError):
            if not chunks:
                return None
        return b"".join(chunks).decode("utf-8", errors="replace")


def _cut(text: str, limit: int) -> str:
    """`text` cut to `limit` bytes of UTF-8, a character the cut would split left out."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def describe_client_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, BlockedAddress):
            return cause.strerror or str(cause)
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return f"TLS certificate of {exc.host} not accepted: {exc.certificate_error}"
        reason = cause.strerror if cause.strerror else str(cause)
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection without answering"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"connection failed: {exc.strerror or exc}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    return f"{type(exc).__name__}: {exc}"
