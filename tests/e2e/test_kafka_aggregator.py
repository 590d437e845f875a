"""Two aggregator agents in one consumer group: they share the partitions, and when one is SIGKILLed the other
takes its partitions over. Every record arrives at least once; the only duplicates are the killed member's
uncommitted tail, counted exactly against the offsets it had committed."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agent_process import AgentProcess
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from peers.kafka import Tansu

PARTITIONS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aggregator(kafka: Tansu, workdir: Path, name: str) -> AgentProcess:
    workdir.mkdir()
    port = free_port()
    (workdir / "agent.yaml").write_text(f"""
data_dir: {workdir}/data
api: {{address: "127.0.0.1:{port}"}}
sources:
  kafka:
    type: kafka
    bootstrap_servers: ["{kafka.bootstrap}"]
    group_id: aggregators
    topics: [edge]
    session_timeout: 3s                   # a member starved of CPU for 2.5 s on a busy host is not evicted
    heartbeat_interval: 0.5s
    commit_interval: 0.5s
    max_poll_records: 200
sinks:
  out: {{type: file, inputs: [kafka], path: "{workdir}/out.ndjson"}}
""")
    return AgentProcess(["run", "-c", str(workdir / "agent.yaml")], port, workdir, env={"AGENT_NAME": name})


def delivered(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.endswith(b"}")]


def received(agent: AgentProcess) -> float:
    return float(agent.components()["kafka"]["received_events"])


async def committed(bootstrap: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="aggregators", enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: (await consumer.committed(TopicPartition("edge", p))) or 0 for p in range(PARTITIONS)}
    finally:
        await consumer.stop()


class Edge:
    """Writes numbered records to every partition in turn, a few thousand a second, until stopped."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.sent = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            while not self.stop.is_set():
                pending = []
                for _ in range(100):
                    n = self.sent
                    pending.append(await producer.send("edge", json.dumps({"n": n}).encode(),
                                                       partition=n % PARTITIONS))
                    self.sent += 1
                await asyncio.gather(*pending)
                await asyncio.sleep(0.02)
        finally:
            await producer.stop()


async def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def last_assignment(agent: AgentProcess) -> set[int]:
    """The partitions the agent's last 'partitions assigned' log line names."""
    assigned = [r for r in agent.log_records() if r.get("msg", r.get("message")) == "partitions assigned"]
    return {int(p.rsplit("/", 1)[1]) for p in assigned[-1]["partitions"]}


def group_events(agent: AgentProcess) -> list[str]:
    """The agent's rebalances and failed commits or heartbeats, for a failure's message (read after its stop)."""
    lines = agent.stderr_path.read_text(errors="replace").splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [f"{r.get('time')} {r.get('message')} {r.get('partitions', '')}{r.get('error', '')}" for r in records
            if any(word in str(r.get("message")) for word in ("partitions", "commit failed", "OffsetCommit", "Heartbeat", "rebalanc"))]


async def test_the_survivor_takes_over_and_duplicates_are_only_the_uncommitted_tail(
        kafka: Tansu, tmp_path: Path) -> None:
    kafka.create_topic("edge", partitions=PARTITIONS)
    a = aggregator(kafka, tmp_path / "a", "a")
    b = aggregator(kafka, tmp_path / "b", "b")
    edge = Edge(kafka.bootstrap)
    producing = asyncio.create_task(edge.run())
    try:
        a.wait_ready()
        b.wait_ready()
        await wait(lambda: edge.sent > 0 and received(a) > 0 and received(b) > 0, 20, "both members to consume")
        before = (received(a), received(b))
        await wait(lambda: received(a) > before[0] + 1000 and received(b) > before[1] + 1000, 20, "both to go on")
        a_partitions = last_assignment(a)
        assert len(a_partitions) == PARTITIONS // 2 and len(last_assignment(b)) == PARTITIONS // 2
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        await asyncio.sleep(0.3)  # a commit A had sent lands (its socket's last bytes)
        at_kill = await committed(kafka.bootstrap)  # before the survivor notices (session_timeout: 3s)
        await asyncio.sleep(3)
        edge.stop.set()
        await producing
        total = edge.sent
        await wait(lambda: len({e["n"] for e in delivered(tmp_path / "a" / "out.ndjson")}
                               | {e["n"] for e in delivered(tmp_path / "b" / "out.ndjson")}) >= total,
                   30, "every record")
        assert last_assignment(b) == set(range(PARTITIONS))
        b.signal(signal.SIGTERM)
        assert b.wait(15) == 0
    finally:
        edge.stop.set()
        if not producing.done():
            await producing
        a.stop()
        b.stop()
    from_a = delivered(tmp_path / "a" / "out.ndjson")
    from_b = delivered(tmp_path / "b" / "out.ndjson")
    counts = Counter(e["n"] for e in from_a + from_b)
    assert set(counts) == set(range(total))  # at least once
    duplicates = {n for n, c in counts.items() if c > 1}
    assert all(c <= 2 for c in counts.values())
    # A's uncommitted tail: what it delivered on its partitions at or past the offsets it had committed
    tail = {e["n"] for e in from_a
            if e["kafka"]["partition"] in a_partitions and e["kafka"]["offset"] >= at_kill[e["kafka"]["partition"]]}
    assert duplicates == tail, (f"{len(duplicates)} duplicates, {len(tail)} in the tail: not in the tail "
                                f"{sorted(duplicates - tail)[:10]}, not repeated {sorted(tail - duplicates)[:10]}; "
                                f"committed at the kill {at_kill}; group events: {group_events(a)} {group_events(b)}")
    for event in from_a + from_b:
        assert event["kafka"]["offset"] == event["n"] // PARTITIONS  # (each record is where the edge put it)
    assert await committed(kafka.bootstrap) == {p: len([n for n in range(total) if n % PARTITIONS == p])
                                                for p in range(PARTITIONS)}
