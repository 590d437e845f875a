"""Components with named outputs (``route``): one Fanout per output, fed by one loop.

A router's config names its outputs (``named_outputs()``; see :mod:`agent.config.graph`); downstream
components read ``<id>.<name>``. The router's ``route(batch)`` returns ``(name, batch)`` pairs, each
batch holding its own reference on every ack it carries (an event sent to two outputs is finished
when both consumers finished). An output nobody reads is a Fanout without targets: its batches are
counted (``no_consumer``) and released as delivered.
"""

from __future__ import annotations

import logging
from typing import Protocol

from agent.buffers.memory import MemoryBuffer
from agent.core.batch import Batch
from agent.observe.stats import ComponentStats
from agent.topology.fanout import Fanout

log = logging.getLogger("agent.topology")


class Router(Protocol):
    """A transform that sends each batch's events to named outputs."""

    shares_events: bool  # one event may go to several outputs (fan-out copies for mutators)
    fallback: str  # the output a batch goes to, whole, when ``route`` raises

    def route(self, batch: Batch) -> list[tuple[str, Batch]]: ...


async def run_router(component_id: str, router: Router, inbox: MemoryBuffer, outputs: dict[str, Fanout],
                     stats: ComponentStats) -> None:
    """Read ``inbox`` until it closes, sending each part of each batch to its output."""
    while (batch := await inbox.get()) is not None:
        stats.received_events += len(batch.events)
        stats.received_bytes += batch.byte_size
        try:
            parts = router.route(batch)
        except Exception:  # a bug must not lose the batch: it goes on whole, unrouted
            log.exception("route failed; batch sent to its fallback output", extra={
                "component_id": component_id, "output": router.fallback})
            stats.error("transform_failed", "processing")
            parts = [(router.fallback, batch)]
        for name, part in parts:
            await outputs[name].send(part)
