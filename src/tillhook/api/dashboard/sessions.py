"""Dashboard sessions: signing in with a token gives a random session id (the cookie) and a
per-session token for every form (against cross-site requests). Kept in memory: a restart
signs everybody out, which is what a daemon's restart should do; the tokens never leave
the daemon after the sign-in request."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "tillhook_session"
MAX_SESSIONS = 1000  # a shop has a few people; more is someone signing in in a loop


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    role: str  # "admin" or "viewer"
    last_seen: float

    def csrf_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, idle_s: float, monotonic: Callable[[], float]) -> None:
        self.idle_s = idle_s
        self._monotonic = monotonic
        self._by_id: dict[str, Session] = {}

    def create(self, role: str) -> Session:
        self._forget_idle()
        if len(self._by_id) >= MAX_SESSIONS:
            oldest = min(self._by_id.values(), key=lambda s: s.last_seen)
            del self._by_id[oldest.id]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), role, self._monotonic())
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle clock starts again), else None."""
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        now = self._monotonic()
        if now - session.last_seen > self.idle_s:
            del self._by_id[session.id]
            return None
        session.last_seen = now
        return session

    def drop(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def _forget_idle(self) -> None:
        now = self._monotonic()
        for session in [s for s in self._by_id.values() if now - s.last_seen > self.idle_s]:
            del self._by_id[session.id]
