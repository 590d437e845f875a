from __future__ import annotations

from agent.buffers.memory import MemoryBuffer
from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.observe.stats import ComponentStats
from agent.topology.fanout import Fanout


def buf() -> MemoryBuffer:
    return MemoryBuffer(100, 10_000, "block", ComponentStats("b", "sink", "t"))


async def test_each_consumer_holds_its_own_ack_reference() -> None:
    seen: list[AckStatus] = []
    out = Fanout(ComponentStats("s", "source", "t"))
    a, b = buf(), buf()
    out.set_targets([(a, False), (b, False)])
    await out.send(Batch([{"x": 1}], Kind.LOGS, 8, [Ack(seen.append)]))
    first, second = await a.get(), await b.get()
    assert first is not None and second is not None
    first.finalize(AckStatus.DELIVERED)
    assert seen == []
    second.finalize(AckStatus.REJECTED)
    assert seen == [AckStatus.REJECTED]


async def test_mutating_consumers_get_copies_and_readers_share() -> None:
    out = Fanout(ComponentStats("s", "source", "t"))
    reader, mutator = buf(), buf()
    out.set_targets([(reader, False), (mutator, True)])
    await out.send(Batch([{"x": 1}], Kind.LOGS, 8))
    shared, copy = await reader.get(), await mutator.get()
    assert shared is not None and copy is not None
    copy.events[0]["x"] = 2
    assert shared.events[0] == {"x": 1}


async def test_no_consumer_counts_a_discard_and_acknowledges() -> None:
    seen: list[AckStatus] = []
    stats = ComponentStats("s", "source", "t")
    await Fanout(stats).send(Batch([b"a", b"b"], Kind.LINES, 2, [Ack(seen.append)]))
    assert stats.discarded["no_consumer"] == 2 and seen == [AckStatus.DELIVERED]
