"""The generate scenarios: the cost of the machinery itself, with nothing outside the process."""

from __future__ import annotations

import tempfile
from pathlib import Path

from agent.bench.scenarios.common import MIB, BenchError, Meter, ProgressFn, Result, _pipeline, _progress, _sink_stats
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology


def _count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(16 * MIB):
            lines += chunk.count(b"\n")
    return lines


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
