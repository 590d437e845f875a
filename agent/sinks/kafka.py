"""Sink `kafka`: events as Kafka records, in record batches built per partition (aiokafka's batch API).

Each batch from the inbox is encoded (``json``, ``msgpack`` or ``raw``), given a topic (``topic`` templated from
event fields; a missing field sends the event to ``default_topic``, counted) and a partition (the Java client's
murmur2 of ``key`` when the event has one, else one partition per input batch and topic, in turn), then appended
to the open record batch of its partition. A record batch is sealed when it is full (``max_batch_bytes``) or
``linger`` old and handed to the producer with ``send_batch``. There is never a ``send()`` per event
(REFERENCE §5.3: thousands of concurrent sends wake up quadratically).

Order: one record batch per partition is in flight at a time (what Kafka's producers need without idempotence,
``max.in.flight`` 1), and one the broker did not take (broker down past ``request_timeout``...) is counted,
logged and sent again after a backoff before anything newer of its partition: the records of a key stay in
order. A topic's events are routed by the partitions it had while one of them is stalled; when the brokers
dropped a partition (a broker restarted empty), its records, oldest first, go to the partitions there are
now, before any newer record of their keys. A partition's state is dropped once it has been idle and empty
for a minute (templated topics come and go).

Acks: an input batch is finished when the broker has acknowledged every record batch holding one of its
events (DELIVERED), or REJECTED when some of its events were dead-lettered: never dropped otherwise. While the
events held (by their input batches' sizes) reach the buffer's ``max_bytes``, the sink stops reading its inbox,
so the buffer fills and pushes back on the sources. An event larger than ``max_request_size`` goes to the dead
letter with the reason (``too_large``); a record batch the broker refuses as too large is split, down to one
event (dead-lettered). An event the encoder cannot encode (nested deeper than it goes) is dead-lettered with
``encode_failed``, the rest of its batch delivered.

Compression levels are librdkafka's (lz4 fast, gzip 6; see :mod:`agent.kafka.compression`).

``idempotent: true`` needs the broker to grant a producer id (InitProducerId): a broker that refuses ends
start-up with one line saying so, instead of hanging. Not every Kafka-protocol broker does (tansu does not).
"""

from __future__ import annotations

import asyncio
import logging
import reprlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from agent.codecs.template import EventTemplate
from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.config.units import ByteSize, Duration
from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.core.component import SinkContext
from agent.core.errors import BuildError, HealthcheckError, StartupError
from agent.core.keys import as_text, compile_key
from agent.core.retry import Backoff
from agent.delivery.config import DeadLetterConfig, TlsConfig
from agent.delivery.dead_letter import DeadLetterFile
from agent.kafka.client import SaslConfig, check_servers, client_options
from agent.kafka.compression import use_default_levels
from agent.kafka.encoding import Encoding, encode_values, whole_json
from agent.kafka.partition import KeyPartitioner
from agent.kafka.topics import MAX_TOPIC_CHARS, TOPIC_UNSAFE, check_topic
from agent.observe.stats import ComponentStats

log = logging.getLogger("agent.sinks.kafka")

STOP_TIMEOUT = 5.0  # seconds the producer may take to close at the end
LANE_IDLE = 60.0  # seconds after which a partition's empty lane is dropped (templated topics come and go)


class KafkaSinkConfig(SinkConfig, tag="kafka"):
    """Write events to Kafka topics (see the module docstring)."""

    bootstrap_servers: list[str]
    """Brokers to connect to first, as host:port; the rest of the cluster is learnt from them."""
    topic: str
    """Topic of each event: a name, or a template of fields ("logs-{{ kubernetes.namespace }}") and strftime
    codes of the event's time."""
    default_topic: str | None = None
    """Topic of events that lack a field the topic names (counted); needed when the topic names fields."""
    key: str | None = None
    """Field (or template of fields) whose value is the record key: one key, one partition (Java's murmur2);
    none: events go to the partitions in turn, a whole input batch at a time."""
    headers: dict[str, str] = {}
    """Record headers: header name -> the field whose value (as text) it carries; missing fields are left out."""
    encoding: Encoding = "json"
    """Record value: json (one JSON object), msgpack (one map) or raw (the message field's bytes)."""
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    """Compression of the record batches (lz4 and gzip at librdkafka's levels)."""
    acks: Literal["all", 1, 0] = "all"
    """What the brokers confirm before a batch counts as delivered: all in-sync replicas, the leader (1), or
    nothing (0)."""
    idempotent: bool = False
    """Idempotent producer (needs acks all and a broker that grants producer ids; one that refuses ends
    start-up with a clear error)."""
    linger: Duration = Duration(0.005)
    """How long a partition's record batch may wait to fill before it is sent."""
    max_batch_bytes: ByteSize = ByteSize(1024 * 1024)
    """Size of a partition's record batch (before compression) at which it is sent."""
    max_request_size: ByteSize = ByteSize(1024 * 1024)
    """Largest record; a bigger event goes to the dead letter with reason too_large."""
    request_timeout: Duration = Duration(30.0)
    """How long a produce or metadata request may take before it is retried."""
    retry_initial_backoff: Duration = Duration(0.5)
    """First wait before sending events again that the brokers did not take; it doubles (with jitter)."""
    retry_max_backoff: Duration = Duration(30.0)
    """Longest wait between retries; they never stop: the data is held, then the sources wait."""
    client_id: str | None = None
    """Client id the brokers see (and log); none: aiokafka's own."""
    sasl: SaslConfig | None = None
    """SASL credentials (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512); none: no SASL."""
    tls: TlsConfig | None = None
    """TLS to the brokers ({} for the system CAs); none: plain TCP."""
    dead_letter: DeadLetterConfig | None = None
    """Where events that can never be sent (too large) are written, with the reason; none: counted only."""

    def __post_init__(self) -> None:
        check_servers(self.bootstrap_servers)
        if self.max_batch_bytes < 1024:
            raise ValueError("max_batch_bytes must be at least 1KiB")
        if self.max_request_size < self.max_batch_bytes:
            raise ValueError("max_request_size must be at least max_batch_bytes")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        if self.idempotent and self.acks != "all":
            raise ValueError("idempotent needs acks: all")
        if "{{" in self.topic and not self.default_topic:
            raise ValueError("default_topic is needed when topic names fields (for events without them)")
        if self.default_topic is not None:
            check_topic(self.default_topic, "default_topic")
        if "{{" not in self.topic and "%" not in self.topic:
            check_topic(self.topic, "topic")


class ProducerIdRefused(Exception):
    """The brokers answered the idempotent producer's InitProducerId with an error."""


class _MissingField(Exception):
    """A field the topic template names is missing from the event."""


def _topic_safe(value: Any) -> str:
    if value is None:
        raise _MissingField()
    return TOPIC_UNSAFE.sub("_", as_text(value))


@dataclass(slots=True, eq=False)
class _RecordBatch:
    """Events of one partition on their way to the broker: the records to build again on a retry, and for
    each run of them the ack of the input batch they came from."""

    topic: str
    partition: int
    builder: Any  # aiokafka BatchBuilder
    records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    pieces: list[list[Any]] = field(default_factory=list)  # [Ack, events]
    opened: float = field(default_factory=time.monotonic)
    handed: float = 0.0  # when the producer took it

    def release(self, status: AckStatus) -> None:
        pieces, self.pieces = self.pieces, []
        for ack, _ in pieces:
            ack.release(status)

    def pieces_records(self) -> list[tuple[Ack, Any]]:
        """Each record with the ack of its input batch."""
        paired = []
        start = 0
        for ack, n in self.pieces:
            paired += [(ack, record) for record in self.records[start:start + n]]
            start += n
        return paired


class _Lane:
    """One topic-partition: the record batch being filled and those sealed, sent one at a time (the first one
    in flight, or waiting to be sent again: nothing newer of the partition goes before it)."""

    __slots__ = ("open", "partition", "sealed", "sending", "stalled", "topic", "used")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.open: _RecordBatch | None = None
        self.sealed: deque[_RecordBatch] = deque()
        self.sending = False  # a task sends the sealed record batches
        self.stalled: Backoff | None = None  # the first sealed record batch failed: its retries' backoff
        self.used = time.monotonic()

    def holds(self) -> bool:
        return self.open is not None or bool(self.sealed)


@register("sink", "kafka", KafkaSinkConfig, "Writes events to Kafka topics in record batches per partition.")
class KafkaSink:
    """Batches events per topic-partition and produces them with aiokafka (see the module docstring)."""

    def __init__(self, config: KafkaSinkConfig, ctx: BuildContext) -> None:
        self.config = config
        self.component_id = ctx.component_id
        self.stats: ComponentStats = ctx.stats
        use_default_levels()  # lz4 and gzip at librdkafka's levels, not aiokafka's 9
        try:
            self.options = client_options(config)
        except BuildError as exc:
            raise BuildError(f"kafka: {exc}") from None
        self.template = EventTemplate(config.topic, _topic_safe)
        self.topic_of: Callable[[Any], str] | None = None if self.template.static else self.template.partition_key()
        try:
            self.key_of = compile_key(config.key) if config.key else None
            self.header_fields = [(name, compile_key(path)) for name, path in config.headers.items()]
        except ValueError as exc:
            raise BuildError(f"key or headers: {exc}") from None
        self.needs_fields = bool(self.topic_of or self.key_of or self.header_fields)
        self.dead_letter = DeadLetterFile(config.dead_letter.path, ctx.component_id) if config.dead_letter else None
        self.partitioner = KeyPartitioner()
        self.producer: AIOKafkaProducer | None = None
        self._lanes: dict[str, dict[int, _Lane]] = {}  # topic -> partition -> lane
        self._open: dict[_Lane, None] = {}  # lanes with an open record batch, oldest first
        self._layouts: dict[str, list[int]] = {}  # topic -> the partitions its events are routed to
        self._turn: dict[str, int] = {}  # topic -> the partition the next unkeyed input batch goes to
        self._next_sweep = time.monotonic() + LANE_IDLE
        self._held_bytes = 0  # input bytes of the batches not finished yet
        self._held_batches = 0
        self._room = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sending: set[asyncio.Task[None]] = set()
        self._closing = False
        self._crashed = False  # run() raised: input batches are left to the supervisor, never finished here
        self.stats.gauges["held_bytes"] = lambda: self._held_bytes
        self.stats.gauges["held_batches"] = lambda: self._held_batches

    # -- the producer ---------------------------------------------------------------------------------

    def _new_producer(self) -> AIOKafkaProducer:
        config = self.config
        return AIOKafkaProducer(
            **self.options, acks=-1 if config.acks == "all" else config.acks,
            compression_type=None if config.compression == "none" else config.compression,
            enable_idempotence=config.idempotent, max_batch_size=config.max_batch_bytes,
            max_request_size=config.max_request_size, linger_ms=0,
            request_timeout_ms=int(config.request_timeout * 1000))

    async def _start_producer(self) -> AIOKafkaProducer:
        """A started producer; raises what starting it raised (the producer is closed then), and
        :class:`ProducerIdRefused` when the brokers answered but refused the idempotent producer's id."""
        producer = self._new_producer()
        try:
            async with asyncio.timeout(self.config.request_timeout):
                # producer.start() in its two steps, to tell the brokers' answer to InitProducerId apart
                await producer.client.bootstrap()  # connections, SASL, metadata
                try:
                    await producer._sender.start()  # InitProducerId when idempotent
                except KafkaError as exc:
                    raise ProducerIdRefused(_describe(exc)) from None
        except BaseException:
            await _close(producer)
            raise
        return producer

    async def start(self) -> None:
        """With ``idempotent``, get a producer id now: a broker that refuses it ends start-up (one line)."""
        if not self.config.idempotent:
            return
        try:
            self.producer = await self._start_producer()
        except ProducerIdRefused as exc:
            raise StartupError(
                f'sink "{self.component_id}": the broker refused the idempotent producer '
                f"(InitProducerId: {exc}); set idempotent: false for this broker") from None
        except Exception as exc:  # not reachable, credentials refused...: run() keeps trying
            log.warning("kafka brokers not usable at start-up; the sink keeps trying", extra={
                "component_id": self.component_id, "error": _describe(exc)})

    async def healthcheck(self) -> None:
        producer = self._new_producer()
        try:
            async with asyncio.timeout(self.config.request_timeout):
                await producer.client.bootstrap()
        except (KafkaError, TimeoutError, OSError) as exc:
            raise HealthcheckError(f"kafka {','.join(self.config.bootstrap_servers)}: {_describe(exc)}") from None
        finally:
            await _close(producer)

    async def _connected(self) -> AIOKafkaProducer:
        """The producer, started; until the brokers answer, retried with backoff (logged and counted)."""
        backoff = Backoff(self.config.retry_initial_backoff, self.config.retry_max_backoff)
        while self.producer is None:
            try:
                self.producer = await self._start_producer()
            except Exception as exc:  # the client's own faults too (a broker's odd SASL answer: KeyError)
                self.stats.error(type(exc).__name__, "connecting")
                delay = backoff.next()
                refused = isinstance(exc, ProducerIdRefused)
                log.error("kafka producer could not start%s; retrying" % (
                    " (the broker refused the idempotent producer: set idempotent: false)" if refused else ""),
                    extra={"component_id": self.component_id, "error": _describe(exc), "retry_in_s": round(delay, 3)})
                await asyncio.sleep(delay)
        return self.producer

    # -- the main loop --------------------------------------------------------------------------------

    async def run(self, ctx: SinkContext) -> None:
        limit = self.config.buffer.max_bytes
        try:
            producer = await self._connected()
            while True:
                while self._held_bytes >= limit and self._held_batches:
                    self._room.clear()
                    await self._wait_room()
                batch = await self._next(ctx)
                if batch is None:
                    break
                if batch is _TICK:
                    continue
                await self._route(producer, batch)
                self._seal_expired()
            self._seal_expired(force=True)
            await self._idle.wait()
        except asyncio.CancelledError:  # the deadline: what is held finishes ERRORED (replayed after a restart)
            self._abandon()
            raise
        except Exception:  # a fault of the sink itself: what it holds stays unfinished, and the supervisor
            self._crashed = True  # hands it to the restarted sink (or gives a batch that keeps crashing it up)
            raise
        finally:
            self._closing = True
            for task in list(self._sending):
                task.cancel()
            if self.producer is not None:
                producer, self.producer = self.producer, None
                await _close(producer)
            if self.dead_letter is not None:
                self.dead_letter.close()

    async def _wait_room(self) -> None:
        """Until held batches finish, sealing lingering record batches meanwhile."""
        while not self._room.is_set():
            deadline = self._next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    await self._room.wait()
            except TimeoutError:
                self._seal_expired()

    async def _next(self, ctx: SinkContext) -> Any:
        """The next input batch; :data:`_TICK` when an open record batch is due first; None at the end."""
        deadline = self._next_deadline()
        if deadline is None:
            return await ctx.inbox.get()
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await ctx.inbox.get()
        except TimeoutError:
            self._seal_expired()
            return _TICK

    def _next_deadline(self) -> float | None:
        for lane in self._open:  # the oldest open record batch
            return lane.open.opened + self.config.linger  # type: ignore[union-attr]
        return None

    # -- routing events to partitions ----------------------------------------------------------------

    async def _route(self, producer: AIOKafkaProducer, batch: Batch) -> None:
        """Encode ``batch``, give each event its topic and partition, and append it to its record batch."""
        stats = self.stats
        events = batch.events
        stats.received_events += len(events)
        stats.received_bytes += batch.byte_size
        size = batch.byte_size
        ack = Ack(lambda status: self._finished(batch, size, status))
        self._held_bytes += size
        self._held_batches += 1
        self._idle.clear()
        values, unencodable = self._encode(batch.kind, events)
        keys, headers, topics = self._fields(batch.kind, events)
        if keys is None and headers is None:
            records: list[Any] = list(zip(repeat(None), values, repeat(_NO_HEADERS)))
        else:
            records = list(zip(repeat(None) if keys is None else keys, values,
                               repeat(_NO_HEADERS) if headers is None else headers, strict=False))
        dropped = bool(values) and max(map(len, values)) > self.config.max_request_size - 200
        if dropped:
            records = self._drop_too_large(records, events, ack)
        if unencodable:
            self._reject([(_letter(events[i]), "encode_failed", error) for i, error in unencodable], ack)
            for i, _ in unencodable:
                records[i] = None
            dropped = True
        groups: dict[str, list[Any]]
        if topics is None:
            groups = {self.config.topic: [r for r in records if r is not None] if dropped else records}
        else:
            groups = {}
            for topic, record in zip(topics, records, strict=True):
                if record is not None:
                    groups.setdefault(topic, []).append(record)
        try:
            for topic, group in groups.items():
                if group:
                    await self._append(producer, topic, group, ack)
        except asyncio.CancelledError:  # stopped while waiting for a topic: what was not routed is not delivered
            ack.release(AckStatus.ERRORED)
            raise
        ack.release(AckStatus.DELIVERED)  # the routing's own hold

    def _encode(self, kind: Kind, events: list[Any]) -> tuple[list[bytes], list[tuple[int, str]]]:
        """Each event's record value, and (index, error) of those that cannot be encoded (their value empty):
        the batch at once, and one event at a time only when that fails."""
        encoding = self.config.encoding
        try:
            return encode_values(kind, events, encoding), []
        except Exception as exc:  # nested deeper than the encoder goes...
            self.stats.error("encode_failed", "encoding")
            log.error("events could not be encoded; isolating the events at fault", extra={
                "component_id": self.component_id, "events": len(events), "error": _describe(exc)})
        values: list[bytes] = []
        unencodable = []
        for i, event in enumerate(events):
            try:
                values += encode_values(kind, [event], encoding)
            except Exception as exc:
                values.append(b"")
                unencodable.append((i, _describe(exc)))
        return values, unencodable

    def _fields(self, kind: Kind, events: list[Any]) -> tuple[list[bytes | None] | None,
                                                                list[list[tuple[str, bytes]]] | None,
                                                                list[str] | None]:
        """Each event's key, headers and topic (None for a setting that is not used)."""
        if not self.needs_fields:
            return None, None, None
        if kind is Kind.LOGS:
            objects = events
        elif kind is Kind.JSON_LINES:
            objects = [_loads(line) for line in events]
        else:
            objects = [{"message": line.decode("utf-8", "replace")} for line in events]
        keys = headers = topics = None
        if self.key_of is not None:
            key_of = self.key_of
            texts = [_safely(key_of, o) for o in objects]
            keys = [None if text is None else text.encode("utf-8", "surrogatepass") for text in texts]
            if missing := texts.count(None):
                self.stats.count("missing_key_events", missing)
        if self.header_fields:
            headers = []
            for o in objects:
                found = [(name, _safely(get, o)) for name, get in self.header_fields]
                headers.append([(name, text.encode("utf-8", "surrogatepass")) for name, text in found
                                if text is not None])
        if self.topic_of is not None:
            topics = [self._topic(o) for o in objects]
        return keys, headers, topics

    def _topic(self, event: Any) -> str:
        try:
            topic = self.topic_of(event)  # type: ignore[misc]
        except _MissingField:
            topic = ""
        except Exception:  # an odd value the template cannot render
            self.stats.error("topic_failed", "processing")
            topic = ""
        if not topic or len(topic) > MAX_TOPIC_CHARS or topic in (".", ".."):
            self.stats.count("default_topic_events")
            return self.config.default_topic  # type: ignore[return-value]
        return topic

    def _drop_too_large(self, records: list[Any], events: list[Any], ack: Ack) -> list[Any]:
        """``records`` with those larger than ``max_request_size`` replaced by None (dead-lettered)."""
        limit = self.config.max_request_size
        too_large = []
        estimate = DefaultRecordBatchBuilder.estimate_size_in_bytes
        for i, (key, value, headers) in enumerate(records):
            if len(value) > limit - 200 and (size := estimate(key, value, headers)) > limit:
                too_large.append((events[i], "too_large", f"the record is {size} bytes, more than "
                                  f"max_request_size ({limit})"))
                records[i] = None
        self._reject(too_large, ack)
        return records

    def _reject(self, entries: list[tuple[Any, str, str]], ack: Ack) -> None:
        """Dead-letter (or drop, counted) events that can never be sent; their input batch ends REJECTED."""
        reasons = sorted({reason for _, reason, _ in entries})
        for reason in reasons:
            n = sum(1 for _, r, _ in entries if r == reason)
            self.stats.discard(reason, n)
            self.stats.error(reason, "sending", n)
        if self.dead_letter is not None and not self.dead_letter.write(entries):
            self.stats.error("dead_letter_failed", "sending", len(entries))
        log.error("events rejected: they can never be sent", extra={
            "component_id": self.component_id, "events": len(entries), "reasons": reasons,
            "dead_letter": self.dead_letter.path if self.dead_letter else None})
        ack.retain()
        ack.release(AckStatus.REJECTED)

    async def _append(self, producer: AIOKafkaProducer, topic: str, records: list[Any], ack: Ack) -> None:
        """Append ``records`` (all of ``topic``) to the open record batches of their partitions."""
        self._place(producer, topic, await self._layout(producer, topic), records, ack)

    def _place(self, producer: AIOKafkaProducer, topic: str, partitions: list[int], records: list[Any],
               ack: Ack) -> None:
        count = len(partitions)
        if self.key_of is None:
            turn = self._turn.get(topic, 0)
            self._turn[topic] = turn + 1
            self._fill(producer, topic, partitions[turn % count], records, ack)
            return
        unkeyed = partitions[self._turn.get(topic, 0) % count]
        groups: dict[int, list[Any]] = {}
        partition_of = self.partitioner.partition
        for record in records:
            key = record[0]
            partition = unkeyed if key is None else partitions[partition_of(key, count)]
            group = groups.get(partition)
            if group is None:
                groups[partition] = [record]
            else:
                group.append(record)
        if any(record[0] is None for record in records):
            self._turn[topic] = self._turn.get(topic, 0) + 1
        for partition, group in groups.items():
            self._fill(producer, topic, partition, group, ack)

    async def _layout(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        """The partitions ``topic``'s events are routed to: the brokers' metadata, except that it changes only
        while no partition of the topic is stalled or holds records of a partition the brokers dropped (the
        newer records of a key stay behind the older ones)."""
        layout = self._layouts.get(topic)
        known = producer.client.cluster.partitions_for_topic(topic)
        if layout is None:
            layout = self._layouts[topic] = sorted(known) if known else await self._partitions(producer, topic)
        elif known and (len(known) != len(layout) or not known.issuperset(layout)) and self._may_change(topic, known):
            layout = self._layouts[topic] = sorted(known)
        return layout

    def _may_change(self, topic: str, known: set[int]) -> bool:
        return not any(lane.stalled or (lane.partition not in known and lane.holds())
                       for lane in self._lanes.get(topic, {}).values())

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        """The topic's partitions, sorted; while the brokers do not know the topic (or cannot be reached),
        retried with backoff, counted and logged: the inbox is not read meanwhile."""
        backoff = Backoff(self.config.retry_initial_backoff, self.config.retry_max_backoff)
        while True:
            try:
                found = await producer.partitions_for(topic)
                if found:
                    return sorted(found)
                error = "no partitions"
            except (KafkaError, OSError, TimeoutError) as exc:
                error = _describe(exc)
            self.stats.error("topic_unavailable", "sending")
            delay = backoff.next()
            self.stats.retries += 1
            log.warning("kafka topic not available; holding its events and retrying", extra={
                "component_id": self.component_id, "topic": topic, "error": error, "retry_in_s": round(delay, 3)})
            await asyncio.sleep(delay)

    def _fill(self, producer: AIOKafkaProducer, topic: str, partition: int, records: list[Any], ack: Ack) -> None:
        lanes = self._lanes.get(topic)
        if lanes is None:
            lanes = self._lanes[topic] = {}
        lane = lanes.get(partition)
        if lane is None:
            lane = lanes[partition] = _Lane(topic, partition)
        stamp = int(time.time() * 1000)
        batch = lane.open
        start = 0
        while start < len(records):
            if batch is None:
                batch = lane.open = _RecordBatch(topic, partition, producer.create_batch())
                self._open[lane] = None
            append = batch.builder.append
            taken = start
            for key, value, headers in records[start:]:
                if append(timestamp=stamp, key=key, value=value, headers=headers) is None:
                    break
                taken += 1
            if taken > start:
                batch.records.extend(records[start:taken])
                pieces = batch.pieces
                if pieces and pieces[-1][0] is ack:
                    pieces[-1][1] += taken - start
                else:
                    ack.retain()
                    pieces.append([ack, taken - start])
            if taken < len(records):  # full
                if taken == start and not batch.records:  # cannot happen: an empty builder takes any record
                    raise RuntimeError("a record batch refused its first record")
                self._seal(producer, lane)
                batch = None
            start = taken

    def _seal_expired(self, force: bool = False) -> None:
        producer = self.producer
        if producer is None:
            return
        due = time.monotonic() - self.config.linger
        while self._open:
            lane = next(iter(self._open))
            if not force and lane.open.opened > due:  # type: ignore[union-attr]
                break
            self._seal(producer, lane)
        if time.monotonic() >= self._next_sweep:
            self._sweep()

    def _sweep(self) -> None:
        """Drop the lanes idle and empty for :data:`LANE_IDLE` (and a topic's state with its last lane)."""
        now = time.monotonic()
        self._next_sweep = now + LANE_IDLE
        for topic, lanes in list(self._lanes.items()):
            for partition, lane in list(lanes.items()):
                if not lane.holds() and not lane.sending and lane.used < now - LANE_IDLE:
                    del lanes[partition]
            if not lanes:
                del self._lanes[topic]
                self._layouts.pop(topic, None)
                self._turn.pop(topic, None)

    def _seal(self, producer: AIOKafkaProducer, lane: _Lane) -> None:
        batch, lane.open = lane.open, None
        self._open.pop(lane, None)
        if batch is None or not batch.records:
            return
        lane.sealed.append(batch)
        self._start_sending(producer, lane)

    def _start_sending(self, producer: AIOKafkaProducer, lane: _Lane) -> None:
        lane.used = time.monotonic()
        if not lane.sending and lane.sealed:
            lane.sending = True
            task = asyncio.create_task(self._send_lane(producer, lane), name=f"{self.component_id}-lane")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_lane(self, producer: AIOKafkaProducer, lane: _Lane) -> None:
        """Send the lane's sealed record batches one at a time: the next one goes when the broker has taken the
        one before, and one the broker did not take is sent again first (order per partition, so per key)."""
        try:
            while lane.sealed:
                try:
                    if not await self._send_first(producer, lane):
                        return  # the partition is gone: its records were routed to the others
                except Exception:  # a fault of our own or the client's, not the broker's: tried again later
                    log.exception("sending a record batch failed", extra={"component_id": self.component_id})
                    self.stats.error("send_failed", "sending")
                    if lane.stalled is None:
                        lane.stalled = Backoff(self.config.retry_initial_backoff, self.config.retry_max_backoff)
                    await asyncio.sleep(lane.stalled.next())
        finally:
            lane.sending = False
            lane.used = time.monotonic()

    async def _send_first(self, producer: AIOKafkaProducer, lane: _Lane) -> bool:
        """Send the lane's first sealed record batch (built again if it was sent before) and act on the
        broker's answer; False when the partition is gone and the lane's records went to the others."""
        batch = lane.sealed[0]
        if lane.stalled is not None:  # sent before: its builder is spent
            spent = batch
            batch = lane.sealed[0] = self._rebuilt(producer, spent, spent.pieces_records())
            spent.release(AckStatus.DELIVERED)  # the rebuilt record batch holds its own references
        exc = await self._send(producer, batch)
        if exc is None:
            lane.sealed.popleft()
            lane.stalled = None
            self._delivered(batch)
        elif isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError):
            lane.sealed.popleft()
            lane.sealed.extendleft(reversed(self._split(producer, batch, exc)))
        else:
            return await self._stall(producer, lane, exc)
        return True

    async def _send(self, producer: AIOKafkaProducer, batch: _RecordBatch) -> BaseException | None:
        """Hand ``batch`` to the producer and wait for the broker's answer: None if it took the batch."""
        try:
            future = await producer.send_batch(batch.builder, batch.topic, partition=batch.partition)
        except asyncio.CancelledError:  # stopped while the producer had no room: not sent
            batch.release(AckStatus.ERRORED)
            raise
        except Exception as exc:  # the topic or partition is gone, the producer is closing...
            return exc
        batch.handed = time.monotonic()
        await asyncio.wait([future])  # a stop cancels this wait, never the producer's future
        if future.cancelled():
            return asyncio.CancelledError()
        return future.exception()

    # -- outcomes -------------------------------------------------------------------------------------

    def _delivered(self, batch: _RecordBatch) -> None:
        self.stats.observe_request(time.monotonic() - batch.handed)
        self.stats.sent_events += len(batch.records)
        self.stats.sent_bytes += batch.builder.size()
        batch.release(AckStatus.DELIVERED)

    async def _stall(self, producer: AIOKafkaProducer, lane: _Lane, exc: BaseException) -> bool:
        """The broker did not take the lane's first record batch: after a backoff (fresh metadata meanwhile),
        it is to be sent again first (True), or, if the brokers dropped the partition, every record of the lane
        goes again, in order, to the topic's partitions now (False)."""
        batch = lane.sealed[0]
        self.stats.error(type(exc).__name__, "sending")
        self.stats.retries += 1
        if lane.stalled is None:
            lane.stalled = Backoff(self.config.retry_initial_backoff, self.config.retry_max_backoff)
        delay = lane.stalled.next()
        log.warning("kafka did not take a record batch; sending it again before anything newer of its partition",
                    extra={"component_id": self.component_id, "topic": batch.topic, "partition": batch.partition,
                           "events": len(batch.records), "error": _describe(exc), "retry_in_s": round(delay, 3)})
        update = producer.client.force_metadata_update()
        await asyncio.sleep(delay)
        try:
            async with asyncio.timeout(self.config.request_timeout):
                await update
        except Exception:  # no fresh metadata: the partitions known are used
            pass
        known = producer.client.cluster.partitions_for_topic(lane.topic)
        if known and lane.partition not in known:
            self._reroute(producer, lane, sorted(known))
            return False
        return True

    def _reroute(self, producer: AIOKafkaProducer, lane: _Lane, partitions: list[int]) -> None:
        """The brokers dropped ``lane``'s partition: its records, oldest first, go to ``partitions``."""
        log.warning("kafka partition gone; routing its events to the topic's partitions now", extra={
            "component_id": self.component_id, "topic": lane.topic, "partition": lane.partition})
        if lane.open is not None:
            lane.sealed.append(lane.open)
            lane.open = None
            self._open.pop(lane, None)
        batches = list(lane.sealed)
        lane.sealed.clear()
        try:
            for batch in batches:
                start = 0
                for ack, n in batch.pieces:
                    self._place(producer, lane.topic, partitions, batch.records[start:start + n], ack)
                    start += n
        except BaseException:  # a fault of the client: all kept here, to be routed again (some maybe twice)
            lane.sealed.extend(batches)
            raise
        lane.stalled = None
        for batch in batches:
            batch.release(AckStatus.DELIVERED)  # the new record batches hold their own references
        for other in self._lanes.get(lane.topic, {}).values():
            if other.open is not None:
                self._seal(producer, other)

    def _rebuilt(self, producer: AIOKafkaProducer, batch: _RecordBatch,
                 records: list[tuple[Ack, Any]]) -> _RecordBatch:
        """A new record batch of ``batch``'s partition holding ``records`` ((ack, record) pairs)."""
        rebuilt = _RecordBatch(batch.topic, batch.partition, producer.create_batch())
        for ack, record in records:
            key, value, headers = record
            rebuilt.builder.append(timestamp=None, key=key, value=value, headers=headers)
            rebuilt.records.append(record)
            if rebuilt.pieces and rebuilt.pieces[-1][0] is ack:
                rebuilt.pieces[-1][1] += 1
            else:
                ack.retain()
                rebuilt.pieces.append([ack, 1])
        return rebuilt

    def _split(self, producer: AIOKafkaProducer, batch: _RecordBatch, exc: BaseException) -> list[_RecordBatch]:
        """The broker refused the record batch as too large: its two halves; one event alone is rejected."""
        if len(batch.records) == 1:
            ack = batch.pieces[0][0]
            self._reject([(_record_event(batch.records[0]), "too_large", f"the broker refused it: {_describe(exc)}")],
                         ack)
            batch.release(AckStatus.DELIVERED)
            return []
        records = batch.pieces_records()
        middle = len(records) // 2
        parts = [self._rebuilt(producer, batch, records[:middle]), self._rebuilt(producer, batch, records[middle:])]
        batch.release(AckStatus.DELIVERED)
        return parts

    def _finished(self, batch: Batch, size: int, status: AckStatus) -> None:
        """Every event of an input batch is acknowledged (or rejected)."""
        if self._crashed:  # the supervisor requeues it for the restarted sink
            return
        batch.finalize(status)
        self._held_bytes -= size
        self._held_batches -= 1
        self._room.set()
        if not self._held_batches:
            self._idle.set()

    def _abandon(self) -> None:
        """Stopped at the deadline: every record batch not acknowledged finishes ERRORED, so the sources do not
        move past it and read it again after a restart."""
        self._closing = True
        self._open.clear()
        for lanes in self._lanes.values():
            for lane in lanes.values():
                pending = [*lane.sealed, *([lane.open] if lane.open is not None else [])]
                lane.sealed.clear()
                lane.open = None
                for batch in pending:
                    self.stats.discard("shutdown_timeout", len(batch.records))
                    batch.release(AckStatus.ERRORED)


_TICK: Any = object()
_NO_HEADERS: list[tuple[str, bytes]] = []  # shared, never changed


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return {"message": line.decode("utf-8", "replace")}


def _safely(get: Callable[[Any], str | None], event: Any) -> str | None:
    try:
        return get(event)
    except Exception:  # an event that is not a mapping where the path expects one
        return None


def _record_event(record: tuple[bytes | None, bytes, Any]) -> Any:
    """What the dead letter shows of a record: its key and value as text."""
    key, value, _ = record
    return {"key": None if key is None else key.decode("utf-8", "replace"),
            "value": value.decode("utf-8", "replace")}


def _letter(event: Any) -> Any:
    """What the dead letter shows of an event that could not be encoded: the event, or, when even the lenient
    encoder cannot write it (nested too deep), its outline as text."""
    try:
        whole_json(event)
    except ValueError:
        return reprlib.repr(event)
    return event


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text and text != type(exc).__name__ else type(exc).__name__


async def _close(producer: AIOKafkaProducer) -> None:
    """Stop a producer without waiting long for a broker that is gone."""
    try:
        async with asyncio.timeout(STOP_TIMEOUT):
            await producer.stop()
    except (TimeoutError, KafkaError, OSError) as exc:
        log.warning("kafka producer did not close cleanly", extra={"error": _describe(exc)})

