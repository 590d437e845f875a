"""The tail source with checkpoint compactions every few commits, run in the background while it reads."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from components import GateSink
from helpers import pipeline, wait_for

from agent.observe.stats import StatsRegistry
from agent.sources.tail import checkpoint, source
from agent.topology.running import Topology

FILES = 20


def config(tmp_path: Path) -> str:
    return f"""
sources:
  files: {{type: tail, include: ["{tmp_path}/*.log"], format: raw, read_from: beginning, read_bytes: 1KiB,
           glob_interval: 100ms, poll_interval: 20ms}}
sinks:
  got: {{type: test_gate, inputs: [files], open: true}}
"""


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[None]:
    topo = Topology(pipeline(config(tmp_path), tmp_path), StatsRegistry())
    task = asyncio.create_task(topo.run())
    try:
        await topo.ready.wait()
        yield
    finally:
        topo.request_stop()
        assert await asyncio.wait_for(task, 10) == 0


def delivered() -> list[str]:
    return sorted(e["message"] for e in GateSink.instances["got"].events)  # type: ignore[misc]


def append(tmp_path: Path, lines: range) -> list[str]:
    for n in range(FILES):
        with (tmp_path / f"f{n:02d}.log").open("a") as f:
            f.write("".join(f"file {n:02d} line {i:04d}\n" for i in lines))
    return [f"file {n:02d} line {i:04d}" for n in range(FILES) for i in lines]


async def test_tail_with_compactions_in_the_background_delivers_everything_once_across_restarts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "CheckpointStore", functools.partial(checkpoint.CheckpointStore, compact_bytes=300))
    expected: list[str] = []
    async with running(tmp_path):
        for wave in range(5):  # commits keep coming while compactions run
            expected += append(tmp_path, range(wave * 100, wave * 100 + 100))
            total = len(expected)
            await wait_for(lambda: len(delivered()) >= total, 10)  # noqa: B023 (awaited here, in the loop)
    assert delivered() == sorted(expected)
    state = tmp_path / "data" / "tail" / "files"
    generations = [int(p.name.split(".")[1]) for p in state.glob("snapshot.*[0-9]")]
    assert max(generations) > 3  # compactions ran while it read, not only at start-up and shutdown
    expected = append(tmp_path, range(500, 600))
    async with running(tmp_path):
        await wait_for(lambda: len(delivered()) >= len(expected), 10)
        await asyncio.sleep(0.2)  # anything more (a repeat) would arrive now
    assert delivered() == sorted(expected)  # resumed where it was, nothing again
