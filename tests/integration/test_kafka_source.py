"""The `kafka` source against a real broker (tansu): every record, acknowledged prefixes only, poison records,
backpressure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from components import GateSink
from helpers import Deliver, pipeline, wait_for
from peers.kafka import Tansu

from agent.config.registry import BuildContext
from agent.core.ack import AckStatus
from agent.core.batch import Batch
from agent.core.component import SourceContext
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sources.kafka import KafkaSource, KafkaSourceConfig
from agent.topology.running import Topology

pytestmark = pytest.mark.integration

GROUP_TIMING = "session_timeout: 2s, heartbeat_interval: 0.5s"  # tansu holds a join for half a session


async def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int, key: bytes | None = None) -> None:
    """``values[i]`` to partition ``i % partitions``, in order within each partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key, partition=i % partitions)
                   for i, value in enumerate(values)]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    """The group's committed offset of each partition, as the broker has it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


def records(n: int) -> list[bytes]:
    return [orjson.dumps({"n": i, "message": f"record {i:06d} " + "x" * 150}) for i in range(n)]


async def test_every_record_of_every_partition_arrives_and_is_committed(kafka: Tansu, tmp_path: Path) -> None:
    kafka.create_topic("logs", partitions=4)
    await produce(kafka.bootstrap, "logs", records(4000), 4, key=b"pod-a")
    topo = Topology(pipeline(f"""
sources:
  k: {{type: kafka, bootstrap_servers: ["{kafka.bootstrap}"], group_id: agg, topics: [logs], {GROUP_TIMING},
      max_poll_records: 300}}
sinks:
  got: {{type: test_gate, inputs: [k], open: true}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    await wait_for(lambda: len(GateSink.instances["got"].events) >= 4000, timeout=20)
    await wait_for(lambda: topo.nodes["k"].stats.gauge_values()["uncommitted_records"] == 0)
    gauges = topo.nodes["k"].stats.gauge_values()
    assert gauges["partitions_assigned"] == 4 and gauges["lag_records"] == 0  # all committed
    topo.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    events: list[dict[str, Any]] = GateSink.instances["got"].events  # type: ignore[assignment]
    assert sorted(e["n"] for e in events) == list(range(4000))
    for event in events:
        meta = event["kafka"]
        assert meta["topic"] == "logs" and meta["partition"] == event["n"] % 4 and meta["key"] == "pod-a"
        assert meta["offset"] == event["n"] // 4 and meta["timestamp"] > 0
    for partition in range(4):  # in order within a partition
        offsets = [e["kafka"]["offset"] for e in events if e["kafka"]["partition"] == partition]
        assert offsets == list(range(1000))
    assert await committed(kafka.bootstrap, "agg", "logs", 4) == {p: 1000 for p in range(4)}


class Collect:
    """A source output that keeps the batches; the test finalizes them when and how it likes."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def send(self, batch: Batch) -> None:
        self.batches.append(batch)


def source(kafka: Tansu, tmp_path: Path, group: str, topic: str, **options: Any) -> tuple[KafkaSource, ComponentStats]:
    stats = ComponentStats("k", "source", "kafka")
    options = {"commit_interval": 0.1, "session_timeout": 2.0, "heartbeat_interval": 0.5, **options}
    config = KafkaSourceConfig(bootstrap_servers=[kafka.bootstrap], group_id=group, topics=[topic], **options)
    return KafkaSource(config, BuildContext("k", tmp_path, tmp_path, stats)), stats


async def test_only_the_acknowledged_prefix_is_committed(kafka: Tansu, tmp_path: Path) -> None:
    kafka.create_topic("ooo", partitions=1)
    await produce(kafka.bootstrap, "ooo", records(100), 1)
    src, stats = source(kafka, tmp_path, "ooo-group", "ooo", max_poll_records=10)
    out, stop = Collect(), asyncio.Event()
    run = asyncio.create_task(src.run(SourceContext("k", out, stop, tmp_path, stats, True)))
    await wait_for(lambda: sum(len(b) for b in out.batches) == 100, timeout=15)
    batches = out.batches
    assert len(batches) >= 3 and [len(b) for b in batches[:2]] == [10, 10]

    async def broker_has() -> int | None:
        await src.commit()
        return (await committed(kafka.bootstrap, "ooo-group", "ooo", 1))[0]

    for batch in batches[2:]:  # a sink that finishes the later batches first
        batch.finalize(AckStatus.DELIVERED)
    assert await broker_has() is None
    batches[1].finalize(AckStatus.DELIVERED)
    assert await broker_has() is None
    batches[0].finalize(AckStatus.DELIVERED)
    assert await broker_has() == 100
    commits = sum(n for (name, _), n in stats.counters.items() if name == "commits")
    assert commits <= 3  # positions are committed in batches, not per record or per batch
    stop.set()
    await asyncio.wait_for(run, 10)


async def test_an_errored_batch_stops_its_partition_position(kafka: Tansu, tmp_path: Path) -> None:
    kafka.create_topic("err", partitions=1)
    await produce(kafka.bootstrap, "err", records(30), 1)
    src, stats = source(kafka, tmp_path, "err-group", "err", max_poll_records=10)
    out, stop = Collect(), asyncio.Event()
    run = asyncio.create_task(src.run(SourceContext("k", out, stop, tmp_path, stats, True)))
    await wait_for(lambda: sum(len(b) for b in out.batches) == 30, timeout=15)
    first, *rest = out.batches
    first.finalize(AckStatus.DELIVERED)
    rest[0].finalize(AckStatus.ERRORED)
    for batch in rest[1:]:
        batch.finalize(AckStatus.DELIVERED)
    stop.set()
    await asyncio.wait_for(run, 10)
    assert (await committed(kafka.bootstrap, "err-group", "err", 1))[0] == len(first)


async def test_a_poison_record_passes_raw_and_its_partition_goes_on(kafka: Tansu, tmp_path: Path) -> None:
    kafka.create_topic("poison", partitions=1)
    values = [b'{"n": 0}', b"\xff\xfe not json {", b'["an", "array"]', b'{"n": 3}']
    await produce(kafka.bootstrap, "poison", values, 1)
    topo = Topology(pipeline(f"""
sources:
  k: {{type: kafka, bootstrap_servers: ["{kafka.bootstrap}"], group_id: p, topics: [poison], {GROUP_TIMING}}}
sinks:
  got: {{type: test_gate, inputs: [k], open: true}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    await wait_for(lambda: len(GateSink.instances["got"].events) >= 4, timeout=15)
    topo.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    events: list[dict[str, Any]] = GateSink.instances["got"].events  # type: ignore[assignment]
    assert [e.get("n") for e in events] == [0, None, None, 3]
    assert events[1]["message"] == "\ufffd\ufffd not json {" and events[1]["parse_error"] == "not a JSON object"
    assert events[2]["message"] == '["an", "array"]' and events[2]["parse_error"] == "not a JSON object"
    assert events[1]["kafka"]["offset"] == 1
    assert topo.nodes["k"].stats.errors[("parse_failed", "receiving")] == 2
    assert await committed(kafka.bootstrap, "p", "poison", 1) == {0: 4}


async def test_a_stalled_sink_pauses_the_partitions_with_memory_bounded(kafka: Tansu, tmp_path: Path) -> None:
    kafka.create_topic("slow", partitions=2)
    total = 20_000
    await produce(kafka.bootstrap, "slow", records(total), 2)
    topo = Topology(pipeline(f"""
sources:
  k: {{type: kafka, bootstrap_servers: ["{kafka.bootstrap}"], group_id: s, topics: [slow], {GROUP_TIMING},
      max_poll_records: 500, max_partition_fetch_bytes: 64KiB}}
sinks:
  got: {{type: test_gate, inputs: [k], buffer: {{max_events: 1000}}}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    stats = topo.nodes["k"].stats
    await wait_for(lambda: stats.gauge_values().get("partitions_paused") == 2, timeout=15)
    await asyncio.sleep(1.5)  # several keep-alive polls while paused
    held = stats.received_events
    # the sink's buffer, the batch the sink holds and the one the source holds: nothing more taken from the broker
    assert held <= 1000 + 500 + 500
    await asyncio.sleep(1.0)
    assert stats.received_events == held
    # nothing committed (the gate holds): the lag is every record past the group's offsets, the held ones too
    assert total - held < stats.gauge_values()["lag_records"] <= total
    assert stats.gauge_values()["partitions_paused"] == 2
    GateSink.instances["got"].gate.set()
    await wait_for(lambda: len(GateSink.instances["got"].events) >= total, timeout=20)
    assert stats.gauge_values()["partitions_paused"] == 0
    topo.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    got: list[dict[str, Any]] = GateSink.instances["got"].events  # type: ignore[assignment]
    assert sorted(e["n"] for e in got) == list(range(total))
    assert await committed(kafka.bootstrap, "s", "slow", 2) == {0: total // 2, 1: total // 2}


async def test_a_rebalance_commits_the_acknowledged_and_leaves_the_rest_to_the_new_owner(
        kafka: Tansu, tmp_path: Path) -> None:
    kafka.create_topic("shared", partitions=2)
    await produce(kafka.bootstrap, "shared", records(200), 2)
    # commits only when partitions are revoked (and at stop)
    first, first_stats = source(kafka, tmp_path, "two", "shared", max_poll_records=20, rebalance_drain=0.2,
                                commit_interval=60.0)
    first_out, first_stop = Collect(), asyncio.Event()
    first_run = asyncio.create_task(first.run(SourceContext("k", first_out, first_stop, tmp_path, first_stats, True)))
    await wait_for(lambda: sum(len(b) for b in first_out.batches) == 200, timeout=15)
    old = list(first_out.batches)
    heads: dict[int, int] = {}
    for batch in old:  # the first batch of each partition delivered, the others still in flight
        partition = batch.events[0]["kafka"]["partition"]
        if partition not in heads:
            heads[partition] = batch.events[-1]["kafka"]["offset"] + 1
            batch.finalize(AckStatus.DELIVERED)
    second, second_stats = source(kafka, tmp_path, "two", "shared", max_poll_records=20)
    second_out, second_stop = Collect(), asyncio.Event()
    second_run = asyncio.create_task(
        second.run(SourceContext("k", second_out, second_stop, tmp_path, second_stats, True)))
    try:
        await wait_for(lambda: bool(second.partitions) and second_out.batches, timeout=15)
        (moved,) = {tp.partition for tp in second.partitions}
        # committed before the partition was given up: the acknowledged head, nothing past it
        assert (await committed(kafka.bootstrap, "two", "shared", 2))[moved] == heads[moved]
        # the new owner reads on from there: nothing in flight at the old owner is lost
        await wait_for(lambda: sum(len(b) for b in second_out.batches) == 100 - heads[moved], timeout=10)
        assert [e["kafka"]["offset"] for b in second_out.batches for e in b.events] == list(range(heads[moved], 100))
        for batch in old:  # the old owner's batches finish late: they commit nothing for a partition it gave up
            if not batch.done:
                batch.finalize(AckStatus.DELIVERED)
        await first.commit()
        assert (await committed(kafka.bootstrap, "two", "shared", 2))[moved] == heads[moved]
        assert sum(n for (name, _), n in first_stats.counters.items() if name == "revoked_batches_in_flight") > 0
    finally:
        first_stop.set()
        second_stop.set()
        for batch in first_out.batches + second_out.batches:
            if not batch.done:
                batch.finalize(AckStatus.DELIVERED)
        await asyncio.wait_for(asyncio.gather(first_run, second_run), 15)


async def test_a_static_member_joins_under_its_group_instance_id(kafka: Tansu, tmp_path: Path) -> None:
    """The broker knows the member by its instance id. (That a restart within the session keeps the partitions
    without a rebalance is the broker's part of KIP-345: tansu rebalances anyway, so it is not checked here.)"""
    kafka.create_topic("static", partitions=2)
    await produce(kafka.bootstrap, "static", records(10), 2)
    src, stats = source(kafka, tmp_path, "statics", "static", group_instance_id="agg-0")
    out, stop = Deliver(), asyncio.Event()
    run = asyncio.create_task(src.run(SourceContext("k", out, stop, tmp_path, stats, True)))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await wait_for(lambda: len(out.events) == 10, timeout=15)
        (described,) = await admin.describe_consumer_groups(["statics"])
        ((_, _, state, _, _, members),) = described.groups
        assert state == "Stable" and [m[0].split("-")[:2] for m in members] == [["agg", "0"]]
    finally:
        await admin.close()
        stop.set()
        await asyncio.wait_for(run, 10)


async def test_brokers_absent_at_start_up_are_waited_for(tmp_path: Path, free_port: int) -> None:
    src, stats = source(Tansu(tmp_path, free_port), tmp_path, "late", "late", retry_initial_backoff=0.1,
                        retry_max_backoff=0.5)
    out, stop = Deliver(), asyncio.Event()
    run = asyncio.create_task(src.run(SourceContext("k", out, stop, tmp_path, stats, True)))
    broker = Tansu(tmp_path, free_port)
    try:
        await wait_for(lambda: stats.errors[("connect_failed", "receiving")] >= 2, timeout=10)
        assert not run.done()
        broker.start()
        broker.create_topic("late", partitions=1)
        await produce(broker.bootstrap, "late", records(5), 1)
        await wait_for(lambda: len(out.events) == 5, timeout=15)
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)
        broker.stop()


async def test_a_topic_pattern_reads_every_matching_topic(kafka: Tansu, tmp_path: Path) -> None:
    for topic in ("pat-a", "pat-b", "other"):
        kafka.create_topic(topic, partitions=1)
        await produce(kafka.bootstrap, topic, [orjson.dumps({"topic": topic, "i": i}) for i in range(3)], 1)
    stats = ComponentStats("k", "source", "kafka")
    config = KafkaSourceConfig(bootstrap_servers=[kafka.bootstrap], group_id="pattern", topic_pattern="pat-.*",
                               session_timeout=2.0, heartbeat_interval=0.5)
    src = KafkaSource(config, BuildContext("k", tmp_path, tmp_path, stats))
    out, stop = Deliver(), asyncio.Event()
    run = asyncio.create_task(src.run(SourceContext("k", out, stop, tmp_path, stats, True)))
    try:
        await wait_for(lambda: len(out.events) == 6, timeout=15)
        await asyncio.sleep(0.5)
        assert sorted((e["topic"], e["i"]) for e in out.events) == [(t, i) for t in ("pat-a", "pat-b") for i in range(3)]
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)


async def test_the_aggregator_computes_the_edge_s_elasticsearch_ids(kafka: Tansu, tmp_path: Path) -> None:
    """tail -> kafka (json) at the edge, kafka -> elasticsearch's id: auto at the aggregator: the file, inode, offset
    and time an event was read with survive the trip, so a replay through Kafka overwrites, never duplicates."""
    from agent.sinks.elasticsearch.encoder import auto_ids

    kafka.create_topic("edge-logs", partitions=2)
    log = tmp_path / "app.log"
    log.write_text("".join(f'{{"level": "info", "msg": "request {n}"}}\n' if n % 2 else f"plain line {n}\n"
                           for n in range(50)))
    edge = Topology(pipeline(f"""
sources:
  files: {{type: tail, include: ["{log}"], read_from: beginning, glob_interval: 50ms, poll_interval: 20ms}}
sinks:
  local: {{type: test_gate, inputs: [files], open: true}}
  kafka: {{type: kafka, inputs: [files], bootstrap_servers: ["{kafka.bootstrap}"], topic: edge-logs, key: file}}
""", tmp_path / "edge"), StatsRegistry())
    edge_run = asyncio.create_task(edge.run())
    await edge.ready.wait()
    await wait_for(lambda: len(GateSink.instances["local"].events) >= 50, timeout=15)
    await wait_for(lambda: edge.nodes["kafka"].stats.sent_events >= 50, timeout=15)
    edge.request_stop()
    assert await asyncio.wait_for(edge_run, 10) == 0
    aggregator = Topology(pipeline(f"""
sources:
  k: {{type: kafka, bootstrap_servers: ["{kafka.bootstrap}"], group_id: ids, topics: [edge-logs], {GROUP_TIMING}}}
sinks:
  got: {{type: test_gate, inputs: [k], open: true}}
""", tmp_path / "aggregator"), StatsRegistry())
    run = asyncio.create_task(aggregator.run())
    await aggregator.ready.wait()
    await wait_for(lambda: len(GateSink.instances["got"].events) >= 50, timeout=20)
    aggregator.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    at_edge = auto_ids(GateSink.instances["local"].events)  # type: ignore[arg-type]
    at_aggregator = auto_ids(GateSink.instances["got"].events)  # type: ignore[arg-type]
    assert None not in at_edge and len(set(at_edge)) == 50
    assert sorted(at_aggregator) == sorted(at_edge)  # type: ignore[type-var]
