"""Component types that exist only in tests: a sink whose delivery the test opens and closes."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.core.ack import AckStatus
from agent.core.component import SinkContext


class GateConfig(SinkConfig, tag="test_gate"):
    """A sink that delivers only while its gate is open."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs", "metrics"})
    open: bool = False
    status: str = "DELIVERED"


@register("sink", "test_gate", GateConfig, "Test sink: holds batches until opened.")
class GateSink:
    """Holds each batch until ``gate`` is set; records what it delivered."""

    instances: ClassVar[dict[str, GateSink]] = {}
    input_types = GateConfig.input_types

    def __init__(self, config: GateConfig, ctx: BuildContext) -> None:
        self.gate = asyncio.Event()
        if config.open:
            self.gate.set()
        self.status = AckStatus[config.status]
        self.events: list[object] = []
        GateSink.instances[ctx.component_id] = self

    async def healthcheck(self) -> None:
        return None

    async def run(self, ctx: SinkContext) -> None:
        while (batch := await ctx.inbox.get()) is not None:
            ctx.stats.received_events += len(batch.events)
            await self.gate.wait()
            self.events.extend(batch.events)
            ctx.stats.sent_events += len(batch.events)
            batch.finalize(self.status)
