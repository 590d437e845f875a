"""Timed output of a transform that holds state: ``flush()`` every ``flush_interval`` seconds.

A function transform may define ``flush_interval`` (seconds) and ``flush() -> Batch | None``
(``log_to_metric`` does: it emits what it aggregated). The topology then runs a :class:`Flusher` beside
the transform's loop: it sends what ``flush()`` returns every interval, and once more when the transform's
input ends or a reload replaces it. ``flush()`` is synchronous, like ``process()``, so the two never
interleave; what it returns must not depend on being delivered (cumulative values, as metrics are), because
a flush still waiting for room downstream at the shutdown deadline is abandoned.

A transform that holds batches for a while (``kubernetes``) may also define ``input_ended()``, told before the
last flush so that it lets everything go then, ``draining()``, told by the topology when a stop's drain begins
(before its input ends: the sources wait for the acks of what it holds), and ``async aclose()``, awaited after
the last flush. Such batches carry acks and their file's order: the transform's loop holds :attr:`Flusher.lock`
from ``process()`` to its send, as a flush does, so a batch released by a flush that waits for room is not
overtaken by a later one of its file; and a flush under way when the input ends is not abandoned: the last flush
waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agent.core.component import Output
from agent.observe.stats import ComponentStats

log = logging.getLogger("agent.topology")


class Flusher:
    """Calls one transform's ``flush()`` on its interval and sends the result to its output."""

    def __init__(self, component_id: str, transform: Any, out: Output, stats: ComponentStats) -> None:
        self.component_id = component_id
        self.transform = transform
        self.out = out
        self.stats = stats
        self.interval = float(transform.flush_interval)
        self.lock = asyncio.Lock()  # held by a flush and by the transform's loop, each from its call to its send
        self._ended = False  # cancelled: the next flush is the last
        self._sending = False  # the timer's flush is sending: cancel() lets it finish
        self._stopped = False
        self._task = asyncio.create_task(self._tick(), name=f"{component_id}:flush")

    @classmethod
    def start(cls, component_id: str, transform: Any, out: Output, stats: ComponentStats) -> Flusher | None:
        """A running flusher for ``transform``, or None if it has nothing to flush."""
        if getattr(transform, "flush", None) is None:
            return None
        return cls(component_id, transform, out, stats)

    async def _tick(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.interval)
            async with self.lock:
                self._sending = True
                try:
                    await self._flush()
                finally:
                    self._sending = False

    async def flush(self) -> None:
        """Send what the transform has now (after a flush under way); a fault is logged and counted, never
        raised."""
        async with self.lock:
            await self._flush()

    async def _flush(self) -> None:
        last = self._ended  # told before this flush took what the transform held: it is the last
        try:
            batch = self.transform.flush()
        except Exception:
            log.exception("transform flush failed", extra={"component_id": self.component_id})
            self.stats.error("transform_failed", "flush")
            batch = None
        if batch is not None and batch.events:
            await self.out.send(batch)
        if last:
            await self._close()

    def cancel(self) -> None:
        """Stop the timer (a flush it has under way still sends what it took); the next flush is the last."""
        self._stopped = True
        if not self._sending:
            self._task.cancel()
        self._ended = True
        ended = getattr(self.transform, "input_ended", None)
        if ended is not None:
            ended()

    async def _close(self) -> None:
        close = getattr(self.transform, "aclose", None)
        self._ended = False
        if close is not None:
            try:
                await close()
            except Exception:
                log.exception("transform close failed", extra={"component_id": self.component_id})
