"""How many requests a sink keeps in flight: a fixed number, or adaptive (AIMD)."""

from __future__ import annotations

import asyncio


class Limiter:
    """Slots for requests in flight.

    Fixed: ``limit`` slots. Adaptive: starts at 1, adds one slot after a
    window of ``limit`` fast responses (at most ``maximum``), halves on a 429
    or when latency exceeds twice its moving average (TCP-style AIMD, as
    Vector's adaptive request concurrency).
    """

    def __init__(self, limit: int, *, adaptive: bool = False, maximum: int = 32) -> None:
        self.adaptive = adaptive
        self.maximum = maximum
        self.limit = 1 if adaptive else limit
        self.in_flight = 0
        self._ewma: float | None = None
        self._successes = 0
        self._changed = asyncio.Event()

    def try_acquire(self) -> bool:
        """Take a slot if one is free, without waiting."""
        if self.in_flight < self.limit:
            self.in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        while self.in_flight >= self.limit:
            self._changed.clear()
            await self._changed.wait()
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._changed.set()

    def observe(self, latency: float, throttled: bool) -> None:
        """Feed back one response (adaptive mode only)."""
        if not self.adaptive:
            return
        slow = self._ewma is not None and latency > 2 * self._ewma
        self._ewma = latency if self._ewma is None else 0.9 * self._ewma + 0.1 * latency
        if throttled or slow:
            self.limit = max(1, self.limit // 2)
            self._successes = 0
            return
        self._successes += 1
        if self._successes >= self.limit and self.limit < self.maximum:
            self.limit += 1
            self._successes = 0
            self._changed.set()
