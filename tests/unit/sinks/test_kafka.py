"""The `kafka` sink's config, its mapping to aiokafka (SASL, TLS), Kafka's key partitioner and the encodings
(the broker-facing behaviour is in tests/integration/test_kafka_sink.py)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from components import feed
from helpers import pipeline

from agent.buffers.memory import MemoryBuffer
from agent.config.registry import BuildContext
from agent.config.units import dec_hook
from agent.core.ack import AckStatus, OrderedAcks
from agent.core.batch import Batch, Kind
from agent.core.component import SinkContext
from agent.core.errors import ConfigErrors
from agent.core.retry import Backoff
from agent.delivery.config import TlsConfig
from agent.kafka.client import SaslConfig, client_options
from agent.kafka.encoding import encode_values
from agent.kafka.partition import KeyPartitioner
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sinks.kafka import KafkaSink, KafkaSinkConfig
from agent.topology.running import Topology


def sink_yaml(settings: str) -> str:
    return ("sources:\n  in: {type: generate, count: 1}\nsinks:\n  out:\n    type: kafka\n    inputs: [in]\n"
            "    bootstrap_servers: [127.0.0.1:9092]\n" + settings)


def config(**settings: object) -> KafkaSinkConfig:
    merged = {"type": "kafka", "inputs": ["in"], "bootstrap_servers": ["127.0.0.1:9092"], "topic": "t", **settings}
    return msgspec.convert(merged, KafkaSinkConfig, dec_hook=dec_hook)


def build(tmp_path: Path, **settings: object) -> KafkaSink:
    return KafkaSink(config(**settings), BuildContext("out", tmp_path, tmp_path, ComponentStats("out", "sink", "kafka")))


def test_a_minimal_config_and_its_defaults(tmp_path: Path) -> None:
    p = pipeline(sink_yaml("    topic: logs\n"), tmp_path)
    sink = p.components["out"].config
    assert isinstance(sink, KafkaSinkConfig)
    assert (sink.acks, sink.idempotent, sink.encoding, sink.compression) == ("all", False, "json", "none")
    assert (sink.max_batch_bytes, sink.max_request_size, sink.linger) == (1 << 20, 1 << 20, 0.005)


@pytest.mark.parametrize(("settings", "expected"), [
    ("    topic: logs\n    partitioner: random\n", "partitioner"),
    ("    topic: 'bad topic'\n", "is not a Kafka topic name"),
    ("    topic: 'logs-{{ service }}'\n", "default_topic is needed"),
    ("    topic: logs\n    max_batch_bytes: 2MiB\n", "max_request_size must be at least max_batch_bytes"),
    ("    topic: logs\n    idempotent: true\n    acks: 1\n", "idempotent needs acks: all"),
    ("    topic: logs\n    compression: brotli\n", "compression"),
    ("    topic: logs\n    encoding: avro\n", "encoding"),
    ("    topic: logs\n    sasl: {mechanism: GSSAPI, username: u, password: p}\n", "mechanism"),
])
def test_bad_config_names_the_key(tmp_path: Path, settings: str, expected: str) -> None:
    with pytest.raises(ConfigErrors) as raised:
        pipeline(sink_yaml(settings), tmp_path)
    assert "sinks.out" in str(raised.value) and expected in str(raised.value)
    assert "test.yaml:" in str(raised.value)


def test_bad_bootstrap_server(tmp_path: Path) -> None:
    text = sink_yaml("    topic: logs\n").replace("[127.0.0.1:9092]", "[localhost]")
    with pytest.raises(ConfigErrors, match="'localhost' is not host:port"):
        pipeline(text, tmp_path)


@pytest.mark.parametrize("acks", ["all", 1, 0])
def test_acks_values(acks: object) -> None:
    assert config(acks=acks).acks == acks


def test_a_key_or_header_path_that_does_not_parse_is_a_build_error(tmp_path: Path) -> None:
    from agent.core.errors import BuildError

    with pytest.raises(BuildError, match="key or headers"):
        build(tmp_path, key="{{ }}")


def test_security_protocol_follows_sasl_and_tls() -> None:
    sasl = SaslConfig(mechanism="SCRAM-SHA-512", username="agent", password="s3cret-pass")
    plain = client_options(config())
    assert plain == {"bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}
    with_sasl = client_options(config(sasl=msgspec.to_builtins(sasl)))
    assert with_sasl["security_protocol"] == "SASL_PLAINTEXT"
    assert (with_sasl["sasl_mechanism"], with_sasl["sasl_plain_username"], with_sasl["sasl_plain_password"]) == \
        ("SCRAM-SHA-512", "agent", "s3cret-pass")
    with_tls = client_options(config(tls={"verify_certificate": False}))
    assert with_tls["security_protocol"] == "SSL" and isinstance(with_tls["ssl_context"], ssl.SSLContext)
    assert with_tls["ssl_context"].verify_mode == ssl.CERT_NONE
    both = client_options(config(tls={}, sasl={"mechanism": "PLAIN", "username": "u", "password": "p"}))
    assert both["security_protocol"] == "SASL_SSL" and both["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert "s3cret-pass" not in repr(sasl) and "s3cret-pass" not in repr(config(sasl=msgspec.to_builtins(sasl)))


def test_an_unreadable_ca_file_is_a_build_error(tmp_path: Path) -> None:
    from agent.core.errors import BuildError

    with pytest.raises(BuildError, match="ca_file"):
        build(tmp_path, tls=msgspec.to_builtins(TlsConfig(ca_file=str(tmp_path / "missing.pem"))))


async def test_aiokafka_takes_the_sasl_and_tls_settings(tmp_path: Path) -> None:
    """tansu has no SASL or TLS listener here: what is checked is that the producer is configured with them."""
    sink = build(tmp_path, tls={}, sasl={"mechanism": "SCRAM-SHA-256", "username": "u", "password": "p"},
                 compression="lz4", acks=1, client_id="edge-1")
    producer: AIOKafkaProducer = sink._new_producer()
    try:
        client = producer.client
        assert (client._security_protocol, client._sasl_mechanism, client._sasl_plain_username) == \
            ("SASL_SSL", "SCRAM-SHA-256", "u")
        assert isinstance(client._ssl_context, ssl.SSLContext) and client._client_id == "edge-1"
        assert producer._sender._acks == 1 and producer._compression_type == "lz4"
    finally:
        await producer.stop()


def test_key_partitions_match_the_java_client() -> None:
    """Values of Kafka's own UtilsTest for murmur2 (signed), turned into partitions as Java's toPositive % n."""
    java = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
            b"a-little-bit-longer-string": -1486304829, b"abc": 479470107,
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    partitioner = KeyPartitioner()
    for key, hashed in java.items():
        for count in (1, 3, 4, 12):
            assert partitioner.partition(key, count) == (hashed & 0x7FFFFFFF) % count
            assert partitioner.partition(key, count) == (hashed & 0x7FFFFFFF) % count  # from the cache


def test_the_hash_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.kafka.partition as partition

    monkeypatch.setattr(partition, "MAX_CACHED_KEYS", 10)
    partitioner = KeyPartitioner()
    for n in range(25):
        partitioner.partition(f"k{n}".encode(), 4)
    assert len(partitioner._hashes) <= 10


def test_json_encoding() -> None:
    assert encode_values(Kind.LOGS, [{"a": 1}, {"b": b"x"}], "json") == [b'{"a":1}', b'{"b":"x"}']
    assert encode_values(Kind.JSON_LINES, [b'{"a": 1}'], "json") == [b'{"a": 1}']
    assert encode_values(Kind.LINES, [b"plain"], "json") == [b'{"message":"plain"}']


def test_msgpack_encoding() -> None:
    decode = msgspec.msgpack.decode
    assert [decode(v) for v in encode_values(Kind.LOGS, [{"a": 1, "n": {"b": [1.5]}}], "msgpack")] == \
        [{"a": 1, "n": {"b": [1.5]}}]
    assert [decode(v) for v in encode_values(Kind.JSON_LINES, [b'{"a":1}'], "msgpack")] == [{"a": 1}]
    assert [decode(v) for v in encode_values(Kind.LINES, [b"plain"], "msgpack")] == [{"message": "plain"}]
    odd = encode_values(Kind.LOGS, [{"big": 1 << 70}, {"ok": 1}], "msgpack")  # past msgpack's integers: as text
    assert orjson.loads(decode(odd[0])) == {"big": 1 << 70} and decode(odd[1]) == {"ok": 1}


def test_raw_encoding() -> None:
    events = [{"message": "text"}, {"message": b"bytes"}, {"other": 1}, {"message": {"nested": True}}]
    assert encode_values(Kind.LOGS, events, "raw") == [b"text", b"bytes", b'{"other":1}', b'{"nested":true}']
    assert encode_values(Kind.LINES, [b"as read"], "raw") == [b"as read"]
    assert encode_values(Kind.JSON_LINES, [b'{"a":1}'], "raw") == [b'{"a":1}']


def test_record_batches_compress_at_librdkafka_levels(tmp_path: Path) -> None:
    """lz4 fast and gzip 6 instead of aiokafka's 9, in the builder the producer uses; Kafka still reads them."""
    from aiokafka.record._crecords import default_records as c_records
    from aiokafka.record.memory_records import MemoryRecords

    from agent.bench.scenarios.kafka import record_lines
    from agent.kafka.compression import gzip_member, lz4_frame

    build(tmp_path)  # a sink switches the levels
    assert (c_records.lz4_encode, c_records.gzip_encode) == (lz4_frame, gzip_member)
    values = [line.encode() for line in record_lines(2000)]
    for codec in (1, 3):
        builder = c_records.DefaultRecordBatchBuilder(2, codec, 0, -1, -1, 0, 1 << 20)
        for offset, value in enumerate(values):
            builder.append(offset, 1, None, value, [])
        batch = MemoryRecords(bytes(builder.build())).next_batch()
        assert batch is not None and batch.compression_type == codec
        assert [record.value for record in batch] == values


class _Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}


class _Client:
    cluster = _Cluster()

    async def bootstrap(self) -> None:
        return None

    def force_metadata_update(self) -> asyncio.Future[bool]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(True)
        return done


class _Sender:
    async def start(self) -> None:
        return None


class BrokerRefusingBigBatches:
    """A producer whose broker refuses record batches of more than ``limit`` records, or holding a big value."""

    def __init__(self, limit: int) -> None:
        from aiokafka.producer.message_accumulator import BatchBuilder

        self.limit, self.builder = limit, BatchBuilder
        self.client, self._sender = _Client(), _Sender()
        self.taken: list[bytes] = []
        self.refused = 0
        self.batch_size = 1 << 20  # of the record batches it creates (aiokafka's: max_batch_bytes)

    def create_batch(self) -> object:
        return self.builder(self.batch_size, 0)

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    async def send_batch(self, batch: object, topic: str, *, partition: int) -> object:
        from aiokafka.errors import MessageSizeTooLargeError
        from aiokafka.record.memory_records import MemoryRecords

        future = asyncio.get_running_loop().create_future()
        records = MemoryRecords(bytes(batch._build())).next_batch()  # type: ignore[attr-defined]
        values = [record.value for record in records]
        if len(values) > self.limit or any(len(v) > 1000 for v in values):
            self.refused += 1
            future.set_exception(MessageSizeTooLargeError())
        else:
            self.taken += values
            future.set_result(None)
        return future

    async def stop(self) -> None:
        return None


async def run_against(broker: BrokerRefusingBigBatches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      batches: list[Batch], sink: str = "") -> StatsRegistry:
    """Run test_feed(``batches``) -> kafka (topic t, more ``sink`` settings) with ``broker`` as its producer."""
    text = (f"sources:\n  in: {{type: test_feed, name: {feed(batches)}}}\n"
            f"sinks:\n  out: {{type: kafka, inputs: [in], bootstrap_servers: ['127.0.0.1:9'], topic: t{sink}}}\n")
    stats = StatsRegistry()
    monkeypatch.setattr(KafkaSink, "_new_producer", lambda self: broker)
    async with asyncio.timeout(10):
        assert await Topology(pipeline(text, tmp_path), stats).run() == 0
    return stats


async def test_a_batch_the_broker_refuses_as_too_large_is_split_down_to_the_one_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = BrokerRefusingBigBatches(limit=7)
    events = [{"n": n} for n in range(40)]
    events[13]["message"] = "x" * 2000  # under max_request_size, over what this broker takes
    dead = tmp_path / "dead.ndjson"
    stats = await run_against(broker, tmp_path, monkeypatch, [Batch(events, Kind.LOGS, 4000)],
                              f", dead_letter: {{path: '{dead}'}}")
    assert sorted(orjson.loads(v)["n"] for v in broker.taken) == [n for n in range(40) if n != 13]
    assert broker.refused >= 3
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(d["reason"], orjson.loads(d["event"]["value"])["n"]) for d in letters] == [("too_large", 13)]
    sink = stats.get("out", "sink", "kafka")
    assert sink.discarded["too_large"] == 1 and sink.sent_events == 39
    assert stats.get("in", "source", "test_feed").gauges["committed_events"] == 40


class BrokerWithAFaultyClient(BrokerRefusingBigBatches):
    """Takes every record batch, but its client raises once while a record batch is being opened."""

    def __init__(self) -> None:
        super().__init__(limit=1 << 30)
        self.faults = 1

    def create_batch(self) -> object:
        if self.faults:
            self.faults -= 1
            raise RuntimeError("an odd fault of the client")
        return super().create_batch()


async def test_a_fault_of_the_sink_itself_hands_its_batches_to_the_restarted_sink(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor restarts the sink with the batches it held: they are delivered and the source moves on
    (finishing them ERRORED would stop the source's position until the agent restarts)."""
    broker = BrokerWithAFaultyClient()
    events = [{"n": n} for n in range(30)]
    batches = [Batch(events[i:i + 10], Kind.LOGS, 1000) for i in range(0, 30, 10)]
    stats = await run_against(broker, tmp_path, monkeypatch, batches)
    assert stats.get("out", "sink", "kafka").errors[("component_crashed", "running")] == 1
    assert sorted(orjson.loads(v)["n"] for v in broker.taken) == list(range(30))
    assert stats.get("in", "source", "test_feed").gauges["committed_events"] == 30


class BrokerWithoutRoom(BrokerRefusingBigBatches):
    """A producer that never has room for a record batch: ``send_batch`` waits until cancelled."""

    def __init__(self) -> None:
        super().__init__(limit=1 << 30)
        self.waiting = asyncio.Event()

    async def send_batch(self, batch: object, topic: str, *, partition: int) -> object:
        self.waiting.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_batch_waiting_for_room_in_the_producer_finishes_errored_at_the_deadline(tmp_path: Path) -> None:
    broker = BrokerWithoutRoom()
    sink = build(tmp_path, linger="1ms")
    sink._new_producer = lambda: broker  # type: ignore[assignment,method-assign,return-value]
    stats = ComponentStats("out", "sink", "kafka")
    inbox = MemoryBuffer(100, 1 << 20, "block", stats)
    statuses: list[AckStatus] = []
    acks: OrderedAcks[int] = OrderedAcks()
    batch = Batch([{"n": 1}], Kind.LOGS, 100)
    ack = acks.track(1)
    batch.acks.append(ack)
    original_done = ack._on_done
    ack._on_done = lambda status: (statuses.append(status), original_done(status))  # type: ignore[method-assign]
    await inbox.put(batch)
    run = asyncio.create_task(sink.run(SinkContext("out", inbox, stats)))
    async with asyncio.timeout(5):
        await broker.waiting.wait()
        run.cancel()  # the shutdown deadline
        with pytest.raises(asyncio.CancelledError):
            await run
        await acks.wait_idle()  # never left open
    assert statuses == [AckStatus.ERRORED]


@pytest.mark.parametrize(("module_name", "builder_name"), [
    ("aiokafka.record._crecords.default_records", "DefaultRecordBatchBuilder"),
    ("aiokafka.record.default_records", "_DefaultRecordBatchBuilderPy")])
def test_the_record_batch_builders_call_the_encoders_we_replace(module_name: str, builder_name: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes the replacement work: each builder looks its encoders up by name when it compresses (a builder
    bound to aiokafka's own would ignore the replacement silently)."""
    import importlib

    module = importlib.import_module(module_name)
    calls: list[str] = []
    for name in ("lz4_encode", "gzip_encode"):
        encoder = getattr(module, name)
        monkeypatch.setattr(module, name, lambda data, _e=encoder, _n=name: (calls.append(_n), _e(data))[1])
    for codec in (1, 3):
        builder = getattr(module, builder_name)(2, codec, 0, -1, -1, 0, 1 << 20)
        builder.append(0, 1, None, b"x" * 1000, [])
        builder.build()
    assert calls == ["gzip_encode", "lz4_encode"]


def test_an_aiokafka_without_the_encoders_is_left_alone_and_named(caplog: pytest.LogCaptureFixture) -> None:
    import types

    from agent.kafka.compression import lz4_frame, replace_encoders

    changed = types.ModuleType("aiokafka.record.changed")
    changed.lz4_encode = object()  # type: ignore[attr-defined]
    assert not replace_encoders(changed)
    assert changed.lz4_encode is not lz4_frame  # type: ignore[attr-defined]
    assert "aiokafka changed" in caplog.text
    ok = types.ModuleType("aiokafka.record.same")
    ok.lz4_encode = ok.gzip_encode = len  # type: ignore[attr-defined]
    assert replace_encoders(ok) and ok.lz4_encode is lz4_frame  # type: ignore[attr-defined]


class _NoTopicYet:
    def __init__(self, broker: BrokerWithoutTheTopicYet) -> None:
        self.broker = broker

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0} if self.broker.asked > 2 else None


class BrokerWithoutTheTopicYet(BrokerRefusingBigBatches):
    """A broker that knows the topic from the third metadata request on (created meanwhile)."""

    def __init__(self) -> None:
        super().__init__(limit=1 << 30)
        self.asked = 0
        self.client = _Client()
        self.client.cluster = _NoTopicYet(self)  # type: ignore[assignment]

    async def partitions_for(self, topic: str) -> set[int]:
        self.asked += 1
        return {0} if self.asked > 2 else set()


async def test_a_topic_that_does_not_exist_yet_holds_the_events_counted_until_it_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = BrokerWithoutTheTopicYet()
    stats = await run_against(broker, tmp_path, monkeypatch, [Batch([{"n": n} for n in range(5)], Kind.LOGS, 500)],
                              ", retry_initial_backoff: 10ms, retry_max_backoff: 20ms")
    assert sorted(orjson.loads(v)["n"] for v in broker.taken) == list(range(5))
    sink = stats.get("out", "sink", "kafka")
    assert sink.retries == 2 and sink.errors[("topic_unavailable", "sending")] == 2
    assert stats.get("in", "source", "test_feed").gauges["committed_events"] == 5


class BackoffWithoutJitter(Backoff):
    def next(self, floor: float | None = None) -> float:
        delay = min(self.cap, self.initial * 2 ** self.attempt)
        self.attempt += 1
        return delay


class BrokerFailingOnce(BrokerRefusingBigBatches):
    """Takes every record batch but the first, which times out (an outage longer than request_timeout)."""

    def __init__(self) -> None:
        super().__init__(limit=1 << 30)
        self.faults = 1
        self.batch_size = 1024

    async def send_batch(self, batch: object, topic: str, *, partition: int) -> object:
        if self.faults:
            from aiokafka.errors import KafkaTimeoutError

            self.faults -= 1
            future = asyncio.get_running_loop().create_future()
            future.set_exception(KafkaTimeoutError())
            return future
        return await super().send_batch(batch, topic, partition=partition)


def keyed_batches(count: int, per_batch: int) -> list[Batch]:
    events = [{"pod": "a", "n": n, "message": "x" * 100} for n in range(count)]
    return [Batch(events[i:i + per_batch], Kind.LOGS, 150 * per_batch) for i in range(0, count, per_batch)]


async def test_a_record_batch_that_failed_is_sent_again_before_anything_newer_of_its_partition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.sinks.kafka as kafka_sink

    monkeypatch.setattr(kafka_sink, "Backoff", BackoffWithoutJitter)  # newer batches come during the backoff
    broker = BrokerFailingOnce()
    stats = await run_against(broker, tmp_path, monkeypatch, keyed_batches(200, 10),
                              ", key: pod, retry_initial_backoff: 50ms")
    assert broker.faults == 0
    assert [orjson.loads(v)["n"] for v in broker.taken] == list(range(200))
    assert stats.get("out", "sink", "kafka").retries == 1
    assert stats.get("in", "source", "test_feed").gauges["committed_events"] == 200


class _Shrinking:
    def __init__(self, broker: BrokerLosingAPartition) -> None:
        self.broker = broker

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.broker.partitions)


class BrokerLosingAPartition(BrokerRefusingBigBatches):
    """Two partitions, until the first record batch for partition 1: then partition 1 is gone (as a broker
    restarted empty that creates the topic again with one partition); a send to it raises as aiokafka does."""

    def __init__(self) -> None:
        super().__init__(limit=1 << 30)
        self.partitions = {0, 1}
        self.client = _Client()
        self.client.cluster = _Shrinking(self)  # type: ignore[assignment]
        self.batch_size = 1024
        self.where: list[int] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(self.partitions)

    async def send_batch(self, batch: object, topic: str, *, partition: int) -> object:
        if partition == 1:
            self.partitions = {0}
        if partition not in self.partitions:
            raise AssertionError("Unrecognized partition")
        before = len(self.taken)
        future = await super().send_batch(batch, topic, partition=partition)
        self.where += [partition] * (len(self.taken) - before)
        return future


async def feed_slowly(sink: KafkaSink, batches: list[Batch], pause: float) -> OrderedAcks[int]:
    """Run ``sink`` on ``batches``, put in its inbox one at a time ``pause`` apart, until all are finished."""
    stats = ComponentStats("out", "sink", "kafka")
    inbox = MemoryBuffer(1000, 1 << 24, "block", stats)
    acks: OrderedAcks[int] = OrderedAcks()
    run = asyncio.create_task(sink.run(SinkContext("out", inbox, stats)))
    async with asyncio.timeout(10):
        for n, batch in enumerate(batches):
            batch.acks.append(acks.track(n))
            await inbox.put(batch)
            await asyncio.sleep(pause)
        inbox.close()
        await run
    return acks


async def test_records_of_a_partition_that_is_gone_go_to_the_others_before_newer_records_of_their_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Partition 1 goes while the input batches still come: the records held for it (the failed record batch
    and those after it) go to partition 0 before any newer record of their keys."""
    import agent.sinks.kafka as kafka_sink

    monkeypatch.setattr(kafka_sink, "Backoff", BackoffWithoutJitter)  # newer batches come during the backoff
    broker = BrokerLosingAPartition()
    sink = build(tmp_path, key="pod", retry_initial_backoff="20ms", retry_max_backoff="40ms")
    sink._new_producer = lambda: broker  # type: ignore[assignment,method-assign,return-value]
    partitioner = KeyPartitioner()
    keys = [f"pod-{i}" for i in range(8)]
    assert {partitioner.partition(k.encode(), 2) for k in keys} == {0, 1}
    events = [{"pod": keys[n % 8], "n": n, "message": "x" * 100} for n in range(400)]
    acks = await feed_slowly(sink, [Batch(events[i:i + 20], Kind.LOGS, 3000) for i in range(0, 400, 20)], 0.005)
    assert acks.position == 19 and not acks.stuck
    taken = [orjson.loads(v) for v in broker.taken]
    assert sorted(e["n"] for e in taken) == list(range(400))
    for key in keys:
        ns = [e["n"] for e in taken if e["pod"] == key]
        assert ns == sorted(ns), key
    assert 1 not in broker.where
    assert sink.stats.retries >= 1


async def test_idle_empty_lanes_of_topics_gone_are_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.sinks.kafka as kafka_sink

    monkeypatch.setattr(kafka_sink, "LANE_IDLE", 0.0)
    broker = BrokerRefusingBigBatches(limit=1 << 30)
    sink = build(tmp_path, topic="t-{{ n }}", default_topic="t", linger="1ms")
    sink._new_producer = lambda: broker  # type: ignore[assignment,method-assign,return-value]
    stats = ComponentStats("out", "sink", "kafka")
    inbox = MemoryBuffer(1000, 1 << 24, "block", stats)
    acks: OrderedAcks[int] = OrderedAcks()
    for n in range(100):
        batch = Batch([{"n": n}], Kind.LOGS, 100)
        batch.acks.append(acks.track(n))
        await inbox.put(batch)
    run = asyncio.create_task(sink.run(SinkContext("out", inbox, stats)))
    async with asyncio.timeout(5):
        await acks.wait_idle()
        assert len(broker.taken) == 100
        last = Batch([{"n": "last"}], Kind.LOGS, 100)
        last.acks.append(acks.track(100))
        await inbox.put(last)
        await acks.wait_idle()
        await asyncio.sleep(0.01)
        sink._seal_expired()  # a sweep
        assert len(sink._lanes) <= 1 and len(sink._turn) <= 1 and len(sink._layouts) <= 1
        inbox.close()
        await run


@pytest.mark.parametrize("encoding", ["json", "msgpack", "raw"])
async def test_an_event_the_encoder_cannot_encode_is_dead_lettered_and_the_rest_delivered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str) -> None:
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(1000):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    events: list[dict[str, object]] = [{"n": n} for n in range(10)]
    events[4] = {"n": 4, "deep": deep}
    broker = BrokerRefusingBigBatches(limit=1 << 30)
    dead = tmp_path / "dead.ndjson"
    stats = await run_against(broker, tmp_path, monkeypatch, [Batch(events, Kind.LOGS, 1000)],
                              f", encoding: {encoding}, dead_letter: {{path: '{dead}'}}")
    decode = orjson.loads if encoding != "msgpack" else msgspec.msgpack.decode
    assert [decode(v)["n"] for v in broker.taken] == [n for n in range(10) if n != 4]
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [d["reason"] for d in letters] == ["encode_failed"] and "'n': 4" in letters[0]["event"]
    sink = stats.get("out", "sink", "kafka")
    assert sink.discarded["encode_failed"] == 1 and ("component_crashed", "running") not in sink.errors
    assert stats.get("in", "source", "test_feed").gauges["committed_events"] == 10
