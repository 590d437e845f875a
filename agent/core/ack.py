"""End-to-end acknowledgements.

A source that can commit a position (file offset, Kafka offset) attaches one
:class:`Ack` to every batch it emits. Every holder of a batch releases each of
its acks exactly once: fan-out retains one reference per extra consumer, sinks
release on delivery, a counted drop releases as delivered. When the last
reference is released the source is told the merged status (worst wins).

:class:`OrderedAcks` turns completions that arrive in any order into a
position that only moves forward over a contiguous prefix of finished batches,
which is what a checkpoint may record.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class AckStatus(enum.IntEnum):
    """Outcome of a batch; merging keeps the worst (Vector's BatchStatus)."""

    DELIVERED = 0  # delivered, buffered on disk, or dropped by a counted policy
    REJECTED = 1  # refused for good by a peer (dead-lettered or counted): the source may move on
    ERRORED = 2  # not delivered (retries or deadline ran out): the source must not move past it


class Ack:
    """One reference-counted completion for one source batch."""

    __slots__ = ("_on_done", "_refs", "_status")

    def __init__(self, on_done: Callable[[AckStatus], None]) -> None:
        self._on_done = on_done
        self._refs = 1
        self._status = AckStatus.DELIVERED

    def retain(self, n: int = 1) -> None:
        """Add ``n`` holders (fan-out to more consumers, or a split batch)."""
        self._refs += n

    def release(self, status: AckStatus = AckStatus.DELIVERED) -> None:
        """Drop one holder's reference; the last one reports the merged status."""
        if status > self._status:
            self._status = status
        self._refs -= 1
        if self._refs == 0:
            self._on_done(self._status)
        elif self._refs < 0:
            raise RuntimeError("ack released more often than retained")

    @property
    def pending(self) -> bool:
        return self._refs > 0


class OrderedAcks(Generic[T]):
    """Tracks batches in creation order and advances a committable position.

    ``track(token)`` returns the Ack for a new batch; ``token`` is what the
    source will commit once that batch and every earlier one are finished
    (e.g. the file offset just past the batch). ``on_commit(token)`` is called
    with the newest committable token. An ERRORED batch stops the position for
    good: the source replays from there after a restart (at least once).
    """

    def __init__(self, on_commit: Callable[[T], None] | None = None) -> None:
        self._pending: deque[list] = deque()  # [token, status | None]
        self._on_commit = on_commit
        self._idle = asyncio.Event()
        self._idle.set()
        self.position: T | None = None
        self.stuck = False
        self.errored = 0

    def track(self, token: T) -> Ack:
        entry: list = [token, None]
        self._pending.append(entry)
        self._idle.clear()

        def done(status: AckStatus) -> None:
            entry[1] = status
            if status is AckStatus.ERRORED:
                self.errored += 1
            self._advance()

        return Ack(done)

    def _advance(self) -> None:
        moved = False
        pending = self._pending
        while pending and pending[0][1] is not None:
            token, status = pending.popleft()
            if status is AckStatus.ERRORED:
                self.stuck = True
            if not self.stuck:
                self.position = token
                moved = True
        if moved and self._on_commit is not None:
            self._on_commit(self.position)  # type: ignore[arg-type]
        if not pending:
            self._idle.set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def wait_idle(self) -> None:
        """Wait until every tracked batch has finished."""
        await self._idle.wait()
