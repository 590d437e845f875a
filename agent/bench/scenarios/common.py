"""What every scenario shares: its result and how it is measured, its pipeline, progress, and the agent's task."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from agent.bench.peers import BulkReceiver, PeerError, Receiver
from agent.config.pipeline import Pipeline, load_texts
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.topology.running import Topology

ProgressFn = Callable[[int], None]  # told the events delivered so far, about ten times a second
STALL_TIMEOUT = 15.0  # seconds without progress before a scenario is declared stuck
MIB = 1024 * 1024


class BenchError(Exception):
    """A scenario failed: the agent exited badly, stalled, or lost or duplicated events."""


@dataclass(slots=True)
class Result:
    """The figures of one scenario run."""

    scenario: str
    events: int
    bytes: int  # input line bytes, newlines included
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    peak_rss_mib: float
    extra: dict[str, Any] = field(default_factory=dict)  # scenario-specific figures, flat

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s

    @property
    def mib_per_s(self) -> float:
        return self.bytes / MIB / self.wall_s

    @property
    def cpu_s_per_million_events(self) -> float:
        return self.cpu_s / self.events * 1e6

    def to_dict(self) -> dict[str, Any]:
        """The figures as a flat JSON-ready mapping."""
        return {
            "scenario": self.scenario, "events": self.events, "bytes": self.bytes,
            "wall_s": round(self.wall_s, 4), "events_per_s": round(self.events_per_s),
            "mib_per_s": round(self.mib_per_s, 2), "cpu_s": round(self.cpu_s, 3),
            "cpu_user_s": round(self.cpu_user_s, 3), "cpu_sys_s": round(self.cpu_sys_s, 3),
            "cpu_s_per_million_events": round(self.cpu_s_per_million_events, 3),
            "peak_rss_mib": round(self.peak_rss_mib, 1), **self.extra,
        }


class Meter:
    """Wall clock and this process's CPU time from construction to :meth:`stop`."""

    def __init__(self) -> None:
        self._ru = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()

    def stop(self, scenario: str, events: int, nbytes: int) -> Result:
        """Freeze the deltas into a :class:`Result`."""
        wall = time.perf_counter() - self._t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        rss_kib = ru.ru_maxrss if sys.platform != "darwin" else ru.ru_maxrss / 1024
        return Result(scenario, events, nbytes, wall, ru.ru_utime - self._ru.ru_utime,
                      ru.ru_stime - self._ru.ru_stime, rss_kib / 1024)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named scenario: ``run(events, progress)`` measures one run of it."""

    name: str
    description: str
    default_events: int
    run: Callable[[int, ProgressFn | None], Coroutine[Any, Any, Result]]


# -- helpers ----------------------------------------------------------------------------------------


def _pipeline(name: str, data_dir: str, sources: dict[str, Any], sinks: dict[str, Any],
              transforms: dict[str, Any] | None = None) -> Pipeline:
    doc = {"data_dir": data_dir, "api": {"enabled": False}, "shutdown_timeout": "10s",
           "sources": sources, "transforms": transforms or {}, "sinks": sinks}
    return load_texts([(json.dumps(doc), f"<bench {name}>")])


def _sink_stats(stats: StatsRegistry, pipeline: Pipeline, sink_id: str = "out") -> ComponentStats:
    """The sink's counters, created before the topology so progress can read them from the start."""
    return stats.get(sink_id, "sink", pipeline.components[sink_id].type)


@contextlib.asynccontextmanager
async def _progress(count: Callable[[], int], progress: ProgressFn | None) -> AsyncIterator[None]:
    """Report ``count()`` to ``progress`` in the background while the body runs."""
    if progress is None:
        yield
        return

    async def tick() -> None:
        while True:
            progress(count())
            await asyncio.sleep(0.1)

    task = asyncio.create_task(tick(), name="bench-progress")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        progress(count())


async def _wait_until(done: Callable[[], bool], count: Callable[[], int], agent: asyncio.Task[int],
                      describe: Callable[[], str]) -> None:
    """Poll until ``done()``; BenchError if the agent exits or ``count()`` stops moving."""
    last, last_change = -1, time.monotonic()
    while not done():
        if agent.done():
            why = "cancelled" if agent.cancelled() else agent.exception() or f"exit code {agent.result()}"
            raise BenchError(f"the agent stopped early ({why}): {describe()}")
        now, current = time.monotonic(), count()
        if current != last:
            last, last_change = current, now
        elif now - last_change > STALL_TIMEOUT:
            raise BenchError(f"no progress for {STALL_TIMEOUT:.0f}s, lines are missing: {describe()}")
        await asyncio.sleep(0.005)


async def _stop_agent(topology: Topology, agent: asyncio.Task[int]) -> None:
    if not agent.done():
        topology.request_stop()
        await asyncio.wait([agent], timeout=15.0)
    if not agent.done():
        agent.cancel()
        await asyncio.wait([agent])


async def _receiver_count(receiver: Receiver | BulkReceiver, pending: asyncio.Task[Any], what: str = "lines") -> str:
    """What the receiver counted, for an error message (it must not hide the original error)."""
    pending.cancel()
    await asyncio.wait([pending])
    if receiver.proc.returncode is not None:
        return ""  # it already told why it stopped
    try:
        return f"; receiver counted {(await receiver.final())[what]} {what}"
    except PeerError as exc:
        return f"; receiver: {exc}"
