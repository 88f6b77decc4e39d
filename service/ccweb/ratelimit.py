"""A token bucket per verified identity (issuer + subject), in memory, bounded. Pure: the clock is passed in.

Each identity gets ``burst`` tokens, refilled at ``requests_per_minute / 60`` per second; a request spends
one. A bucket that has refilled completely holds nothing worth keeping, so buckets idle that long are
dropped, and at most ``max_identities`` are kept (least recently used first out; an evicted identity
simply starts again with a full bucket). The state lives in one process: with N replicas (or
``--workers N``) an identity can make up to N times the configured rate.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_IDENTITIES = 100_000

BucketKey = tuple[str, str]
"""(issuer name, subject)."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``check(key)`` spends a token and returns 0, or returns the whole seconds until one is available."""

    def __init__(
        self,
        requests_per_minute: int,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_identities: int = MAX_IDENTITIES,
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.burst = burst
        self._rate = requests_per_minute / 60.0
        self._clock = clock
        self._max = max_identities
        self._buckets: OrderedDict[BucketKey, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.requests_per_minute > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: BucketKey) -> int:
        if not self.enabled:
            return 0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
        else:
            # max(): a clock that stepped back refills nothing rather than taking tokens away.
            bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.updated) * self._rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        self._prune(now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / self._rate))

    def _prune(self, now: float) -> None:
        full_after = self.burst / self._rate  # seconds for an empty bucket to fill up again
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if len(self._buckets) <= self._max and now - oldest.updated < full_after:
                break
            del self._buckets[key]
