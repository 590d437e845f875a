"""Conformance: a partial line that is a container's last output (issue 15.5), after Fluent Bit's flush timeouts.

Fluent Bit emits a pending Docker piece after ``docker_mode_flush`` (4 s) and a pending multiline record after
its ``flush_timeout`` (4 s). The tail source does the same with ``partial_flush_timeout`` (default 4 s): a CRI
``P`` line, or a Docker ``log`` without its final ``\\n``, that nothing completes within that time is emitted
marked ``"partial": true``. A part still held when the agent stops is not committed, so it is read again after
a restart: never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from components import GateSink
from helpers import pipeline, wait_for

from agent.observe.stats import StatsRegistry
from agent.sources.tail.source import TailConfig
from agent.topology.running import Topology

T = "2026-11-22T17:00:00.000000001Z"


def config(path: Path, flush_timeout: str) -> str:
    return f"""
sources:
  files: {{type: tail, include: ["{path}"], read_from: beginning, glob_interval: 100ms, poll_interval: 20ms,
           partial_flush_timeout: {flush_timeout}}}
sinks:
  got: {{type: test_gate, inputs: [files], open: true}}
"""


@asynccontextmanager
async def tailing(path: Path, tmp_path: Path, flush_timeout: str) -> AsyncIterator[list[Any]]:
    """Run a tail source on ``path`` into a gate sink; yields the list of events it received."""
    topo = Topology(pipeline(config(path, flush_timeout), tmp_path), StatsRegistry())
    task = asyncio.create_task(topo.run())
    await topo.ready.wait()
    try:
        yield GateSink.instances["got"].events
    finally:
        topo.request_stop()
        assert await asyncio.wait_for(task, 10) == 0


def test_the_default_flush_timeout_is_fluent_bits_4s() -> None:
    fields = {field.name: field.default for field in msgspec.structs.fields(TailConfig)}
    assert fields.get("partial_flush_timeout") == 4.0


CRI_LAST = f"{T} stdout F complete\n{T} stdout P the container's last words, no F\n".encode()
DOCKER_LAST = (orjson.dumps({"log": "complete\n", "stream": "stderr", "time": T}) + b"\n"
               + orjson.dumps({"log": "Password: ", "stream": "stderr", "time": T}) + b"\n")


@pytest.mark.parametrize(("content", "expected"), [
    pytest.param(CRI_LAST, [("complete", "stdout", False), ("the container's last words, no F", "stdout", True)],
                 id="a CRI P line"),
    pytest.param(DOCKER_LAST, [("complete", "stderr", False), ("Password: ", "stderr", True)],
                 id="a Docker piece without newline"),
])
async def test_a_part_that_is_the_last_output_is_emitted_marked_partial(
        content: bytes, expected: list[tuple[str, str, bool]], tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(content)
    async with tailing(path, tmp_path, "200ms") as events:
        await wait_for(lambda: len(events) == 2, 10)
    assert [(e["message"], e["stream"], e.get("partial", False)) for e in events] == expected


async def test_a_part_held_at_shutdown_is_read_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "cri.log"
    path.write_text(f"{T} stdout F before\n{T} stdout P first half, \n")
    async with tailing(path, tmp_path, "1h") as events:
        await wait_for(lambda: len(events) == 1, 10)
    assert [e["message"] for e in events] == ["before"]
    with path.open("a") as f:
        f.write(f"{T} stdout F second half\n")
    async with tailing(path, tmp_path, "1h") as events:
        await wait_for(lambda: len(events) == 1, 10)
    assert [(e["message"], e.get("partial", False)) for e in events] == [("first half, second half", False)]
