"""When an alert is said, and a duration in the words it uses. Pure, tested as tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

HOUR_S = 3600.0

T = TypeVar("T")


@dataclass(slots=True)
class _Window(Generic[T]):
    opened_at: float
    counted: int = 0
    last: T | None = None


class HourlyCount(Generic[T]):
    """At most one report per key per `window_s`. The first occurrence is reported at once
    (count 1) and opens a window; later ones inside it are only counted, and once it is over
    they are reported together (their count and the last one's detail), which opens the next
    window. A window that counted nothing closes: the next occurrence is reported at once."""

    def __init__(self, window_s: float = HOUR_S) -> None:
        self._window_s = window_s
        self._windows: dict[str, _Window[T]] = {}

    def occurred(self, key: str, now: float, detail: T) -> int | None:
        """The count to report now, or None when this one waits for its window's end."""
        window = self._windows.get(key)
        if window is not None and now < window.opened_at + self._window_s:
            window.counted += 1
            window.last = detail
            return None
        # A window over but not yet reported (no check ran since): its count goes with this one.
        self._windows[key] = _Window(now)
        return 1 + (window.counted if window is not None else 0)

    def due(self, now: float) -> list[tuple[str, int, T]]:
        """(key, count, last detail) of each window over that counted any; the others close."""
        reports = []
        for key, window in list(self._windows.items()):
            if now < window.opened_at + self._window_s:
                continue
            if window.counted and window.last is not None:
                reports.append((key, window.counted, window.last))
                self._windows[key] = _Window(now)
            else:
                del self._windows[key]
        return reports


class BacklogWatch:
    """Says when to alert: once the oldest pending delivery is older than the limit, again at
    most every `repeat_s` while it stays so, and once more only after it was back under."""

    def __init__(self, limit_s: float, repeat_s: float = HOUR_S) -> None:
        self.limit_s = limit_s
        self._repeat_s = repeat_s
        self._alerted_at: float | None = None  # None: armed

    def over(self, oldest_age_s: float | None, now: float) -> bool:
        if oldest_age_s is None or oldest_age_s <= self.limit_s:
            self._alerted_at = None
            return False
        if self._alerted_at is not None and now < self._alerted_at + self._repeat_s:
            return False
        self._alerted_at = now
        return True


class BackoffAlarm:
    """When to say an endpoint is failing or recovered. A back-off is said when it starts, but
    at most once an hour per endpoint, so one that flaps (fails into back-off, answers one
    probe, fails again) does not flood a chat; its recovery is said only if its start was. A
    back-off that started unsaid and still lasts when the hour is over is said then."""

    def __init__(self, repeat_s: float = HOUR_S) -> None:
        self._repeat_s = repeat_s
        self._told_at: dict[str, float] = {}  # when each endpoint was last said to be failing
        self._told: set[str] = set()  # said to be failing, not yet said to be recovered
        self._unsaid: set[str] = set()  # backing off since a start that was not said

    def started(self, key: str, now: float) -> bool:
        """A back-off started: say so now?"""
        told_at = self._told_at.get(key)
        if told_at is not None and now < told_at + self._repeat_s:
            self._unsaid.add(key)
            return False
        self._say(key, now)
        return True

    def ended(self, key: str) -> bool:
        """The back-off ended: say so now?"""
        self._unsaid.discard(key)
        if key in self._told:
            self._told.discard(key)
            return True
        return False

    def due(self, now: float, backing_off: Callable[[str], bool]) -> list[str]:
        """The back-offs started unsaid that still last an hour after the last one said."""
        said = []
        for key in sorted(self._unsaid):
            if not backing_off(key):  # its end went unseen (enabled afresh, or deleted)
                self._unsaid.discard(key)
            elif now >= self._told_at[key] + self._repeat_s:
                self._say(key, now)
                said.append(key)
        return said

    def _say(self, key: str, now: float) -> None:
        self._told_at[key] = now
        self._told.add(key)
        self._unsaid.discard(key)


def span(seconds: float) -> str:
    """A duration as a person says it: 45s, 12 min, 3 h 5 min, 2 d 4 h."""
    s = round(seconds)
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 120:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"
