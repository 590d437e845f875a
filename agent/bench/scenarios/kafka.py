"""generate -> kafka: the sink's cost per record against a local tansu broker (started and stopped here).

The source emits 200-byte lines (a pool of 4,096 distinct ones) written as they are (``encoding: raw``) in lz4
record batches to a topic of :data:`KAFKA_PARTITIONS` partitions, acks all. The run counts as done when the
sink has every record acknowledged; the broker's end offsets must then sum to the events generated (none lost,
none twice). The broker runs in its own process: its CPU is reported beside the agent's, not charged to it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from agent.bench.peers.lines import build_lines
from agent.bench.peers.tansu import records_in, running_tansu
from agent.bench.scenarios.common import BenchError, Meter, ProgressFn, Result, _pipeline, _progress, _sink_stats
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology

KAFKA_RECORD_BYTES = 200
KAFKA_PARTITIONS = 4
KAFKA_TOPIC = "bench"


def record_lines(count: int = 4096, size: int = KAFKA_RECORD_BYTES) -> list[str]:
    """``count`` distinct printable lines of exactly ``size`` bytes."""
    return [line.decode() for line in build_lines(count, size + 1).split(b"\n")[:-1]]


async def generate_to_kafka(events: int, progress: ProgressFn | None = None) -> Result:
    """generate (200-byte lines) -> kafka (raw, lz4, acks all) -> tansu in another process."""
    name = "generate_to_kafka"
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp, running_tansu(Path(tmp)) as broker:
        broker.create_topic(KAFKA_TOPIC, KAFKA_PARTITIONS)
        sources = {"gen": {"type": "generate", "format": "text", "lines": record_lines(), "count": events,
                           "batch_size": 1000}}
        sink = {"type": "kafka", "inputs": ["gen"], "bootstrap_servers": [broker.bootstrap], "topic": KAFKA_TOPIC,
                "encoding": "raw", "compression": "lz4", "acks": "all"}
        pipeline = _pipeline(name, tmp, sources, {"out": sink})
        stats = StatsRegistry()
        sink_stats = _sink_stats(stats, pipeline)
        topology = Topology(pipeline, stats)
        broker_cpu = broker.cpu_seconds()
        meter = Meter()
        async with _progress(lambda: sink_stats.sent_events, progress):
            code = await topology.run()
        result = meter.stop(name, events, events * (KAFKA_RECORD_BYTES + 1))
        broker_cpu = broker.cpu_seconds() - broker_cpu
        held = await records_in(broker.bootstrap, KAFKA_TOPIC)
        problems = []
        if code != 0:
            problems.append(f"agent exit code {code}")
        if sink_stats.sent_events != events or held != events:
            problems.append(f"the sink had {sink_stats.sent_events} acknowledged, the broker holds {held}")
        if sink_stats.errors or sink_stats.discarded or sink_stats.retries:
            problems.append(f"errors {dict(sink_stats.errors)}, discarded {dict(sink_stats.discarded)}, "
                            f"retries {sink_stats.retries}")
        if problems:
            raise BenchError(f"{name}: {'; '.join(problems)} (expected {events})")
        result.extra = {"record_bytes": KAFKA_RECORD_BYTES, "partitions": KAFKA_PARTITIONS, "compression": "lz4",
                        "wire_bytes": sink_stats.sent_bytes, "broker_cpu_s": round(broker_cpu, 3),
                        "broker_cpu_s_per_million_events": round(broker_cpu / events * 1e6, 3)}
        return result
