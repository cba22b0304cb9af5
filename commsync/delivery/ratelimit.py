"""One token bucket shared by every connection: `mail.max_rate` messages per second, all told."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Allows `rate` messages per second on average and at most `burst` at once.

    The clock and sleep are injectable so tests can drive time; by default they are the real ones.
    """

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate or 1.0)
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.capacity
        self.stamp = clock()
        self.lock = threading.Lock()

    def _take(self) -> float:
        """Take a token if one is there (0.0), else say how long to wait for one."""
        assert self.rate is not None
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1 - 1e-9:  # tolerance: waiting exactly `wait` can land on 0.999…
                self.tokens = max(0.0, self.tokens - 1)
                return 0.0
            return (1 - self.tokens) / self.rate

    async def wait(self) -> None:
        """Wait until a message may go (the event loop keeps running meanwhile)."""
        if self.rate is None:
            return
        while (wait := self._take()) > 0:
            await self.sleep(wait)
