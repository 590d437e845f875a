"""memory_limit: sources pause while the pipeline's buffers hold their share of it, and resume as they drain."""

from __future__ import annotations

import asyncio
from pathlib import Path

from components import GateSink
from helpers import pipeline, wait_for
from prometheus_client import generate_latest

from agent.observe.metrics import AgentCollector, build_registry
from agent.observe.stats import StatsRegistry
from agent.topology.memory import MIN_BUDGET, MemoryGate, rss_bytes
from agent.topology.running import Topology

TEXT = """
sources:
  gen: {type: generate, format: docker, count: 100000, batch_size: 1000}
sinks:
  slow: {type: test_gate, inputs: [gen], buffer: {max_bytes: 32MiB}}  # more than the budgets tested here
"""


async def buffered_peak(topo: Topology, seconds: float = 0.5) -> int:
    peak = 0
    for _ in range(int(seconds / 0.01)):
        await asyncio.sleep(0.01)
        peak = max(peak, sum(b.usage().bytes for b in topo._inboxes()))
    return peak


async def test_sources_pause_at_the_buffer_budget_and_resume_as_it_drains(tmp_path: Path) -> None:
    limit = rss_bytes() + 2 * MIN_BUDGET  # half of what is left above the baseline: one MIN_BUDGET for buffers
    topo = Topology(pipeline(f"memory_limit: {limit}\n" + TEXT, tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    assert topo.memory is not None and topo.memory.budget == MIN_BUDGET
    await wait_for(lambda: topo.memory is not None and topo.memory.paused)
    peak = await buffered_peak(topo)
    batch_bytes = 1000 * 450  # one batch may be on its way when the budget is reached
    assert MIN_BUDGET * 0.5 < peak <= MIN_BUDGET + batch_bytes
    GateSink.instances["slow"].gate.set()
    assert await asyncio.wait_for(run, 20) == 0
    assert len(GateSink.instances["slow"].events) == 100_000  # paused, never dropped
    assert topo.memory.paused_seconds > 0.4 and not topo.memory.paused
    page = generate_latest(build_registry(AgentCollector(topo.stats, dict, {}, topo.memory.usage))).decode()
    values = dict(line.rsplit(" ", 1) for line in page.splitlines() if line.startswith("agent_memory_"))
    assert float(values["agent_memory_limit_bytes"]) == limit
    assert float(values["agent_memory_paused_seconds_total"]) == topo.memory.paused_seconds


async def test_without_a_limit_the_same_pipeline_buffers_far_past_that_budget(tmp_path: Path) -> None:
    topo = Topology(pipeline(TEXT, tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    assert topo.memory is None
    assert await buffered_peak(topo) > 3 * MIN_BUDGET  # what the gate above prevents
    GateSink.instances["slow"].gate.set()
    assert await asyncio.wait_for(run, 20) == 0


def test_the_budget_is_half_of_what_the_limit_leaves_above_the_baseline() -> None:
    gate = MemoryGate(300 * 1024 * 1024, list)
    gate.start(baseline=100 * 1024 * 1024)
    assert gate.budget == 100 * 1024 * 1024
    gate.start(baseline=299 * 1024 * 1024)  # a limit below what the agent needs: a small budget, and a warning
    assert gate.budget == MIN_BUDGET
