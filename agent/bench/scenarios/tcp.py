"""The tcp_to_* scenarios: a load generator in another process -TCP-> socket source -> a sink."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from typing import Any

from agent.bench.peers import BulkReceiver, LoadGenerator, PeerError, Receiver
from agent.bench.peers.lines import HOST, LINE_BYTES
from agent.bench.scenarios.common import (
    BenchError,
    Meter,
    ProgressFn,
    Result,
    _pipeline,
    _progress,
    _receiver_count,
    _sink_stats,
    _stop_agent,
    _wait_until,
)
from agent.bench.scenarios.elasticsearch import ES_CONCURRENCY
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology

TCP_CONNECTIONS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


async def _tcp(name: str, events: int, progress: ProgressFn | None, to: str) -> Result:
    """The harness's tcp_to_* scenarios; ``to`` is blackhole, tcp (a receiver) or http (the bench's HTTP peer)."""
    async with contextlib.AsyncExitStack() as stack:
        receiver: Receiver | BulkReceiver | None = None
        if to == "tcp":
            receiver = await Receiver.start(events)
        elif to == "http":
            receiver = await BulkReceiver.start(events)
        if receiver is not None:
            stack.push_async_callback(receiver.close)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-"))
        port = _free_port()
        source = {"type": "socket", "address": f"{HOST}:{port}"}
        sink: dict[str, Any] = {"type": "blackhole", "inputs": ["in"]}
        if to == "tcp":
            assert receiver is not None
            sink = {"type": "socket", "inputs": ["in"], "address": f"{HOST}:{receiver.port}", "encoding": "text"}
        elif to == "http":
            assert receiver is not None
            sink = {"type": "http", "inputs": ["in"], "uri": f"http://{HOST}:{receiver.port}/ingest",
                    "encoding": "text", "batch": {"max_events": 1000, "timeout": "100ms"},
                    "request": {"concurrency": ES_CONCURRENCY}, "healthcheck": False}
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
        if isinstance(receiver, Receiver):
            final = await receiver.final()
            if final["lines"] != events or final["bytes"] != events * LINE_BYTES:
                raise BenchError(f"{describe()}; after the drain the receiver counted {final['lines']} "
                                 f"lines, {final['bytes']} bytes")
        elif isinstance(receiver, BulkReceiver):
            final = await receiver.final()
            if final["documents"] != events or final["body_bytes"] != events * LINE_BYTES:
                raise BenchError(f"{describe()}; after the drain the HTTP peer counted {final['documents']} "
                                 f"lines, {final['body_bytes']} bytes")
        elif sink_stats.sent_events != events:
            raise BenchError(f"{describe()} after the drain")
        return result


async def tcp_to_blackhole(events: int, progress: ProgressFn | None = None) -> Result:
    """Load generator -TCP-> socket source -> blackhole."""
    return await _tcp("tcp_to_blackhole", events, progress, to="blackhole")


async def tcp_to_tcp(events: int, progress: ProgressFn | None = None) -> Result:
    """Load generator -TCP-> socket source -> socket sink -TCP-> counting receiver."""
    return await _tcp("tcp_to_tcp", events, progress, to="tcp")


async def tcp_to_http(events: int, progress: ProgressFn | None = None) -> Result:
    """Load generator -TCP-> socket source -> http sink (text lines) -HTTP-> counting peer."""
    return await _tcp("tcp_to_http", events, progress, to="http")
