"""Component types that exist only in tests: a sink the test opens and closes, a source of prepared batches."""

from __future__ import annotations

import asyncio
import itertools
from typing import ClassVar, Literal

from agent.config.model import SinkConfig, SourceConfig
from agent.config.registry import BuildContext, register
from agent.core.ack import AckStatus, OrderedAcks
from agent.core.batch import Batch
from agent.core.component import SinkContext, SourceContext


class GateConfig(SinkConfig, tag="test_gate"):
    """A sink that delivers only while its gate is open."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs", "metrics"})
    open: bool = False
    status: str = "DELIVERED"
    delay: float = 0.0  # seconds each batch takes to deliver (a slow peer)


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
        self.delay = config.delay
        self.events: list[object] = []
        GateSink.instances[ctx.component_id] = self

    async def healthcheck(self) -> None:
        return None

    async def run(self, ctx: SinkContext) -> None:
        while (batch := await ctx.inbox.get()) is not None:
            ctx.stats.received_events += len(batch.events)
            await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            self.events.extend(batch.events)
            ctx.stats.sent_events += len(batch.events)
            batch.finalize(self.status)


FEEDS: dict[str, list[Batch]] = {}
_feed_names = itertools.count()


def feed(batches: list[Batch]) -> str:
    """Queue prepared batches for a `test_feed` source; returns the name to put in its config."""
    name = f"feed{next(_feed_names)}"
    FEEDS[name] = batches
    return name


class FeedConfig(SourceConfig, tag="test_feed"):
    """A source that emits the batches queued under ``name`` (see :func:`feed`)."""

    name: str
    data_type: Literal["logs", "metrics"] = "logs"

    def output_type(self) -> str:
        return self.data_type


@register("source", "test_feed", FeedConfig, "Test source: prepared batches.")
class Feed:
    """Sends the prepared batches in order, then waits for their acks; ``committed_events`` counts them in order."""

    def __init__(self, config: FeedConfig, ctx: BuildContext) -> None:
        self.output_type = config.data_type
        self.batches = FEEDS.pop(config.name)

    async def run(self, ctx: SourceContext) -> None:
        def commit(position: int) -> None:
            ctx.stats.gauges["committed_events"] = position

        acks: OrderedAcks[int] = OrderedAcks(commit)
        sent = 0
        for batch in self.batches:
            sent += len(batch.events)
            batch.acks.append(acks.track(sent))
            ctx.stats.received_events += len(batch.events)
            await ctx.out.send(batch)
        await acks.wait_idle()


class CrashConfig(SinkConfig, tag="test_crash"):
    """A sink that raises on chosen batches (numbered from 1 across restarts), or in ``start()``."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs", "metrics"})
    crash_on: list[int] = []
    fail_start: int = 0  # how many start() calls raise OSError before one succeeds


@register("sink", "test_crash", CrashConfig, "Test sink: crashes on chosen batches.")
class CrashSink:
    """Delivers batches unless this one is to crash; what it delivered survives restarts."""

    delivered: ClassVar[dict[str, list[object]]] = {}
    taken: ClassVar[dict[str, int]] = {}
    starts: ClassVar[dict[str, int]] = {}
    input_types = CrashConfig.input_types

    def __init__(self, config: CrashConfig, ctx: BuildContext) -> None:
        self.config = config
        self.id = ctx.component_id
        CrashSink.delivered.setdefault(self.id, [])

    @classmethod
    def forget(cls, component_id: str) -> None:
        """Start a test afresh: what a component of this id did in earlier tests is forgotten."""
        for record in (cls.delivered, cls.taken, cls.starts):
            record.pop(component_id, None)

    async def healthcheck(self) -> None:
        return None

    async def start(self) -> None:
        CrashSink.starts[self.id] = CrashSink.starts.get(self.id, 0) + 1
        if CrashSink.starts[self.id] <= self.config.fail_start:
            raise OSError(98, "Address already in use")

    async def run(self, ctx: SinkContext) -> None:
        while (batch := await ctx.inbox.get()) is not None:
            CrashSink.taken[self.id] = number = CrashSink.taken.get(self.id, 0) + 1
            if number in self.config.crash_on:
                raise RuntimeError(f"boom on batch {number}")
            CrashSink.delivered[self.id].extend(batch.events)
            ctx.stats.sent_events += len(batch.events)
            batch.finalize(AckStatus.DELIVERED)
