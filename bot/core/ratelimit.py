"""A token bucket per user: a flood of messages is answered once ("slow down") and the rest dropped unread.

Dropped messages never reach the session, so a flood cannot change or lose what the user already has. The buckets
live in memory (a restart forgives everyone) and idle ones are forgotten, so memory stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache

__all__ = ["RateLimiter", "Verdict"]

MAX_TRACKED = 50_000  # buckets kept; the least recently seen user is forgotten first (a full bucket, as if new)


@dataclass
class _Bucket:
    tokens: float
    seen: float
    warned: bool = False


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    warn: bool  # True for the first dropped message of a flood: the one that gets the "slow down" reply


class RateLimiter:
    """``burst`` messages at once, then ``per_second`` on average; ``burst=0`` turns limiting off."""

    def __init__(self, burst: int, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.per_second = per_second
        self._clock = clock
        self._buckets: LRUCache[str, _Bucket] = LRUCache(maxsize=MAX_TRACKED)

    def check(self, user_key: str) -> Verdict:
        """Spend one token of ``user_key``'s bucket if there is one."""
        if self.burst <= 0:
            return Verdict(True, False)
        now = self._clock()
        bucket = self._buckets.get(user_key)  # a lookup counts as a use: the user is now the most recently seen
        if bucket is None:
            bucket = self._buckets[user_key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.seen) * self.per_second)
        bucket.seen = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.warned = False
            return Verdict(True, False)
        warn = not bucket.warned
        bucket.warned = True
        return Verdict(False, warn)

    def forget(self, user_key: str) -> None:
        """Drop the user's bucket (``/delete``: not even their key stays behind)."""
        self._buckets.pop(user_key, None)
