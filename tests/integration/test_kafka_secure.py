"""The `kafka` sink and source over TLS and SASL (PLAIN, SCRAM-SHA-256/512) and with static membership, on the wire:
a real tansu behind :class:`fakes.kafka_front.KafkaFront`, which terminates TLS, authenticates as a Kafka broker
does and logs the requests clients sent (tansu cannot do either here)."""

from __future__ import annotations

import asyncio
import json
import ssl
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.protocol.metadata import MetadataRequest
from components import feed
from fakes.kafka_front import KafkaFront, join_group_instance_id, running_behind_front
from helpers import Deliver, pipeline, wait_for

from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.core.component import SourceContext
from agent.delivery.config import TlsConfig
from agent.kafka.client import SaslConfig
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sources.kafka import KafkaSource, KafkaSourceConfig
from agent.topology.running import Topology

pytestmark = pytest.mark.integration

USERS = {"edge": "edge-pa55-not-in-logs", "aggregator": "agg-pa55", "reader": "reader-pa55"}
PRODUCE, OFFSET_COMMIT, JOIN_GROUP = 0, 8, 11


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The front's TLS: a certificate for 127.0.0.1 issued by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def ca_file(ca: trustme.CA, tmp_path: Path, name: str = "ca.pem") -> str:
    path = tmp_path / name
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def direct(front: KafkaFront, user: str = "reader", mechanism: str = "SCRAM-SHA-512",
           ca: str | None = None) -> dict[str, Any]:
    """aiokafka options to reach ``front`` as ``user``, set here (not by the agent's client settings)."""
    options: dict[str, Any] = {"bootstrap_servers": front.bootstrap, "sasl_mechanism": mechanism,
                               "sasl_plain_username": user, "sasl_plain_password": USERS[user],
                               "security_protocol": "SASL_SSL" if ca else "SASL_PLAINTEXT"}
    if ca:
        options["ssl_context"] = ssl.create_default_context(cafile=ca)
    return options


async def read_all(options: dict[str, Any], topic: str, expected: int) -> list[bytes]:
    """The values of the first ``expected`` records of every partition of ``topic`` (10 s at most)."""
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await consumer._client._wait_on_metadata(topic)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        values: list[bytes] = []
        async with asyncio.timeout(10):
            while len(values) < expected:
                got = await consumer.getmany(timeout_ms=200)
                values += [record.value for records in got.values() for record in records]
        return values
    finally:
        await consumer.stop()


def sink_pipeline(front: KafkaFront, tmp_path: Path, count: int, **settings: Any) -> tuple[Topology, StatsRegistry]:
    """test_feed ``in`` of ``count`` events ``{"n": i}`` -> the kafka sink ``out`` to ``front``, topic ``events``."""
    events = [{"n": n, "message": f"request handled n={n}"} for n in range(count)]
    batches = [Batch(events[i:i + 200], Kind.LOGS, 40 * len(events[i:i + 200])) for i in range(0, count, 200)]
    source = {"type": "test_feed", "name": feed(batches)}
    sink = {"type": "kafka", "inputs": ["in"], "bootstrap_servers": [front.bootstrap], "topic": "events",
            "request_timeout": "2s", "retry_initial_backoff": "50ms", "retry_max_backoff": "200ms", **settings}
    text = f"sources:\n  in: {json.dumps(source)}\nsinks:\n  out: {json.dumps(sink)}\n"
    stats = StatsRegistry()
    return Topology(pipeline(text, tmp_path, shutdown_timeout="1s"), stats), stats


@pytest.mark.parametrize(("mechanism", "tls"), [("SCRAM-SHA-512", True), ("PLAIN", False), ("SCRAM-SHA-256", True)])
async def test_the_sink_authenticates_and_every_record_arrives(tmp_path: Path, ca: trustme.CA, mechanism: str,
                                                               tls: bool) -> None:
    ca_path = ca_file(ca, tmp_path) if tls else None
    async with running_behind_front(tmp_path, users=USERS, tls=server_tls(ca) if tls else None) as (broker, front):
        broker.create_topic("events", partitions=2)
        sasl = {"mechanism": mechanism, "username": "edge", "password": USERS["edge"]}
        topology, stats = sink_pipeline(front, tmp_path, 2000, sasl=sasl,
                                        **({"tls": {"ca_file": ca_path}} if tls else {}))
        async with asyncio.timeout(20):
            assert await topology.run() == 0
        sink = stats.get("out", "sink", "kafka")
        assert sink.sent_events == 2000 and not sink.errors
        assert stats.get("in", "source", "test_feed").gauges["committed_events"] == 2000
        assert ("edge", mechanism) in front.logins and not front.refusals
        produced = front.requests_of(PRODUCE)
        assert produced and {r.user for r in produced} == {"edge"}  # every Produce on an authenticated connection
        values = await read_all(direct(front, ca=ca_path), "events", 2000)
        assert sorted(orjson.loads(v)["n"] for v in values) == list(range(2000))


async def run_until_refused(topology: Topology, stats: StatsRegistry, attempts: int) -> None:
    """Runs the pipeline until its kafka sink failed to connect ``attempts`` times, checks that nothing was sent
    or committed meanwhile, and stops it."""
    agent = asyncio.create_task(topology.run())
    try:
        sink = stats.get("out", "sink", "kafka")
        await wait_for(lambda: sum(n for (_, stage), n in sink.errors.items() if stage == "connecting") >= attempts,
                       timeout=15)
        assert sink.sent_events == 0
        assert stats.get("in", "source", "test_feed").gauges.get("committed_events", 0) == 0
    finally:
        topology.request_stop()
        await asyncio.wait([agent], timeout=15)


async def test_a_wrong_password_holds_the_events_counts_and_stays_out_of_the_logs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    password = "wr0ng-pa55-not-in-logs"
    async with running_behind_front(tmp_path, users=USERS) as (broker, front):
        broker.create_topic("events")
        topology, stats = sink_pipeline(front, tmp_path, 300,
                                        sasl={"mechanism": "SCRAM-SHA-512", "username": "edge", "password": password})
        await run_until_refused(topology, stats, 3)
        assert front.refusals and all("invalid credentials with SASL mechanism SCRAM-SHA-512" in m
                                      for m in front.refusals)  # refused by SCRAM, not by a plaintext client
        assert not front.logins and not front.requests_of(PRODUCE)
        assert stats.get("in", "source", "test_feed").gauges.get("committed_events", 0) == 0
        assert "kafka producer could not start" in caplog.text
        assert password not in caplog.text and USERS["edge"] not in caplog.text


async def test_a_certificate_the_ca_does_not_sign_is_refused_and_the_events_held(tmp_path: Path,
                                                                                ca: trustme.CA) -> None:
    other = ca_file(trustme.CA(), tmp_path, "other-ca.pem")
    async with running_behind_front(tmp_path, users=USERS, tls=server_tls(ca)) as (broker, front):
        broker.create_topic("events")
        topology, stats = sink_pipeline(front, tmp_path, 300, tls={"ca_file": other},
                                        sasl={"mechanism": "SCRAM-SHA-512", "username": "edge", "password": USERS["edge"]})
        await run_until_refused(topology, stats, 2)
        assert stats.get("in", "source", "test_feed").gauges.get("committed_events", 0) == 0
        assert not front.requests  # no request went over a connection the client did not trust


async def produce(options: dict[str, Any], topic: str, count: int, partitions: int) -> None:
    producer = AIOKafkaProducer(**options, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic, orjson.dumps({"n": n}), partition=n % partitions) for n in range(count)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def committed(options: dict[str, Any], group: str, topic: str, partitions: int) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(**options, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


def kafka_source(front: KafkaFront, tmp_path: Path, **options: Any) -> tuple[KafkaSource, ComponentStats]:
    stats = ComponentStats("k", "source", "kafka")
    timing: dict[str, Any] = {"commit_interval": 0.1, "session_timeout": 2.0, "heartbeat_interval": 0.5}
    config = KafkaSourceConfig(bootstrap_servers=[front.bootstrap], topics=["logs"], **timing, **options)
    return KafkaSource(config, BuildContext("k", tmp_path, tmp_path, stats)), stats


async def consume(src: KafkaSource, stats: ComponentStats, tmp_path: Path, count: int) -> list[Any]:
    """Runs ``src`` until it delivered ``count`` events, then stops it (its last commit made)."""
    out, stop = Deliver(), asyncio.Event()
    run = asyncio.create_task(src.run(SourceContext("k", out, stop, tmp_path, stats, True)))
    try:
        await wait_for(lambda: len(out.events) >= count, timeout=15)
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)
    return out.events


async def test_the_source_consumes_and_commits_over_sasl_ssl(tmp_path: Path, ca: trustme.CA) -> None:
    ca_path = ca_file(ca, tmp_path)
    async with running_behind_front(tmp_path, users=USERS, tls=server_tls(ca)) as (broker, front):
        broker.create_topic("logs", partitions=2)
        await produce(direct(front, ca=ca_path), "logs", 400, 2)
        src, stats = kafka_source(front, tmp_path, group_id="secure", tls=TlsConfig(ca_file=ca_path),
                                  sasl=SaslConfig(mechanism="SCRAM-SHA-512", username="aggregator",
                                                  password=USERS["aggregator"]))
        events = await consume(src, stats, tmp_path, 400)
        assert sorted(e["n"] for e in events) == list(range(400))
        assert ("aggregator", "SCRAM-SHA-512") in front.logins
        commits = front.requests_of(OFFSET_COMMIT)
        assert commits and {r.user for r in commits} == {"aggregator"}
        assert await committed(direct(front, ca=ca_path), "secure", "logs", 2) == {0: 200, 1: 200}


async def test_a_static_member_s_joins_carry_its_group_instance_id(tmp_path: Path) -> None:
    async with running_behind_front(tmp_path, users=USERS) as (broker, front):
        broker.create_topic("logs", partitions=2)
        await produce(direct(front, mechanism="PLAIN"), "logs", 10, 2)
        src, stats = kafka_source(front, tmp_path, group_id="statics", group_instance_id="agg-0",
                                  sasl=SaslConfig(mechanism="PLAIN", username="aggregator",
                                                  password=USERS["aggregator"]))
        events = await consume(src, stats, tmp_path, 10)
        assert sorted(e["n"] for e in events) == list(range(10))
        joins = front.requests_of(JOIN_GROUP)
        assert joins and all(r.api_version >= 5 for r in joins)  # group_instance_id came with JoinGroup v5
        assert [join_group_instance_id(r) for r in joins] == ["agg-0"] * len(joins)


# -- the front itself: it refuses what a Kafka broker refuses -----------------------------------------------


async def test_the_front_refuses_as_a_kafka_broker_does(tmp_path: Path) -> None:
    async with running_behind_front(tmp_path, users=USERS, mechanisms=["SCRAM-SHA-512"]) as (_, front):
        plain = await create_conn("127.0.0.1", front.port)  # no SASL: ApiVersions is answered
        try:
            assert plain._versions[17] == (0, 1) and plain._versions[36] == (0, 2)
            with pytest.raises(KafkaConnectionError):  # anything else before authentication closes
                await plain.send(MetadataRequest([]))
        finally:
            plain.close()
        assert front.requests[-1].api_key == 3 and front.requests[-1].user is None
        with pytest.raises(UnsupportedSaslMechanismError):
            await create_conn("127.0.0.1", front.port, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                              sasl_plain_username="edge", sasl_plain_password=USERS["edge"])
        with pytest.raises(SaslAuthenticationFailed, match="invalid credentials"):
            await create_conn("127.0.0.1", front.port, security_protocol="SASL_PLAINTEXT",
                              sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="edge", sasl_plain_password="no")
        assert not front.logins


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_the_front_speaks_sasl_after_a_v0_handshake_too(tmp_path: Path, mechanism: str) -> None:
    """Raw tokens, without Kafka headers, after a SaslHandshake v0 (a front advertising only v0)."""
    async with running_behind_front(tmp_path, users=USERS, handshake_max=0) as (broker, front):
        broker.create_topic("raw")
        options = direct(front, "edge", mechanism)
        await produce(options, "raw", 5, 1)
        assert len(await read_all(options, "raw", 5)) == 5
        assert {r.api_version for r in front.requests_of(17)} == {0} and not front.requests_of(36)
        assert ("edge", mechanism) in front.logins


def kafka_request(api_key: int, version: int, correlation_id: int, body: bytes, flexible: bool = False) -> bytes:
    """A size-prefixed request: header v1 (v2 when ``flexible``: an empty tagged-field section) and ``body``."""
    header = struct.pack(">hhih", api_key, version, correlation_id, 4) + b"test" + (b"\0" if flexible else b"")
    return struct.pack(">i", len(header) + len(body)) + header + body


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    return await reader.readexactly(size)


@pytest.mark.parametrize("version", [0, 2])
@pytest.mark.parametrize("password", [USERS["edge"], "wrong"])
async def test_the_front_answers_sasl_authenticate_in_each_version_s_layout(tmp_path: Path, version: int,
                                                                           password: str) -> None:
    """v0: error, nullable string, bytes; v2: flexible (response header v1, compact string and bytes, the session
    lifetime, tagged fields). aiokafka speaks v1 only, so these bytes are built and checked by hand."""
    async with running_behind_front(tmp_path, users=USERS) as (_, front):
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        try:
            writer.write(kafka_request(17, 1, 7, struct.pack(">h", 5) + b"PLAIN"))
            assert await read_answer(reader) == struct.pack(">ihi", 7, 0, 3) + b"".join(
                struct.pack(">h", len(m)) + m for m in (b"PLAIN", b"SCRAM-SHA-256", b"SCRAM-SHA-512"))
            token = b"\0edge\0" + password.encode()
            auth = (bytes([len(token) + 1]) + token + b"\0") if version == 2 else struct.pack(">i", len(token)) + token
            writer.write(kafka_request(36, version, 8, auth, flexible=version == 2))
            answer = await read_answer(reader)
            if password != USERS["edge"]:
                message = b"Authentication failed: Invalid username or password"
                if version == 2:
                    expected = struct.pack(">ibh", 8, 0, 58) + bytes([len(message) + 1]) + message + b"\1" + \
                        struct.pack(">q", 0) + b"\0"
                else:
                    expected = struct.pack(">ihh", 8, 58, len(message)) + message + struct.pack(">i", 0)
                assert answer == expected
                assert await reader.read() == b""  # then closed
            else:
                if version == 2:
                    assert answer == struct.pack(">ibh", 8, 0, 0) + b"\0\1" + struct.pack(">q", 0) + b"\0"
                else:
                    assert answer == struct.pack(">ihhi", 8, 0, -1, 0)
                assert front.logins == [("edge", "PLAIN")]
        finally:
            writer.close()
            await writer.wait_closed()
