"""Token buckets: at most `rate` attempts per second to an endpoint, with bursts up to `rate`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    tokens: float
    updated_at: float

    @classmethod
    def full(cls, rate: float, now: float) -> TokenBucket:
        return cls(rate=rate, tokens=cls.capacity_for(rate), updated_at=now)

    @staticmethod
    def capacity_for(rate: float) -> float:
        return max(1.0, rate)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated_at)
        self.tokens = min(self.capacity_for(self.rate), self.tokens + elapsed * self.rate)
        self.updated_at = now

    def available(self, now: float) -> int:
        self._refill(now)
        return int(self.tokens)

    def take(self, n: int, now: float) -> None:
        self._refill(now)
        self.tokens -= n

    def give_back(self, n: int) -> None:
        """Tokens taken for attempts that never went out."""
        self.tokens = min(self.capacity_for(self.rate), self.tokens + n)

    def next_token_at(self, now: float) -> float:
        """When the next whole token will be there."""
        self._refill(now)
        return now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate
