from __future__ import annotations

import asyncio

from agent.buffers.memory import MemoryBuffer
from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.observe.stats import ComponentStats


def lines_batch(n: int, size: int = 10, acks: list[Ack] | None = None) -> Batch:
    return Batch([b"x" * size] * n, Kind.LINES, n * size, acks)


def buffer(max_events: int = 100, max_bytes: int = 10_000, when_full: str = "block") -> MemoryBuffer:
    return MemoryBuffer(max_events, max_bytes, when_full, ComponentStats("b", "sink", "test"))


async def test_put_blocks_when_full_and_resumes_when_read() -> None:
    buf = buffer(max_events=10)
    await buf.put(lines_batch(6))
    blocked = asyncio.create_task(buf.put(lines_batch(6)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert buf.usage().events == 6
    first = await buf.get()
    assert first is not None and len(first) == 6
    await asyncio.wait_for(blocked, 1)
    assert buf.usage().events == 6


async def test_backpressure_is_counted_while_it_lasts_and_after() -> None:
    buf = buffer(max_events=10)
    await buf.put(lines_batch(6))
    assert (buf.usage().full_waits, buf.usage().blocked_seconds) == (0, 0.0)
    blocked = asyncio.create_task(buf.put(lines_batch(6)))
    await asyncio.sleep(0.05)
    during = buf.usage()
    assert during.full_waits == 1 and during.blocked_seconds >= 0.04  # a stall shows before it ends
    await buf.get()
    await asyncio.wait_for(blocked, 1)
    after = buf.usage().blocked_seconds
    await asyncio.sleep(0.02)
    assert buf.usage().blocked_seconds == after >= during.blocked_seconds  # and stops growing when it ends


async def test_byte_bound_holds_under_many_producers() -> None:
    buf = buffer(max_events=10_000, max_bytes=1_000)
    peak = 0

    async def produce() -> None:
        for _ in range(20):
            await buf.put(lines_batch(5, size=20))

    async def consume() -> None:
        nonlocal peak
        for _ in range(80):
            peak = max(peak, buf.usage().bytes)
            await asyncio.sleep(0)
            assert await buf.get() is not None

    async with asyncio.timeout(5):
        await asyncio.gather(produce(), produce(), produce(), produce(), consume())
    assert 0 < peak <= 1_000


async def test_oversized_batch_is_admitted_into_an_empty_buffer() -> None:
    buf = buffer(max_events=2)
    await asyncio.wait_for(buf.put(lines_batch(5)), 1)
    assert buf.usage().events == 5


async def test_drop_newest_counts_and_acknowledges_the_dropped_batch() -> None:
    seen: list[AckStatus] = []
    buf = buffer(max_events=5, when_full="drop_newest")
    await buf.put(lines_batch(5))
    await buf.put(lines_batch(3, acks=[Ack(seen.append)]))
    assert buf.usage().events == 5
    assert buf.stats.discarded["buffer_full"] == 3
    assert seen == [AckStatus.DELIVERED]


async def test_close_lets_the_reader_drain_then_end() -> None:
    buf = buffer()
    await buf.put(lines_batch(1))
    await buf.put(lines_batch(2))
    buf.close()
    assert len(await buf.get()) == 1  # type: ignore[arg-type]
    assert len(await buf.get()) == 2  # type: ignore[arg-type]
    assert await buf.get() is None


async def test_interrupt_ends_the_reader_but_keeps_the_queue_for_the_next() -> None:
    buf = buffer()
    waiting = asyncio.create_task(buf.get())
    await asyncio.sleep(0)
    buf.interrupt()
    assert await waiting is None
    await buf.put(lines_batch(4))
    assert await buf.get() is None
    buf.resume()
    got = await buf.get()
    assert got is not None and len(got) == 4


async def test_hard_stop_finalizes_queued_batches_as_errored() -> None:
    seen: list[AckStatus] = []
    buf = buffer()
    await buf.put(lines_batch(4, acks=[Ack(seen.append)]))
    assert buf.drain_discarding("shutdown_timeout") == 4
    assert seen == [AckStatus.ERRORED]
    assert buf.stats.discarded["shutdown_timeout"] == 4
