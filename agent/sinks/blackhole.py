"""Sink `blackhole`: counts and discards, for benchmarks and tests."""

from __future__ import annotations

import logging
import time
from typing import ClassVar

from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.config.units import Duration
from agent.core.ack import AckStatus
from agent.core.component import SinkContext

log = logging.getLogger("agent.sinks.blackhole")


class BlackholeConfig(SinkConfig, tag="blackhole"):
    """Acknowledge and discard everything (logs or metrics), counting it; for tests and benchmarks."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs", "metrics"})
    print_interval: Duration | None = None
    """Log the running totals this often; none: stay quiet."""


@register("sink", "blackhole", BlackholeConfig, "Counts and discards events.")
class BlackholeSink:
    """Acknowledges every batch as delivered and drops it."""

    input_types = BlackholeConfig.input_types

    def __init__(self, config: BlackholeConfig, ctx: BuildContext) -> None:
        self.print_interval = config.print_interval

    async def healthcheck(self) -> None:
        return None

    async def run(self, ctx: SinkContext) -> None:
        stats = ctx.stats
        next_print = time.monotonic() + (self.print_interval or 0)
        while (batch := await ctx.inbox.get()) is not None:
            n = len(batch.events)
            stats.received_events += n
            stats.received_bytes += batch.byte_size
            stats.sent_events += n
            stats.sent_bytes += batch.byte_size
            batch.finalize(AckStatus.DELIVERED)
            if self.print_interval and time.monotonic() >= next_print:
                next_print = time.monotonic() + self.print_interval
                log.info("blackhole totals", extra={"component_id": ctx.id, "events": stats.received_events,
                                                    "bytes": stats.received_bytes})
