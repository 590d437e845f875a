"""The `kafka` sink against a real Kafka-protocol broker (tansu): what arrives, in which codec on the wire, on
which partition and topic, what is dead-lettered, and what happens when the broker goes away and comes back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaClient
from aiokafka.partitioner import murmur2
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from components import feed
from helpers import pipeline, wait_for
from peers.kafka import Tansu
from peers.prometheus import free_port

from agent.config.registry import BuildContext
from agent.config.units import dec_hook
from agent.core.batch import Batch, Kind
from agent.core.errors import StartupError
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sinks.kafka import KafkaSink, KafkaSinkConfig
from agent.topology.running import Topology

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


async def fetch(bootstrap: str, topic: str) -> dict[int, list[tuple[int, Any]]]:
    """Every record batch of every partition of ``topic``, read raw: partition -> [(codec, records)]."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        partitions = await client._wait_on_metadata(topic)
        out: dict[int, list[tuple[int, Any]]] = {}
        for partition in sorted(partitions):
            node = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            offset, batches = 0, out.setdefault(partition, [])
            for _ in range(10_000):  # bounded: pages of record batches until one brings nothing
                request = FetchRequest(100, 1, 64 << 20, 0, [(topic, [(partition, offset, 64 << 20)])])
                response = await client.send(node, request)
                got = 0
                for _topic, parts in response.topics:
                    for part in parts:
                        records = MemoryRecords(part[-1])
                        while (batch := records.next_batch()) is not None:
                            batches.append((batch.compression_type, list(batch)))
                            offset, got = batch.next_offset, got + 1
                if not got:
                    break
        return out
    finally:
        await client.close()


def records_of(batches: dict[int, list[tuple[int, Any]]]) -> list[Any]:
    return [record for parts in batches.values() for _, records in parts for record in records]


def sink_config(broker: Tansu, **settings: Any) -> str:
    merged = {"type": "kafka", "inputs": ["in"], "bootstrap_servers": [broker.bootstrap], "topic": "events",
              **settings}
    return json.dumps(merged)


async def run_pipeline(tmp_path: Path, source: dict[str, Any], sink: str) -> tuple[int, StatsRegistry]:
    stats = StatsRegistry()
    text = f"sources:\n  in: {json.dumps(source)}\nsinks:\n  out: {sink}\n"
    async with asyncio.timeout(30):
        code = await Topology(pipeline(text, tmp_path), stats).run()
    return code, stats


def log_batches(events: list[dict[str, Any]], per_batch: int = 100) -> list[Batch]:
    return [Batch(events[i:i + per_batch], Kind.LOGS, 100 * len(events[i:i + per_batch]))
            for i in range(0, len(events), per_batch)]


@pytest.mark.parametrize("codec", list(CODECS))
async def test_every_record_arrives_in_the_codec_asked_for(kafka: Tansu, tmp_path: Path, codec: str) -> None:
    kafka.create_topic("events", partitions=2)
    events = [{"n": n, "message": f"request handled path=/api/v1/orders status=200 n={n}"} for n in range(5000)]
    source = {"type": "test_feed", "name": feed(log_batches(events, per_batch=500))}
    code, stats = await run_pipeline(tmp_path, source, sink_config(kafka, compression=codec))
    assert code == 0
    sink = stats.get("out", "sink", "kafka")
    assert sink.sent_events == 5000 and not sink.errors
    batches = await fetch(kafka.bootstrap, "events")
    assert {c for parts in batches.values() for c, _ in parts} == {CODECS[codec]}
    assert sorted(orjson.loads(record.value)["n"] for record in records_of(batches)) == list(range(5000))
    assert stats.get("in", "source", "test_feed").gauges["committed_events"] == 5000


@pytest.mark.parametrize("encoding", ["json", "msgpack", "raw"])
async def test_encodings_round_trip(kafka: Tansu, tmp_path: Path, encoding: str) -> None:
    kafka.create_topic("events")
    events = [{"message": f"line {n}", "n": n, "nested": {"a": [1, 2]}} for n in range(300)]
    source = {"type": "test_feed", "name": feed(log_batches(events))}
    code, _ = await run_pipeline(tmp_path, source, sink_config(kafka, encoding=encoding))
    assert code == 0
    values = [record.value for record in records_of(await fetch(kafka.bootstrap, "events"))]
    if encoding == "json":
        assert [orjson.loads(v) for v in values] == events
    elif encoding == "msgpack":
        assert [msgspec.msgpack.decode(v) for v in values] == events
    else:
        assert values == [f"line {n}".encode() for n in range(300)]


async def test_raw_lines_go_as_they_were_read(kafka: Tansu, tmp_path: Path) -> None:
    kafka.create_topic("events")
    lines = [b'{"a":1}', b'{"a":2}']
    source = {"type": "test_feed", "name": feed([Batch(list(lines), Kind.JSON_LINES, 14)])}
    code, _ = await run_pipeline(tmp_path, source, sink_config(kafka))
    assert code == 0
    assert [r.value for r in records_of(await fetch(kafka.bootstrap, "events"))] == lines


async def test_a_key_always_goes_to_the_partition_java_clients_pick(kafka: Tansu, tmp_path: Path) -> None:
    kafka.create_topic("events", partitions=4)
    pods = [f"pod-{n}" for n in range(12)]
    events = [{"pod": pods[n % len(pods)], "n": n, "message": "m"} for n in range(1200)]
    source = {"type": "test_feed", "name": feed(log_batches(events, per_batch=50))}
    code, _ = await run_pipeline(tmp_path, source, sink_config(kafka, key="pod", linger="1ms"))
    assert code == 0
    batches = await fetch(kafka.bootstrap, "events")
    seen: dict[bytes, set[int]] = {}
    order: dict[bytes, list[int]] = {}
    for partition, parts in batches.items():
        for _, records in parts:
            for record in records:
                seen.setdefault(record.key, set()).add(partition)
                order.setdefault(record.key, []).append(orjson.loads(record.value)["n"])
    assert sum(len(v) for v in order.values()) == 1200
    for key, partitions in seen.items():
        assert partitions == {(murmur2(key) & 0x7FFFFFFF) % 4}  # one partition per key: Java's
        assert order[key] == sorted(order[key])  # one key's events stay in order
    assert len({p for ps in seen.values() for p in ps}) > 1  # the keys spread


async def test_topic_from_fields_and_default_topic(kafka: Tansu, tmp_path: Path) -> None:
    for topic in ("logs-checkout", "logs-cart", "logs-other"):
        kafka.create_topic(topic)
    events = [{"service": "checkout", "n": 0}, {"service": "cart", "n": 1}, {"n": 2},
              {"service": "checkout", "n": 3}, {"service": None, "n": 4}]
    source = {"type": "test_feed", "name": feed(log_batches(events))}
    sink = sink_config(kafka, topic="logs-{{ service }}", default_topic="logs-other",
                       headers={"svc": "service", "number": "n"})
    code, stats = await run_pipeline(tmp_path, source, sink)
    assert code == 0
    got = {topic: [orjson.loads(r.value)["n"] for r in records_of(await fetch(kafka.bootstrap, topic))]
           for topic in ("logs-checkout", "logs-cart", "logs-other")}
    assert got == {"logs-checkout": [0, 3], "logs-cart": [1], "logs-other": [2, 4]}
    assert stats.get("out", "sink", "kafka").counters[("default_topic_events", ())] == 2
    headers = [dict(r.headers) for r in records_of(await fetch(kafka.bootstrap, "logs-cart"))]
    assert headers == [{"svc": b"cart", "number": b"1"}]


async def test_an_event_too_large_is_dead_lettered_and_the_rest_delivered(kafka: Tansu, tmp_path: Path) -> None:
    kafka.create_topic("events")
    dead = tmp_path / "dead.ndjson"
    events = [{"message": "small", "n": 0}, {"message": "x" * 300_000, "n": 1}, {"message": "small", "n": 2}]
    source = {"type": "test_feed", "name": feed(log_batches(events))}
    sink = sink_config(kafka, max_batch_bytes="64KiB", max_request_size="128KiB", dead_letter={"path": str(dead)})
    code, stats = await run_pipeline(tmp_path, source, sink)
    assert code == 0
    assert [orjson.loads(r.value)["n"] for r in records_of(await fetch(kafka.bootstrap, "events"))] == [0, 2]
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(d["reason"], d["event"]["n"]) for d in letters] == [("too_large", 1)]
    assert "max_request_size" in letters[0]["error"]
    sink_stats = stats.get("out", "sink", "kafka")
    assert sink_stats.discarded["too_large"] == 1 and sink_stats.sent_events == 2
    assert stats.get("in", "source", "test_feed").gauges["committed_events"] == 3  # rejected: the source moves on


class Gate:
    """A TCP relay in front of the broker (which advertises the relay's port): :meth:`shut` refuses new
    connections and cuts the open ones, so a restarted, empty broker can get its topic before the sink reaches
    it (tansu acknowledges, then drops, records produced to a topic it does not have)."""

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def shut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for pipe in list(self.pipes):
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        tasks = {asyncio.create_task(pipe(reader, up_writer)), asyncio.create_task(pipe(up_reader, writer))}
        self.pipes |= tasks
        for task in tasks:
            task.add_done_callback(self.pipes.discard)


def start_behind(broker: Tansu, gate_port: int, *options: str) -> None:
    """Start ``broker`` advertising the gate's port (its own with ``gate_port`` 0), with more ``options``."""
    broker.start(advertised_port=gate_port or None, options=options)


async def test_broker_gone_while_producing_then_back(tmp_path: Path) -> None:
    """Everything the old broker did not acknowledge reaches the new (empty) one; the source never commits past
    what a broker acknowledged; nothing is lost or dropped by the sink."""
    broker = Tansu(tmp_path, free_port())
    gate = Gate(free_port(), broker.port)
    await gate.open()
    start_behind(broker, gate.port)
    topology: Topology | None = None
    agent: asyncio.Task[int] | None = None
    try:
        broker.create_topic("events", partitions=1)  # one partition: the old broker acknowledged a prefix, in order
        total = 100_000
        events = [{"n": n, "message": "m" * 100} for n in range(total)]
        source = {"type": "test_feed", "name": feed(log_batches(events, per_batch=200))}
        sink = json.dumps({"type": "kafka", "inputs": ["in"], "bootstrap_servers": [f"127.0.0.1:{gate.port}"],
                           "topic": "events", "request_timeout": "1s", "retry_initial_backoff": "50ms",
                           "retry_max_backoff": "300ms", "buffer": {"max_events": 4000, "max_bytes": "400KiB"}})
        stats = StatsRegistry()
        sink_stats = stats.get("out", "sink", "kafka")
        source_stats = stats.get("in", "source", "test_feed")
        text = f"sources:\n  in: {json.dumps(source)}\nsinks:\n  out: {sink}\n"
        topology = Topology(pipeline(text, tmp_path, shutdown_timeout="20s"), stats)
        agent = asyncio.create_task(topology.run())
        await wait_for(lambda: sink_stats.sent_events >= 10_000, timeout=20)
        broker.kill()  # mid-request: records in flight are lost with it
        await gate.shut()
        await asyncio.sleep(0.3)
        acknowledged = sink_stats.sent_events
        assert acknowledged < total, "the broker went away too late to test anything"
        assert source_stats.gauges.get("committed_events", 0) <= acknowledged
        await asyncio.sleep(1.5)  # requests time out; the sink holds its events and retries
        taken = source_stats.received_events
        await asyncio.sleep(0.5)
        assert source_stats.received_events == taken < total  # backpressure: the source waits
        assert sink_stats.gauge_values()["held_bytes"] <= 400 * 1024 + 200 * 100  # the buffer's bytes + a batch
        assert sink_stats.sent_events == acknowledged
        assert source_stats.gauges.get("committed_events", 0) <= acknowledged
        start_behind(broker, gate.port)  # the same port, empty
        broker.create_topic("events", partitions=1)
        await gate.open()
        async with asyncio.timeout(60):
            assert await agent == 0
        assert source_stats.gauges["committed_events"] == total
        assert sink_stats.retries > 0 and sink_stats.errors
        assert not sink_stats.discarded
        arrived = [orjson.loads(r.value)["n"] for r in records_of(await fetch(f"127.0.0.1:{gate.port}", "events"))]
        assert set(range(acknowledged, total)) <= set(arrived)  # everything the old broker did not acknowledge
        firsts = list(dict.fromkeys(arrived))  # (a record batch that timed out once may have arrived twice)
        assert firsts == sorted(firsts)  # in order: what failed went again before anything newer
    finally:
        if agent is not None and topology is not None and not agent.done():
            topology.request_stop()
            await asyncio.wait([agent], timeout=25)
        broker.stop()
        await gate.shut()


async def test_idempotent_refused_by_the_broker_fails_at_start_up(kafka: Tansu, tmp_path: Path) -> None:
    config = msgspec.convert({"type": "kafka", "inputs": ["in"], "bootstrap_servers": [kafka.bootstrap],
                              "topic": "events", "idempotent": True, "request_timeout": "5s"}, KafkaSinkConfig,
                             dec_hook=dec_hook)
    sink = KafkaSink(config, BuildContext("out", tmp_path, tmp_path, ComponentStats("out", "sink", "kafka")))
    async with asyncio.timeout(10):  # it never hangs
        with pytest.raises(StartupError, match=r"refused the idempotent producer.*set idempotent: false"):
            await sink.start()


async def test_a_broker_not_there_at_start_is_waited_for(kafka: Tansu, tmp_path: Path) -> None:
    kafka.stop()
    events = [{"n": n} for n in range(500)]
    source = {"type": "test_feed", "name": feed(log_batches(events))}
    sink = sink_config(kafka, request_timeout="1s", retry_initial_backoff="50ms", retry_max_backoff="200ms")
    stats = StatsRegistry()
    text = f"sources:\n  in: {json.dumps(source)}\nsinks:\n  out: {sink}\n"
    topology = Topology(pipeline(text, tmp_path), stats)
    agent = asyncio.create_task(topology.run())
    try:
        await wait_for(lambda: bool(stats.get("out", "sink", "kafka").errors), timeout=10)
        assert stats.get("in", "source", "test_feed").gauges.get("committed_events", 0) == 0
        kafka.start()
        async with asyncio.timeout(30):
            assert await agent == 0
    finally:
        if not agent.done():
            topology.request_stop()
            await asyncio.wait([agent], timeout=10)
    assert stats.get("in", "source", "test_feed").gauges["committed_events"] == 500
    assert sorted(orjson.loads(r.value)["n"] for r in records_of(await fetch(kafka.bootstrap, "events"))) == \
        list(range(500))


async def test_credentials_the_broker_refuses_hold_the_events_and_stay_out_of_the_logs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """tansu with --authentication speaks SCRAM, but users cannot be created while it is on (its CLI does not
    authenticate) and memory storage forgets them at a restart: so only a refusal can be played here."""
    broker = Tansu(tmp_path, free_port())
    start_behind(broker, 0, "--authentication")
    password = "pa55-word-not-in-logs"
    events = [{"n": n} for n in range(100)]
    source = {"type": "test_feed", "name": feed(log_batches(events))}
    sink = sink_config(broker, request_timeout="1s", retry_initial_backoff="50ms", retry_max_backoff="200ms",
                       sasl={"mechanism": "SCRAM-SHA-512", "username": "edge", "password": password})
    stats = StatsRegistry()
    text = f"sources:\n  in: {json.dumps(source)}\nsinks:\n  out: {sink}\n"
    topology = Topology(pipeline(text, tmp_path, shutdown_timeout="1s"), stats)
    agent = asyncio.create_task(topology.run())
    try:
        sink_stats = stats.get("out", "sink", "kafka")
        await wait_for(lambda: sum(n for (_, stage), n in sink_stats.errors.items() if stage == "connecting") >= 3,
                       timeout=15)
        assert stats.get("in", "source", "test_feed").gauges.get("committed_events", 0) == 0
        assert sink_stats.sent_events == 0
    finally:
        topology.request_stop()
        await asyncio.wait([agent], timeout=15)
        broker.stop()
    assert "kafka producer could not start" in caplog.text
    assert password not in caplog.text
    assert stats.get("in", "source", "test_feed").gauges.get("committed_events", 0) == 0
