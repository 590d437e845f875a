"""The file_to_tcp scenario: another process appends to a file -> tail -> socket sink -> an order-checking receiver."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

from agent.bench.peers import FileWriter, PeerError, Receiver
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
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology


async def file_to_tcp(events: int, progress: ProgressFn | None = None) -> Result:
    """Another process appends numbered lines to a file -> tail (raw) -> socket sink (text) -> receiver."""
    name = "file_to_tcp"
    async with contextlib.AsyncExitStack() as stack:
        receiver = await Receiver.start(events, check_order=True)
        stack.push_async_callback(receiver.close)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-"))
        path = Path(tmp) / "app.log"
        path.touch()  # there at the first scan: no wait for the next glob
        writer = await FileWriter.start(str(path), events)
        stack.push_async_callback(writer.close)
        source = {"type": "tail", "include": [str(path)], "format": "raw", "read_from": "beginning"}
        sink = {"type": "socket", "inputs": ["in"], "address": f"{HOST}:{receiver.port}", "encoding": "text"}
        pipeline = _pipeline(name, tmp, {"in": source}, {"out": sink})
        stats = StatsRegistry()
        source_stats, sink_stats = stats.get("in", "source", "tail"), _sink_stats(stats, pipeline)

        def describe() -> str:
            return (f"{name}: expected {events} lines; source received {source_stats.received_events}, "
                    f"sink sent {sink_stats.sent_events}")

        def moved() -> int:
            return source_stats.received_events + sink_stats.sent_events

        topology = Topology(pipeline, stats)
        agent = asyncio.create_task(topology.run(), name="bench-agent")
        stack.push_async_callback(_stop_agent, topology, agent)
        await topology.ready.wait()
        await asyncio.sleep(0.05)  # the source's first scan opens the (empty) file
        arrived = asyncio.create_task(receiver.read(wait_s=None), name="bench-receiver")
        stack.callback(arrived.cancel)
        meter = Meter()
        writer.go()
        try:
            async with _progress(lambda: sink_stats.sent_events, progress):
                await _wait_until(arrived.done, moved, agent, describe)
            result = meter.stop(name, events, events * LINE_BYTES)
            arrived.result()  # raises PeerError if the receiver exited instead of reporting
        except (BenchError, PeerError) as exc:
            raise BenchError(f"{exc}{await _receiver_count(receiver, arrived)}") from None
        await _stop_agent(topology, agent)
        written = await writer.read(wait_s=15.0)
        if agent.result() != 0 or written.get("written_lines") != events:
            raise BenchError(f"{describe()}; agent exit code {agent.result()}, file writer: {written}")
        final = await receiver.final()
        if (final["lines"], final["bytes"], final["out_of_order"], final["partial_line_bytes"]) != (
                events, events * LINE_BYTES, 0, 0):
            raise BenchError(f"{describe()}; after the drain the receiver counted {final['lines']} lines, "
                             f"{final['bytes']} bytes, {final['out_of_order']} lines out of order, "
                             f"{final['partial_line_bytes']} bytes of an unterminated line")
        result.extra = {"writer_wall_s": written["wall_s"]}
        return result

