"""Token buckets keyed by peer or recipient (time passed in, no clock read)."""

from __future__ import annotations


class TokenBuckets:
    """``burst`` tokens per key, refilled at ``rate`` per second.

    LDK's static-invoice server uses a bucket of 5 refilled every 100 ms per
    recipient (ldk-node); defaults here are set by ``LspConfig``.
    """

    def __init__(self, burst: int, rate: float, max_keys: int = 100_000) -> None:
        self.burst, self.rate, self.max_keys = burst, rate, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > self.max_keys:
            self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        # A bucket that has refilled completely is the same as no bucket.
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
