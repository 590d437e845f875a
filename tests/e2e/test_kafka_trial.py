"""Bugs a hostile trial of the Kafka edge and aggregator found (issue 13), each a strict xfail until fixed:
remove the marker with the fix."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_process import AgentProcess, metric_value
from aiokafka import AIOKafkaProducer
from peers.kafka import Tansu

AGENT = [sys.executable, "-m", "agent"]


def validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "pipeline.yaml"
    config.write_text(text)
    return subprocess.run([*AGENT, "validate", "-c", str(config)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=30)


def test_validate_rejects_a_source_topic_kafka_would_refuse(tmp_path: Path) -> None:
    result = validate(tmp_path, """\
sources:
  edge:
    type: kafka
    bootstrap_servers: ["127.0.0.1:9092"]
    group_id: aggregators
    topics: ["container logs!", container-logs]
sinks:
  out: {type: blackhole, inputs: [edge]}
""")
    assert result.returncode == 78, result.stdout
    assert "sources.edge" in result.stderr and "container logs!" in result.stderr


@pytest.mark.parametrize("server", ["127.0.0.1:99999", "127.0.0.1:0", "http://kafka:9092"])
def test_validate_rejects_a_bootstrap_server_kafka_cannot_use(tmp_path: Path, server: str) -> None:
    result = validate(tmp_path, f"""\
sources:
  gen: {{type: generate, count: 1}}
sinks:
  out:
    type: kafka
    inputs: [gen]
    bootstrap_servers: ["{server}"]
    topic: logs
""")
    assert result.returncode == 78, result.stdout
    assert "bootstrap_servers" in result.stderr and server in result.stderr


def test_validate_rejects_an_empty_sasl_password(tmp_path: Path) -> None:
    result = validate(tmp_path, """\
sources:
  gen: {type: generate, count: 1}
sinks:
  out:
    type: kafka
    inputs: [gen]
    bootstrap_servers: ["127.0.0.1:9092"]
    topic: logs
    sasl: {mechanism: SCRAM-SHA-512, username: edge, password: ""}
""")
    assert result.returncode == 78, result.stdout
    assert "sinks.out.sasl" in result.stderr and "password" in result.stderr


async def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for n in range(count):
            await producer.send(topic, b'{"n": %d}' % n, partition=0)
        await producer.flush()
    finally:
        await producer.stop()


async def test_lag_counts_what_the_edge_writes_while_the_partitions_are_paused(
        kafka: Tansu, tmp_path: Path, free_port: int) -> None:
    kafka.create_topic("edge", partitions=1)
    (tmp_path / "agent.yaml").write_text(f"""
data_dir: {tmp_path}/data
api: {{address: "127.0.0.1:{free_port}"}}
sources:
  edge:
    type: kafka
    bootstrap_servers: ["{kafka.bootstrap}"]
    group_id: aggregators
    topics: [edge]
    auto_offset_reset: earliest
    max_poll_records: 50
sinks:
  es:                                         # nothing listens there: the sink holds, its buffer fills
    type: elasticsearch
    inputs: [edge]
    endpoints: ["http://127.0.0.1:9"]
    buffer: {{max_events: 50}}
""")
    agent = AgentProcess(["run", "-c", str(tmp_path / "agent.yaml")], free_port, tmp_path)
    try:
        agent.wait_ready()
        await produce(kafka.bootstrap, "edge", 20000)
        agent.wait_until(lambda: (metric_value(agent.get("/metrics")[1].decode(), "agent_kafka_partitions_paused")
                                  or 0) > 0, 20, "the partition paused")
        await asyncio.sleep(1)
        before = metric_value(agent.get("/metrics")[1].decode(), "agent_kafka_lag_records") or 0.0
        await produce(kafka.bootstrap, "edge", 1000)  # written while paused: waiting in the broker
        await produce(kafka.bootstrap, "edge", 1)  # tansu's ListOffsets answers the base offset of the last batch
        deadline = time.monotonic() + 8
        lag = before
        while time.monotonic() < deadline and lag < before + 1000:
            lag = metric_value(agent.get("/metrics")[1].decode(), "agent_kafka_lag_records") or 0.0
            await asyncio.sleep(0.2)
        assert lag >= before + 1000, f"lag {lag}, {before} before 1000 more records were written"
    finally:
        agent.stop()
