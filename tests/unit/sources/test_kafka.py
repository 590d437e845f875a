"""The `kafka` source without a broker: its config checks and how record values become events."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import msgspec
import orjson
import pytest

from agent.config.pipeline import load_texts
from agent.config.registry import BuildContext
from agent.config.units import dec_hook
from agent.core.ack import AckStatus
from agent.core.batch import Kind
from agent.core.errors import ConfigErrors
from agent.core.footprint import decoded_bytes
from agent.kafka.decoding import METADATA_BYTES, NO_VALUE, NOT_JSON, NOT_MSGPACK, RecordDecoder, key_text
from agent.kafka.encoding import encode_values
from agent.observe.stats import ComponentStats
from agent.sources.kafka import KafkaSource, KafkaSourceConfig


@dataclass
class Record:
    """What aiokafka's ConsumerRecord offers the decoder."""

    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: int = 1_700_000_000_000


def config_error(source: str) -> str:
    text = f"api: {{enabled: false}}\nsources:\n  k: {source}\nsinks:\n  out: {{type: blackhole, inputs: [k]}}\n"
    with pytest.raises(ConfigErrors) as caught:
        load_texts([(text, "p.yaml")])
    return str(caught.value)


@pytest.mark.parametrize(("source", "expected"), [
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: g}', "either topics or topic_pattern"),
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: g, topics: [a], topic_pattern: "a.*"}',
     "either topics or topic_pattern"),
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: g, topic_pattern: "logs-("}', "topic_pattern"),
    ('{type: kafka, bootstrap_servers: ["nohost"], group_id: g, topics: [a]}', "host:port"),
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: "", topics: [a]}', "group_id"),
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: g, topics: [a], auto_offset_reset: smallest}',
     "auto_offset_reset"),
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: g, topics: [a], heartbeat_interval: 20s}',
     "heartbeat_interval"),
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: g, topics: [a], offset_reset: earliest}',
     "offset_reset"),
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: g, topics: [a, ".."]}', "topics: '..' is not a Kafka"),
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: g, topics: ["a/b"]}', "topics: 'a/b' is not a Kafka"),
    ('{type: kafka, bootstrap_servers: ["b:0"], group_id: g, topics: [a]}', "'b:0': the port must be 1-65535"),
    ('{type: kafka, bootstrap_servers: ["kafka://b:9092"], group_id: g, topics: [a]}', "has a scheme"),
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: g, topics: [a], sasl: {username: u, password: ""}}',
     "sources.k.sasl: password must not be empty"),
    ('{type: kafka, bootstrap_servers: ["b:9092"], group_id: g, topics: [a], sasl: {username: "", password: p}}',
     "sources.k.sasl: username must not be empty"),
])
def test_bad_config_names_the_key(source: str, expected: str) -> None:
    message = config_error(source)
    assert expected in message and "p.yaml" in message


def test_a_good_config_loads() -> None:
    text = ('api: {enabled: false}\nsources:\n  k: {type: kafka, bootstrap_servers: ["b:9092"], group_id: g, '
            'topic_pattern: "logs-.*", group_instance_id: agg-0, encoding: msgpack}\n'
            'sinks:\n  out: {type: blackhole, inputs: [k]}\n')
    assert load_texts([(text, "p.yaml")]).components["k"].config.group_instance_id == "agg-0"


def test_json_values_become_events_with_kafka_metadata() -> None:
    decoder = RecordDecoder("json", metadata=True)
    values = [b'{"message": "a", "n": 1}', b'{"message": "b", "n": 2}']
    records = [Record(7, values[0], b"pod-1", 11), Record(8, values[1], None, 12)]
    events, dicts, size = decoder.decode("logs", 3, records)
    assert dicts and decoder.errors == 0
    assert events == [
        {"message": "a", "n": 1, "kafka": {"topic": "logs", "partition": 3, "offset": 7, "timestamp": 11,
                                           "key": "pod-1"}},
        {"message": "b", "n": 2, "kafka": {"topic": "logs", "partition": 3, "offset": 8, "timestamp": 12,
                                           "key": None}},
    ]
    assert size == decoded_bytes(sum(map(len, values)) + 2 * METADATA_BYTES, 2)


def test_what_does_not_decode_passes_raw_with_parse_error_and_is_counted() -> None:
    decoder = RecordDecoder("json", metadata=False)
    records = [Record(0, b'{"ok": 1}'), Record(1, b"{broken"), Record(2, b"42"), Record(3, None), Record(4, b"\xff")]
    events, _, _ = decoder.decode("t", 0, records)
    assert events == [{"ok": 1}, {"message": "{broken", "parse_error": NOT_JSON},
                      {"message": "42", "parse_error": NOT_JSON}, {"message": "", "parse_error": NO_VALUE},
                      {"message": "\ufffd", "parse_error": NOT_JSON}]
    assert decoder.errors == 4


def test_msgpack_values_round_trip_what_the_sink_encodes() -> None:
    originals = [{"message": "m", "n": 1, "nested": {"a": [1, 2]}}, {"message": "é"}]
    values = encode_values(Kind.LOGS, originals, "msgpack")
    decoder = RecordDecoder("msgpack", metadata=False)
    records = [Record(i, v) for i, v in enumerate(values)] + [Record(9, msgspec.msgpack.encode([1])),
                                                              Record(10, b"\xc1")]
    events, _, _ = decoder.decode("t", 0, records)
    assert events[:2] == originals
    assert [e["parse_error"] for e in events[2:]] == [NOT_MSGPACK, NOT_MSGPACK] and decoder.errors == 2


def test_json_round_trips_what_the_sink_encodes_from_lines() -> None:
    values = encode_values(Kind.LINES, [b"plain line"], "json") + encode_values(Kind.JSON_LINES, [b'{"a":1}'], "json")
    events, _, _ = RecordDecoder("json", metadata=False).decode("t", 0, [Record(0, values[0]), Record(1, values[1])])
    assert events == [{"message": "plain line"}, {"a": 1}]


def test_raw_values_stay_lines_without_metadata_and_become_messages_with_it() -> None:
    records = [Record(0, b"line one"), Record(1, None), Record(2, b"caf\xc3\xa9")]
    lines, dicts, size = RecordDecoder("raw", metadata=False).decode("t", 0, records)
    assert not dicts and lines == [b"line one", b"", "café".encode()] and size == 8 + 0 + 5 + 3
    decoder = RecordDecoder("raw", metadata=True)
    events, dicts, _ = decoder.decode("t", 1, records)
    assert dicts and [e["message"] for e in events] == ["line one", "", "café"]
    assert events[1]["parse_error"] == NO_VALUE and decoder.errors == 1
    assert [e["kafka"]["offset"] for e in events] == [0, 1, 2]


def test_keys_are_text_when_utf8_else_base64() -> None:
    assert key_text(b"pod-\xc3\xa9") == "pod-é"
    assert key_text(b"\xff\x00") == "/wA="
    assert key_text(None) is None
    assert orjson.loads(orjson.dumps(key_text(b"\x80")))  # always JSON-encodable text


@pytest.mark.parametrize("metadata", [False, True])
def test_the_batch_size_tracks_what_the_events_hold_in_memory(metadata: bool) -> None:
    import gc
    import tracemalloc

    values = [orjson.dumps({"n": i, "level": "info", "message": f"request {i} handled " + "x" * 120}) for i in range(5000)]
    records = [Record(10**6 + i, value, b"ns/pod-%d" % (i % 50), 1_700_000_000_000 + i) for i, value in enumerate(values)]
    gc.collect()
    tracemalloc.start()
    try:
        events, _, size = RecordDecoder("json", metadata).decode("container-logs", 3, records)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(events) == 5000
    assert 0.7 * held < size < 1.3 * held


def kafka_source(tmp_path: Path) -> KafkaSource:
    config = msgspec.convert({"type": "kafka", "bootstrap_servers": ["127.0.0.1:9"], "group_id": "g",
                              "topics": ["t"]}, KafkaSourceConfig, dec_hook=dec_hook)
    return KafkaSource(config, BuildContext("k", tmp_path, tmp_path, ComponentStats("k", "source", "kafka")))


async def test_the_gauges_skip_partitions_the_consumer_no_longer_has(tmp_path: Path) -> None:
    """Between aiokafka dropping an assignment (a pattern's new topic, a rebalance) and the revoke callback, the
    gauges must not raise (aiokafka asserts on a partition not assigned): /metrics would fail."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    src = kafka_source(tmp_path)
    src.consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", group_id="g")  # never started
    try:
        tp = TopicPartition("t", 0)
        src.assign([tp])
        src.partitions[tp].fetched = 10
        assert src._lag() == 0
    finally:
        await src.consumer.stop()


async def test_batches_fetched_while_paused_but_never_sent_do_not_hold_the_stop(tmp_path: Path) -> None:
    """A stop with keep-alive batches not yet sent: they finish ERRORED (the position stops before them), so the
    source does not wait for them until the shutdown deadline."""
    from aiokafka import TopicPartition

    from agent.core.batch import Batch
    from agent.core.component import SourceContext

    src = kafka_source(tmp_path)
    tp = TopicPartition("t", 0)
    src.assign([tp])
    state = src.partitions[tp]
    delivered, stashed = Batch([{"n": 0}], Kind.LOGS, 10), Batch([{"n": 1}], Kind.LOGS, 10)
    delivered.acks.append(state.acks.track(1))
    stashed.acks.append(state.acks.track(2))
    src._stash = [stashed]
    stop = asyncio.Event()
    stop.set()
    await src._consume(SourceContext("k", None, stop, tmp_path, src.stats, True), None)  # type: ignore[arg-type]
    delivered.finalize(AckStatus.DELIVERED)
    async with asyncio.timeout(1):
        await state.acks.wait_idle()
    assert state.due() == 1


class RebalancingConsumer:
    """A consumer in a rebalance that does not finish (the broker went away mid-join): aiokafka's getmany waits
    for the new assignment whatever its timeout."""

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[object, list[object]]:
        await asyncio.Event().wait()
        return {}


async def test_a_stop_is_noticed_while_a_rebalance_holds_the_poll(tmp_path: Path) -> None:
    """A reload stops the source without a deadline: the poll must not keep it from seeing the stop."""
    from agent.core.component import SourceContext

    src = kafka_source(tmp_path)
    stop = asyncio.Event()
    ctx = SourceContext("k", None, stop, tmp_path, src.stats, True)  # type: ignore[arg-type]
    consuming = asyncio.create_task(src._consume(ctx, RebalancingConsumer()))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    stop.set()
    async with asyncio.timeout(3):
        await consuming


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_value_nested_too_deep_passes_raw_and_its_partition_goes_on(encoding: str) -> None:
    """msgspec raises RecursionError on a deep enough msgpack value: one such record must not crash the source
    (its restart would read the same record again, for ever)."""
    deep = b"\x91" * 100_000 + b"\xc0" if encoding == "msgpack" else b"[" * 100_000
    good = encode_values(Kind.LOGS, [{"n": 1}], encoding)[0]  # type: ignore[arg-type]
    decoder = RecordDecoder(encoding, metadata=False)  # type: ignore[arg-type]
    events, _, _ = decoder.decode("t", 0, [Record(0, good), Record(1, deep), Record(2, good)])
    assert events[0] == events[2] == {"n": 1} and "parse_error" in events[1] and decoder.errors == 1


class OddCommitConsumer:
    """A consumer whose commit fails with an exception that is not one of aiokafka's errors."""

    def __init__(self) -> None:
        self.commits = 0

    async def commit(self, offsets: dict[object, int]) -> None:
        self.commits += 1
        raise RuntimeError("an odd fault of the client")


async def test_an_odd_commit_failure_still_lets_revoked_partitions_go(tmp_path: Path) -> None:
    """A revoke whose commit raised would leave the partitions tracked: every later commit would name a partition
    the consumer no longer has, and fail."""
    from aiokafka import TopicPartition

    src = kafka_source(tmp_path)
    consumer = OddCommitConsumer()
    src.consumer = consumer  # type: ignore[assignment]
    tp = TopicPartition("t", 0)
    src.assign([tp])
    src.partitions[tp].acked = 5
    await src.revoke([tp])
    assert consumer.commits == 1 and not src.partitions
    assert src.stats.errors[("commit_failed", "receiving")] == 1


class OutageCommitConsumer:
    """A commit as aiokafka makes it: a shielded request of its own, which fails after the source gave up."""

    def __init__(self) -> None:
        self.commits = 0

    async def commit(self, offsets: dict[object, int]) -> None:
        self.commits += 1

        async def request() -> None:
            await asyncio.sleep(0.2)
            raise ConnectionError("the broker went away")

        await asyncio.shield(request())


async def test_a_commit_that_times_out_leaves_no_exception_unread(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling aiokafka's commit at our timeout left its shielded request to fail unread: asyncio logged
    "Task exception was never retrieved" at error level, beside our own warning."""
    import gc

    from aiokafka import TopicPartition

    from agent.sources import kafka as source_module

    monkeypatch.setattr(source_module, "COMMIT_TIMEOUT", 0.05)
    unread: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unread.append(context))
    try:
        src = kafka_source(tmp_path)
        consumer = OutageCommitConsumer()
        src.consumer = consumer  # type: ignore[assignment]
        tp = TopicPartition("t", 0)
        src.assign([tp])
        src.partitions[tp].acked = 5
        await src.commit()
        src.partitions[tp].acked = 7
        await src.commit()  # waits for the first (still going on), then gives up on its own
        await asyncio.sleep(0.5)  # both requests failed meanwhile
        gc.collect()
        assert not unread, unread
        assert consumer.commits == 1 and src.stats.errors[("commit_failed", "receiving")] == 2
        assert src.partitions[tp].committed is None
        await src.commit()  # the earlier one is over: this one is made
        await asyncio.sleep(0.3)
        gc.collect()
        assert consumer.commits == 2 and not unread, unread
    finally:
        loop.set_exception_handler(None)
