"""``memory_limit``: sources pause before the events buffered in the pipeline take the process past it.

The process needs memory for more than its buffers: the interpreter and its
libraries (the baseline, measured once the pipeline is built), requests being
encoded and sent, batches a sink is filling, and the allocator's slack. So the
gate gives the buffers half of what the limit leaves above the baseline, and
counts them by the bytes their batches account for (which track real memory,
see ``Batch.byte_size``). While they hold more, every source's ``send`` waits:
the tail source stops reading (the file is the buffer), a TCP source stops
reading its connections. Sending resumes once the buffers drained to
``RESUME_AT`` of the budget. Transforms and sinks are never paused: they are
what frees the memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable

from agent.buffers.memory import MemoryBuffer

log = logging.getLogger("agent.topology")

BUFFER_SHARE = 0.5  # of what the limit leaves above the baseline RSS, for buffered events
MIN_BUDGET = 4 * 1024 * 1024  # a limit at or below the baseline still lets events through, a few MiB at a time
RESUME_AT = 0.8  # of the budget: sources resume below it (no flapping at the edge)
POLL = 0.05  # seconds between looks at the buffers while paused


def rss_bytes() -> int:
    """The resident set size of this process, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class MemoryGate:
    """Holds sources back while the pipeline's buffers hold more than their share of ``memory_limit``."""

    def __init__(self, limit: int, buffers: Callable[[], Iterable[MemoryBuffer]]) -> None:
        self.limit = limit
        self._buffers = buffers
        self.baseline = 0
        self.budget = MIN_BUDGET
        self.paused_seconds = 0.0  # in all, since start
        self._paused_since: float | None = None

    def start(self, baseline: int | None = None) -> None:
        """Measure the baseline (the pipeline built, nothing buffered yet) and derive the budget."""
        self.baseline = rss_bytes() if baseline is None else baseline
        self.budget = max(MIN_BUDGET, int((self.limit - self.baseline) * BUFFER_SHARE))
        if self.limit - self.baseline < 2 * MIN_BUDGET:
            log.warning("memory_limit leaves little above what the agent needs to run; raise it",
                        extra={"memory_limit_bytes": self.limit, "baseline_rss_bytes": self.baseline,
                               "buffer_budget_bytes": self.budget})

    def buffered(self) -> int:
        """Bytes the pipeline's buffers account for now."""
        return sum(buffer.usage().bytes for buffer in self._buffers())

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    async def wait_open(self) -> None:
        """Return at once while the buffers are within budget; else once they drained to RESUME_AT of it."""
        if self._paused_since is None and self.buffered() <= self.budget:
            return
        if self._paused_since is None:
            self._paused_since = time.monotonic()
            log.info("memory_limit: sources paused until the buffers drain",
                     extra={"buffered_bytes": self.buffered(), "buffer_budget_bytes": self.budget})
        try:
            while self.buffered() > self.budget * RESUME_AT:  # noqa: ASYNC110 (buffers signal no drain: poll)
                await asyncio.sleep(POLL)
        finally:
            if self._paused_since is not None:
                self.paused_seconds += time.monotonic() - self._paused_since
                self._paused_since = None

    def usage(self) -> dict[str, float]:
        """For /metrics: the limit, the budget, what is buffered, the process's RSS, and time spent paused."""
        paused = self.paused_seconds
        if self._paused_since is not None:
            paused += time.monotonic() - self._paused_since
        return {"limit_bytes": self.limit, "buffer_budget_bytes": self.budget, "buffered_bytes": self.buffered(),
                "paused_seconds": paused}
