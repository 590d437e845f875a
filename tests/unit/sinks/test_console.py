"""The `console` sink writes off the event loop: a stdout nobody reads does not freeze the agent."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import wait_for

from agent.buffers.memory import MemoryBuffer
from agent.codecs.encoding import encode_batch
from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.core.component import SinkContext
from agent.observe.stats import ComponentStats
from agent.sinks.console import ConsoleConfig, ConsoleSink


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        os.close(w)
        os.close(r)


def stdout_to(w: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.stdout made the write end of a pipe (in the test's body: pytest's capture sets it before each phase)."""
    monkeypatch.setattr(sys, "stdout", open(w, "w", closefd=False))


def start(tmp_path: object) -> tuple[ConsoleSink, MemoryBuffer, ComponentStats, asyncio.Task[None]]:
    stats = ComponentStats("con", "sink", "console")
    sink = ConsoleSink(ConsoleConfig(inputs=["x"]), BuildContext("con", tmp_path, tmp_path, stats))  # type: ignore[arg-type]
    inbox = MemoryBuffer(100, 1 << 24, "block", stats)
    return sink, inbox, stats, asyncio.create_task(sink.run(SinkContext("con", inbox, stats)))


async def test_the_loop_runs_on_while_nobody_reads_stdout(tmp_path: object, pipe: tuple[int, int],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = pipe
    stdout_to(w, monkeypatch)
    batch = Batch([{"n": i, "pad": "x" * 200} for i in range(2000)], Kind.LOGS, 500_000)  # far past a pipe's 64 KiB
    expected = encode_batch(batch, "json")
    ticks, seen_by_reader, got = 0, [-1], bytearray()
    go = threading.Event()

    def reader() -> None:  # starts reading when told, or after 5 s (so a frozen loop fails the test, not hangs it)
        go.wait(5)
        seen_by_reader[0] = ticks
        deadline = time.monotonic() + 10
        while len(got) < len(expected) and time.monotonic() < deadline:
            got.extend(os.read(r, 1 << 16))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    _, inbox, stats, run = start(tmp_path)
    await inbox.put(batch)
    for _ in range(20):  # with the write in the loop, the first sleep would not come back until the reader reads
        await asyncio.sleep(0.01)
        ticks += 1
    assert stats.sent_events == 0  # the write is still stuck
    go.set()
    await wait_for(lambda: stats.sent_events == 2000)
    inbox.close()
    await asyncio.wait_for(run, 5)
    thread.join(5)
    assert seen_by_reader[0] == 20 and bytes(got) == expected


async def test_a_closed_stdout_rejects_the_batch(tmp_path: object, pipe: tuple[int, int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = pipe
    stdout_to(w, monkeypatch)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, r)  # the pipe loses its only reader (writes fail with EPIPE); r stays open for the fixture
    os.close(devnull)
    _, inbox, stats, run = start(tmp_path)
    await inbox.put(Batch([{"n": 1}], Kind.LOGS, 10))
    await wait_for(lambda: stats.discarded["rejected"] == 1)
    inbox.close()
    await asyncio.wait_for(run, 5)
