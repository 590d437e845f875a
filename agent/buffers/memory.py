"""The in-memory edge buffer: bounded in events and bytes, one reader.

``when_full: block`` makes ``put`` wait until the reader has made room, which
is how a slow sink pushes back on its sources. ``drop_newest`` drops the
incoming batch instead, counts it, and releases its acks as delivered (an
explicit, counted policy). A batch larger than the whole bound is still
admitted into an empty buffer so that nothing can deadlock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from agent.core.ack import AckStatus
from agent.core.batch import Batch
from agent.observe.stats import ComponentStats
from agent.observe.tap import Taps


@dataclass(slots=True)
class BufferUsage:
    """What a buffer holds now and may hold at most."""

    events: int
    bytes: int
    max_events: int
    max_bytes: int
    full_waits: int  # puts that had to wait for room (block), since start
    blocked_seconds: float  # how long they waited in all: backpressure on the producers


class MemoryBuffer:
    """A bounded FIFO of batches between producers and one consumer task."""

    def __init__(self, max_events: int, max_bytes: int, when_full: str, stats: ComponentStats) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.stats = stats
        self.taps = Taps()
        self._queue: deque[Batch] = deque()
        self._events = 0
        self._bytes = 0
        self._full_waits = 0
        self._blocked_seconds = 0.0  # finished waits
        self._waiting_since: list[float] = []  # puts waiting now, so a stall shows while it lasts
        self._closed = False
        self._interrupted = False
        self._getter: asyncio.Future[None] | None = None
        self._space = asyncio.Event()
        self._interrupt = asyncio.Event()
        self.track_in_hand = False  # sinks: remember batches taken and not yet finalized
        self._in_hand: list[Batch] = []

    def _has_room(self, batch: Batch) -> bool:
        if not self._queue:
            return True
        return self._events + len(batch.events) <= self.max_events and self._bytes + batch.byte_size <= self.max_bytes

    async def put(self, batch: Batch) -> None:
        """Enqueue ``batch``, waiting for room (block) or dropping it (drop_newest)."""
        if self._closed:
            raise RuntimeError("put on a closed buffer")
        if self.taps:
            self.taps.offer(batch)
        if not self._has_room(batch):
            if self.when_full == "drop_newest":
                self.stats.discard("buffer_full", len(batch.events))
                batch.finalize(AckStatus.DELIVERED)
                return
            await self._wait_for_room(batch)
        self._queue.append(batch)
        self._events += len(batch.events)
        self._bytes += batch.byte_size
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    async def _wait_for_room(self, batch: Batch) -> None:
        self._full_waits += 1
        started = time.monotonic()
        self._waiting_since.append(started)
        try:
            while not self._has_room(batch):
                self._space.clear()
                await self._space.wait()
        finally:
            self._waiting_since.remove(started)
            self._blocked_seconds += time.monotonic() - started

    async def get(self) -> Batch | None:
        """Next batch; None once closed and empty, or when the reader was interrupted."""
        while not self._queue:
            if self._closed or self._interrupted:
                return None
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        if self._interrupted:
            return None
        batch = self._queue.popleft()
        self._events -= len(batch.events)
        self._bytes -= batch.byte_size
        if self.track_in_hand:
            if self._in_hand:
                self._in_hand = [held for held in self._in_hand if not held.done]
            self._in_hand.append(batch)
        self._wake_putter()
        return batch

    def take_in_hand(self) -> list[Batch]:
        """The batches a reader took and never finalized (it crashed), oldest first; forgotten here."""
        held = [batch for batch in self._in_hand if not batch.done]
        self._in_hand = []
        return held

    def _wake_putter(self) -> None:
        self._space.set()

    def _wake_getter(self) -> None:
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)

    def close(self) -> None:
        """No more puts; the reader drains what is queued, then gets None."""
        self._closed = True
        self._wake_getter()

    def interrupt(self) -> None:
        """Make the current reader's ``get`` return None, keeping queued batches for the next reader."""
        self._interrupted = True
        self._interrupt.set()
        self._wake_getter()

    def requeue(self, batch: Batch) -> None:
        """Put a batch a reader took back at the front (a replaced reader hands back what it held)."""
        self._queue.appendleft(batch)
        self._events += len(batch.events)
        self._bytes += batch.byte_size
        self._wake_getter()

    @property
    def interrupted(self) -> bool:
        """Whether the reader was asked to stop (a reload swaps it), as opposed to the input ending."""
        return self._interrupted

    async def wait_interrupted(self) -> None:
        """Return once the reader is asked to stop (for readers waiting on something else)."""
        await self._interrupt.wait()

    def resume(self) -> None:
        """Accept a new reader after :meth:`interrupt`."""
        self._interrupted = False
        self._interrupt.clear()

    def resize(self, max_events: int, max_bytes: int, when_full: str) -> None:
        self.max_events, self.max_bytes, self.when_full = max_events, max_bytes, when_full
        self._wake_putter()

    def drain_discarding(self, reason: str) -> int:
        """Finalize everything still queued as not delivered (hard stop); returns the event count."""
        lost = 0
        while self._queue:
            batch = self._queue.popleft()
            lost += len(batch.events)
            batch.finalize(AckStatus.ERRORED)
        self._events = self._bytes = 0
        if lost:
            self.stats.discard(reason, lost)
        return lost

    def usage(self) -> BufferUsage:
        now = time.monotonic()
        blocked = self._blocked_seconds + sum(now - since for since in self._waiting_since)
        return BufferUsage(self._events, self._bytes, self.max_events, self.max_bytes, self._full_waits, blocked)

    @property
    def closed(self) -> bool:
        return self._closed
