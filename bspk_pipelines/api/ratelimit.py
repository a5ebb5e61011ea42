"""Requests per key per 10-second window, as the platform's API counts them (and, with the same
class, key checks per client address and per key id: see `auth`).

A fixed window per key, held in this process's memory: a restart forgets the counts, and with
several server processes each counts on its own (a key then gets up to `limit` per process). One
process is what `bspk serve` runs; a shared counter (Redis, the database) would replace this
class with the same interface.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Allowance:
    allowed: bool
    limit: int
    remaining: int
    reset_in: float  # seconds until the window ends

    @property
    def retry_after(self) -> str:
        """Whole seconds until the window ends, as Retry-After says it (at least 1)."""
        return str(max(1, math.ceil(self.reset_in)))

    def headers(self) -> dict[str, str]:
        out = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            out["Retry-After"] = self.retry_after
        return out


class RateLimiter:
    def __init__(self, limit: int, window: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window number, requests in it)
        self._lock = threading.Lock()

    def hit(self, key: str) -> Allowance:
        """Count one request of `key`; over the limit it is not allowed (and still counted)."""
        at = self.clock()
        window = int(at // self.window)
        with self._lock:
            seen, count = self._counts.get(key, (window, 0))
            count = count + 1 if seen == window else 1
            self._counts[key] = (window, count)
            if len(self._counts) > 10_000:  # forget keys idle since an earlier window
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        reset_in = (window + 1) * self.window - at
        return Allowance(count <= self.limit, self.limit, max(0, self.limit - count), reset_in)

    def refund(self, key: str) -> None:
        """Take back one request of `key` counted in the current window (one that turned out not to count)."""
        window = int(self.clock() // self.window)
        with self._lock:
            seen, count = self._counts.get(key, (window, 0))
            if seen == window and count > 0:
                self._counts[key] = (window, count - 1)
