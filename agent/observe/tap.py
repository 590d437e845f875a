"""Taps: a sample of what a component emits, for `agent tap` and /api/v1/tap.

Offering a batch to taps never blocks and never copies more than a few
events; a tap whose reader is slow loses samples, not the pipeline's time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent.core.batch import Batch, Kind

SAMPLE_PER_BATCH = 5


def event_to_json(kind: Kind, event: Any) -> Any:
    """A JSON-serialisable view of one event of ``kind``."""
    if kind.is_raw:
        return {"message": event.decode("utf-8", "replace")}
    if kind is Kind.METRICS:
        return event.to_dict()
    return event


class Taps:
    """The open taps of one component; falsy when none is open."""

    __slots__ = ("_queues",)

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Any]] = []

    def __bool__(self) -> bool:
        return bool(self._queues)

    def open(self, max_events: int = 1000) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue(max_events)
        self._queues.append(queue)
        return queue

    def close(self, queue: asyncio.Queue[Any]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def offer(self, batch: Batch) -> None:
        sample = [event_to_json(batch.kind, e) for e in batch.events[:SAMPLE_PER_BATCH]]
        for queue in self._queues:
            for item in sample:
                if queue.full():
                    break
                queue.put_nowait(item)
