"""The built-in throughput scenarios and what each measures.

Every scenario builds a pipeline from a config document, runs it in this
process (on the running loop, uvloop under ``agent bench``) and measures:
wall time, this process's CPU time (user + system from ``getrusage``
``RUSAGE_SELF`` deltas, so peers in other processes are not charged), and
the peak RSS of the process (``ru_maxrss``, a process-lifetime peak: when
several scenarios run in one process, a later one reports the peak so far).

A scenario that loses or duplicates events raises :class:`BenchError` with
the counts of each stage: a benchmark must not report a rate for data it
did not deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.bench.peers import HOST, LINE_BYTES, LoadGenerator, PeerError, Receiver
from agent.config.pipeline import Pipeline, load_texts
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.topology.running import Topology

ProgressFn = Callable[[int], None]  # told the events delivered so far, about ten times a second
STALL_TIMEOUT = 15.0  # seconds without progress before a scenario is declared stuck
TCP_CONNECTIONS = 4
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
            "peak_rss_mib": round(self.peak_rss_mib, 1),
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(16 * MIB):
            lines += chunk.count(b"\n")
    return lines


# -- generate scenarios -----------------------------------------------------------------------------


async def _generate(name: str, events: int, progress: ProgressFn | None, fmt: str, parse: bool,
                    to_file: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        out_path = Path(tmp) / "out.ndjson"
        sources = {"gen": {"type": "generate", "format": fmt, "count": events, "batch_size": 1000}}
        transforms = {"parse": {"type": "parse", "inputs": ["gen"], "codec": "json"}} if parse else {}
        upstream = "parse" if parse else "gen"
        sink = ({"type": "file", "inputs": [upstream], "path": str(out_path), "encoding": "json"} if to_file
                else {"type": "blackhole", "inputs": [upstream]})
        pipeline = _pipeline(name, tmp, sources, {"out": sink}, transforms)
        stats = StatsRegistry()
        sink_stats = _sink_stats(stats, pipeline)
        topology = Topology(pipeline, stats)
        meter = Meter()
        async with _progress(lambda: sink_stats.sent_events, progress):
            code = await topology.run()
        source = topology.nodes["gen"].stats
        result = meter.stop(name, events, source.received_bytes)
        problems = []
        if code != 0:
            problems.append(f"agent exit code {code}")
        if source.received_events != events or sink_stats.sent_events != events:
            problems.append("events missing")
        if to_file and (written := _count_lines(out_path)) != events:
            problems.append(f"{written} lines in the output file")
        if problems:
            raise BenchError(f"{name}: {'; '.join(problems)} (expected {events}; generated "
                             f"{source.received_events}, sink sent {sink_stats.sent_events})")
        return result


async def generate_to_blackhole(events: int, progress: ProgressFn | None = None) -> Result:
    """generate (docker lines) -> blackhole: the cost of the machinery itself."""
    return await _generate("generate_to_blackhole", events, progress, "docker", parse=False, to_file=False)


async def generate_parse_json_to_file(events: int, progress: ProgressFn | None = None) -> Result:
    """generate (json lines) -> parse json -> file (NDJSON)."""
    return await _generate("generate_parse_json_to_file", events, progress, "json", parse=True, to_file=True)


# -- TCP scenarios ----------------------------------------------------------------------------------


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


async def _receiver_count(receiver: Receiver, pending: asyncio.Task[Any]) -> str:
    """What the receiver counted, for an error message (it must not hide the original error)."""
    pending.cancel()
    await asyncio.wait([pending])
    if receiver.proc.returncode is not None:
        return ""  # it already told why it stopped
    try:
        return f"; receiver counted {(await receiver.final())['lines']} lines"
    except PeerError as exc:
        return f"; receiver: {exc}"


async def _tcp(name: str, events: int, progress: ProgressFn | None, to_tcp: bool) -> Result:
    async with contextlib.AsyncExitStack() as stack:
        receiver: Receiver | None = None
        if to_tcp:
            receiver = await Receiver.start(events)
            stack.push_async_callback(receiver.close)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-"))
        port = _free_port()
        source = {"type": "socket", "address": f"{HOST}:{port}"}
        sink: dict[str, Any] = {"type": "blackhole", "inputs": ["in"]}
        if receiver is not None:
            address = f"{HOST}:{receiver.port}"
            sink = {"type": "socket", "inputs": ["in"], "address": address, "encoding": "text"}
        pipeline = _pipeline(name, tmp, {"in": source}, {"out": sink})
        stats = StatsRegistry()
        source_stats, sink_stats = stats.get("in", "source", "socket"), _sink_stats(stats, pipeline)

        def describe() -> str:
            return (f"{name}: expected {events} lines; source received {source_stats.received_events}, "
                    f"sink sent {sink_stats.sent_events}")

        topology = Topology(pipeline, stats)
        agent = asyncio.create_task(topology.run(), name="bench-agent")
        stack.push_async_callback(_stop_agent, topology, agent)
        loadgen = await LoadGenerator.start(port, events, TCP_CONNECTIONS)
        stack.push_async_callback(loadgen.close)
        arrived: asyncio.Task[Any] | None = None  # the receiver's "all lines counted" report
        if receiver is not None:
            arrived = asyncio.create_task(receiver.read(wait_s=None), name="bench-receiver")
            stack.callback(arrived.cancel)
            done = arrived.done
        else:
            def done() -> bool:
                return sink_stats.sent_events >= events

        meter = Meter()
        loadgen.go()
        try:
            async with _progress(lambda: sink_stats.sent_events, progress):
                await _wait_until(done, lambda: source_stats.received_events + sink_stats.sent_events,
                                  agent, describe)
            result = meter.stop(name, events, events * LINE_BYTES)
            if arrived is not None:
                arrived.result()  # raises PeerError if the receiver exited instead of reporting
        except (BenchError, PeerError) as exc:
            counted = await _receiver_count(receiver, arrived) if receiver and arrived else ""
            raise BenchError(f"{exc}{counted}") from None
        await _stop_agent(topology, agent)
        sent = await loadgen.read(wait_s=15.0)
        if agent.result() != 0 or sent.get("sent_lines") != events:
            raise BenchError(f"{describe()}; agent exit code {agent.result()}, load generator: {sent}")
        if receiver is not None:
            final = await receiver.final()
            if final["lines"] != events or final["bytes"] != events * LINE_BYTES:
                raise BenchError(f"{describe()}; after the drain the receiver counted {final['lines']} "
                                 f"lines, {final['bytes']} bytes")
        elif sink_stats.sent_events != events:
            raise BenchError(f"{describe()} after the drain")
        return result


async def tcp_to_blackhole(events: int, progress: ProgressFn | None = None) -> Result:
    """Load generator -TCP-> socket source -> blackhole."""
    return await _tcp("tcp_to_blackhole", events, progress, to_tcp=False)


async def tcp_to_tcp(events: int, progress: ProgressFn | None = None) -> Result:
    """Load generator -TCP-> socket source -> socket sink -TCP-> counting receiver."""
    return await _tcp("tcp_to_tcp", events, progress, to_tcp=True)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("generate_to_blackhole", "generate docker json-file lines (batches of 1000) -> blackhole",
             2_000_000, generate_to_blackhole),
    Scenario("generate_parse_json_to_file", "generate JSON lines -> parse (json) -> file (NDJSON, temp dir)",
             1_000_000, generate_parse_json_to_file),
    Scenario("tcp_to_blackhole", f"{TCP_CONNECTIONS} TCP connections of {LINE_BYTES}-byte lines from "
             "another process -> socket source -> blackhole", 2_000_000, tcp_to_blackhole),
    Scenario("tcp_to_tcp", f"{TCP_CONNECTIONS} TCP connections of {LINE_BYTES}-byte lines -> socket source "
             "-> socket sink (text) -> counting receiver in another process", 2_000_000, tcp_to_tcp),
)}
