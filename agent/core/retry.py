"""Exponential backoff with full jitter (Fluent Bit backoff_full_jitter, Vector JitterMode::Full)."""

from __future__ import annotations

import random


class Backoff:
    """Delays for successive retries: uniform in [0, min(cap, initial * 2**attempt)].

    A ``floor`` (a peer's Retry-After) raises the delay of one attempt.
    """

    def __init__(self, initial: float = 1.0, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self, floor: float | None = None) -> float:
        ceiling = min(self.cap, self.initial * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        delay = self._rng.uniform(0, ceiling)
        return max(delay, floor) if floor is not None else delay

    def reset(self) -> None:
        self.attempt = 0
