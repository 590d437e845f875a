"""Source `kafka`: records of a consumer group's partitions, committed only once every sink delivered them.

The consumer (aiokafka) joins ``group_id`` and subscribes to ``topics`` or a ``topic_pattern``; where a
partition has no committed offset it starts at ``auto_offset_reset``. Each ``getmany()`` returns the
records fetched per partition: each partition's records become one batch as they are (decoded by
``encoding``, see :mod:`agent.kafka.decoding`; a record that does not decode goes on raw with ``parse_error``,
counted, so a poison record never holds its partition), with ``kafka: {topic, partition, offset, timestamp,
key}`` on each event unless ``metadata: false``.

Offsets: each batch carries an ack of its partition's :class:`~agent.core.ack.OrderedAcks`, whose token is
the offset after the batch's last record. Only the contiguous prefix of batches every sink acknowledged
moves the partition's position, and positions are committed to the group every ``commit_interval``, when
partitions are revoked, and at stop: in batches, never per record. An ERRORED batch stops its partition's
position for good (the next owner replays from there).

Backpressure: while a batch waits for room downstream, every assigned partition is paused, and the consumer
keeps polling (returning nothing) so it stays in the group; when the batch is taken, they are resumed. What
the process holds is bounded by the batch in hand and one fetch per partition (``max_partition_fetch_bytes``).

Rebalance (eager, as aiokafka does it): before partitions are given up, the source waits up to
``rebalance_drain`` for their batches in flight, then commits what was acknowledged. Batches still in flight
after that are forgotten: their acks commit nothing later, and the new owner reads them again from the
committed offset (at least once; the duplicates are that uncommitted tail).

Static membership: ``group_instance_id`` (KIP-345, JoinGroup v5) keeps a restarted member's partitions
without a rebalance within ``session_timeout``; give each replica its own, e.g. ``${HOSTNAME}`` on a
StatefulSet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from agent.config.model import SourceConfig
from agent.config.registry import BuildContext, register
from agent.config.units import ByteSize, Duration
from agent.core.ack import AckStatus, OrderedAcks
from agent.core.batch import Batch, Kind
from agent.core.component import SourceContext
from agent.core.errors import BuildError
from agent.core.retry import Backoff
from agent.delivery.config import TlsConfig
from agent.kafka.client import SaslConfig, check_servers, client_options
from agent.kafka.decoding import RecordDecoder
from agent.kafka.encoding import Encoding
from agent.kafka.topics import check_topic
from agent.observe.stats import ComponentStats

log = logging.getLogger("agent.sources.kafka")

PAUSE_AFTER = 0.05  # seconds a batch may wait for room downstream before the partitions are paused
KEEPALIVE = 1.0  # seconds between the polls that keep a paused consumer in its group
POLL_TIMEOUT_MS = 250  # a poll's longest wait for records (and so the longest wait to notice a stop)
POLL_DEADLINE = 1.0  # seconds a poll may take at most (aiokafka's waits for a rebalance to finish ignore its timeout)
CLOSE_TIMEOUT = 5.0  # seconds the last commit and the consumer's stop may take each
COMMIT_TIMEOUT = 10.0  # seconds a commit may take (aiokafka retries one while the coordinator is unknown)
LAG_INTERVAL = 2.0  # seconds between two looks at the end offsets of the assigned partitions (the lag gauge)
LAG_TIMEOUT = 5.0  # seconds such a look may take (a broker outage: the gauge keeps its last values)


class KafkaSourceConfig(SourceConfig, tag="kafka"):
    """Consume ``topics`` (or ``topic_pattern``) as a member of the consumer group ``group_id``.

    Each poll's records of a partition become one batch; a record that does not decode goes on raw with
    ``parse_error``, counted. A partition's offset is committed only over the batches every sink downstream
    acknowledged, in order, every ``commit_interval``, on rebalance and at stop. While downstream is full the
    partitions are paused. Brokers that cannot be reached are retried with backoff; the agent keeps running.
    """

    bootstrap_servers: list[str]
    """Brokers to connect to first, as host:port; the rest of the cluster is learnt from them."""
    group_id: str
    """The consumer group: every aggregator replica that shares the topics' partitions uses the same one."""
    topics: list[str] = []
    """Topics to read (or topic_pattern, not both)."""
    topic_pattern: str | None = None
    """A regular expression: every matching topic is read, including ones created later."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a partition the group has no committed offset for starts: its first record or its end."""
    encoding: Encoding = "json"
    """Record value: json (one JSON object), msgpack (one map) or raw (the message), as the kafka sink writes
    them; a value that does not decode goes on as its text with parse_error."""
    metadata: bool = True
    """Add kafka: {topic, partition, offset, timestamp, key} to each event (the key as UTF-8 text, else
    base64)."""
    group_instance_id: str | None = None
    """Static membership (KIP-345): this replica's own stable id, e.g. ${HOSTNAME} on a StatefulSet; a restart
    within session_timeout keeps its partitions (on brokers that implement it)."""
    commit_interval: Duration = Duration(1.0)
    """How often the acknowledged offsets are committed (also on rebalance and at stop)."""
    rebalance_drain: Duration = Duration(5.0)
    """How long a rebalance waits for the batches in flight of the partitions given up before it commits and
    lets them go (the new owner reads what is still in flight again)."""
    max_poll_records: int = 2000
    """Records taken from the consumer at most per poll."""
    max_partition_fetch_bytes: ByteSize = ByteSize(1024 * 1024)
    """What one fetch may bring per partition (with the batch in hand, what the source holds at most)."""
    session_timeout: Duration = Duration(10.0)
    """A member not heard of this long is dead, and its partitions go to the others."""
    heartbeat_interval: Duration = Duration(3.0)
    """How often the member tells the group it is alive (below session_timeout)."""
    max_poll_interval: Duration = Duration(300.0)
    """A member that polls no records for this long leaves the group (paused, it still polls)."""
    retry_initial_backoff: Duration = Duration(0.5)
    """First wait before connecting or fetching again after a failure."""
    retry_max_backoff: Duration = Duration(30.0)
    """Longest wait between retries."""
    client_id: str | None = None
    """Client name the brokers log (aiokafka's default when unset)."""
    sasl: SaslConfig | None = None
    """SASL credentials: mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, username, password."""
    tls: TlsConfig | None = None
    """TLS to the brokers ({} for the system CAs; ca_file, cert_file and key_file for a private CA or mutual
    TLS)."""

    def __post_init__(self) -> None:
        check_servers(self.bootstrap_servers)
        if not self.group_id:
            raise ValueError("group_id must not be empty")
        if bool(self.topics) == (self.topic_pattern is not None):
            raise ValueError("give either topics or topic_pattern")
        for topic in self.topics:
            check_topic(topic, "topics")
        if self.topic_pattern is not None:
            try:
                re.compile(self.topic_pattern)
            except re.error as exc:
                raise ValueError(f"topic_pattern is not a regular expression: {exc}") from None
        if self.max_poll_records < 1:
            raise ValueError("max_poll_records must be at least 1")
        if self.commit_interval <= 0:
            raise ValueError("commit_interval must be positive")
        if not 0 < self.heartbeat_interval < self.session_timeout:
            raise ValueError("heartbeat_interval must be positive and below session_timeout")
        if self.group_instance_id == "":
            raise ValueError("group_instance_id must not be empty (leave it out for dynamic membership)")


class _Partition:
    """One assigned partition: its ordered acks, the position they reached and what was committed."""

    __slots__ = ("acked", "acks", "committed", "end", "fetched", "live", "position", "started", "tp")

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.live = True  # False once revoked: late acks commit nothing
        self.acked: int | None = None  # offset after the acknowledged prefix
        self.committed: int | None = None  # what this member committed last
        self.fetched: int | None = None  # offset after the last record fetched
        self.started: int | None = None  # offset of the first record fetched
        self.end: int | None = None  # the partition's end offset when last looked at (for the lag)
        self.position: int | None = None  # the consumer's position when last looked at, before any fetch
        self.acks: OrderedAcks[int] = OrderedAcks(self._advance)

    def _advance(self, offset: int) -> None:
        if self.live:
            self.acked = offset

    def due(self) -> int | None:
        """The offset to commit, if it moved since the last commit."""
        return self.acked if self.live and self.acked is not None and self.acked != self.committed else None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands aiokafka's rebalance callbacks to the source."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.source.revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.source.assign(assigned)


@register("source", "kafka", KafkaSourceConfig, "Consumes Kafka topics as a member of a consumer group.")
class KafkaSource:
    """Polls batches, tracks acks per partition, commits acknowledged prefixes (see the module docstring)."""

    output_type = "logs"

    def __init__(self, config: KafkaSourceConfig, ctx: BuildContext) -> None:
        self.config = config
        self.id = ctx.component_id
        self.stats: ComponentStats = ctx.stats
        try:
            self.options = client_options(config)
        except BuildError as exc:
            raise BuildError(f"kafka: {exc}") from None
        self.decoder = RecordDecoder(config.encoding, config.metadata)
        self.partitions: dict[TopicPartition, _Partition] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._commit_lock = asyncio.Lock()
        self._commit_task: asyncio.Future[None] | None = None  # aiokafka's commit under way (it may outlive ours)
        self._stash: list[Batch] = []  # batches fetched by a keep-alive poll, sent next
        self._keepalive: asyncio.Task[None] | None = None
        self._unpause = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    def _new_consumer(self) -> AIOKafkaConsumer:
        c = self.config
        consumer = AIOKafkaConsumer(
            **self.options, group_id=c.group_id, group_instance_id=c.group_instance_id,
            auto_offset_reset=c.auto_offset_reset, enable_auto_commit=False,
            max_partition_fetch_bytes=c.max_partition_fetch_bytes,
            session_timeout_ms=int(c.session_timeout * 1000), heartbeat_interval_ms=int(c.heartbeat_interval * 1000),
            max_poll_interval_ms=int(c.max_poll_interval * 1000),
            retry_backoff_ms=int(c.retry_initial_backoff * 1000))
        if c.topic_pattern is not None:
            consumer.subscribe(pattern=c.topic_pattern, listener=_Listener(self))
        else:
            consumer.subscribe(topics=list(c.topics), listener=_Listener(self))
        return consumer

    async def _connect(self, ctx: SourceContext) -> AIOKafkaConsumer | None:
        """A started consumer; retried with backoff while the brokers cannot be reached (None at shutdown)."""
        backoff = Backoff(self.config.retry_initial_backoff, self.config.retry_max_backoff)
        while not ctx.shutdown.is_set():
            consumer = self._new_consumer()
            try:
                await consumer.start()
                log.info("consumer started", extra={"component_id": self.id, "group_id": self.config.group_id})
                return consumer
            except KafkaError as exc:
                await consumer.stop()
                self.stats.error("connect_failed", "receiving")
                log.warning("cannot reach the Kafka brokers; retrying", extra={
                    "component_id": self.id, "bootstrap_servers": self.config.bootstrap_servers, "error": str(exc)})
            await _wait(ctx.shutdown, backoff.next())
        return None

    async def run(self, ctx: SourceContext) -> None:
        self.stats.gauges.update(partitions_assigned=lambda: len(self.partitions),
                                 partitions_paused=self._paused_count, uncommitted_records=self._uncommitted,
                                 lag_records=self._lag)
        consumer = self.consumer = await self._connect(ctx)
        if consumer is None:
            return
        committer = asyncio.create_task(self._commit_every(ctx.shutdown))
        lag_meter = asyncio.create_task(self._measure_lag_every(ctx.shutdown))
        try:
            await self._consume(ctx, consumer)
            for state in list(self.partitions.values()):  # the drain deadline bounds this
                await state.acks.wait_idle()
        finally:
            await self._stop_keepalive()
            committer.cancel()
            lag_meter.cancel()
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.commit()
            except TimeoutError:
                log.warning("the last commit did not finish in time", extra={"component_id": self.id})
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await consumer.stop()
            except TimeoutError:
                pass
            if self._commit_task is not None:  # a commit still waiting for a coordinator: not any more
                self._commit_task.cancel()
            self.consumer = None

    # -- reading --------------------------------------------------------------------------

    async def _consume(self, ctx: SourceContext, consumer: AIOKafkaConsumer) -> None:
        backoff = Backoff(self.config.retry_initial_backoff, self.config.retry_max_backoff)
        max_records = self.config.max_poll_records
        while not ctx.shutdown.is_set():
            if self._stash:
                stash, self._stash = self._stash, []
                for batch in stash:
                    await self._send(ctx, batch)
                continue
            poll = asyncio.timeout(POLL_DEADLINE)
            try:
                async with poll:
                    fetched = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=max_records)
            except (KafkaError, TimeoutError) as exc:
                if poll.expired():  # a rebalance under way holds the poll: look at the stop, then poll again
                    continue
                self.stats.error("fetch_failed", "receiving")
                log.warning("fetch failed; retrying", extra={"component_id": self.id, "error": str(exc)})
                await _wait(ctx.shutdown, backoff.next())
                continue
            backoff.reset()
            for batch in self._batches(fetched):
                await self._send(ctx, batch)
        stash, self._stash = self._stash, []
        for batch in stash:  # fetched by a keep-alive poll, never sent: the position stops before them
            batch.finalize(AckStatus.ERRORED)

    def _batches(self, fetched: dict[TopicPartition, list[Any]]) -> list[Batch]:
        """One batch per partition, tracked now (no await between the fetch and the tracking)."""
        batches = []
        stats, decoder = self.stats, self.decoder
        for tp, records in fetched.items():
            if not records:
                continue
            state = self.partitions.get(tp)
            if state is None:  # not ours any more: the new owner reads it from the committed offset
                stats.count("records_of_revoked_partitions", len(records))
                continue
            errors = decoder.errors
            events, dicts, size = decoder.decode(tp.topic, tp.partition, records)
            if decoder.errors != errors:
                stats.error("parse_failed", "receiving", decoder.errors - errors)
            if state.started is None:
                state.started = records[0].offset
            state.fetched = records[-1].offset + 1
            stats.received_events += len(events)
            stats.received_bytes += sum(r.serialized_value_size for r in records)
            batch = Batch(events, Kind.LOGS if dicts else Kind.LINES, size)
            batch.acks.append(state.acks.track(state.fetched))
            batches.append(batch)
        return batches

    async def _send(self, ctx: SourceContext, batch: Batch) -> None:
        """Send downstream; if that has to wait, pause the partitions (and keep polling) until it is done."""
        timer = asyncio.get_running_loop().call_later(PAUSE_AFTER, self._start_keepalive)
        try:
            await ctx.out.send(batch)
        except asyncio.CancelledError:
            self.stats.discard("shutdown_timeout", len(batch.events))
            raise
        finally:
            timer.cancel()
            if self._keepalive is not None:
                await self._stop_keepalive()

    # -- backpressure ---------------------------------------------------------------------

    def _start_keepalive(self) -> None:
        if self._keepalive is None and self.consumer is not None:
            self.stats.count("pauses")
            self._unpause.clear()
            self._keepalive = asyncio.create_task(self._keep_alive(self.consumer))

    async def _keep_alive(self, consumer: AIOKafkaConsumer) -> None:
        """While downstream is full: every assigned partition paused, and a poll now and then (it returns
        nothing, but shows the group this member is alive)."""
        while not self._unpause.is_set():
            consumer.pause(*consumer.assignment())
            try:
                fetched = await consumer.getmany(timeout_ms=0)
            except KafkaError:
                fetched = {}
            self._stash += self._batches(fetched)  # (a partition assigned meanwhile, not yet paused)
            await _wait(self._unpause, KEEPALIVE)
        consumer.resume(*consumer.paused())

    async def _stop_keepalive(self) -> None:
        task, self._keepalive = self._keepalive, None
        if task is not None:
            self._unpause.set()
            await task

    def _paused_count(self) -> int:
        return len(self.consumer.paused()) if self.consumer is not None else 0

    # -- offsets --------------------------------------------------------------------------

    def assign(self, assigned: Iterable[TopicPartition]) -> None:
        """Partitions given to this member: tracked afresh (the consumer resumes from their committed offsets)."""
        for tp in assigned:
            self.partitions[tp] = _Partition(tp)
        self.stats.count("rebalances", kind="assigned")
        log.info("partitions assigned", extra={"component_id": self.id,
                                               "partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in assigned)})

    async def revoke(self, revoked: Iterable[TopicPartition]) -> None:
        """Before partitions go: wait a little for their batches in flight, commit what was acknowledged,
        then forget them (later acks commit nothing; the new owner reads the rest again)."""
        states = [self.partitions[tp] for tp in revoked if tp in self.partitions]
        if not states:
            return
        try:
            async with asyncio.timeout(self.config.rebalance_drain):
                for state in states:
                    await state.acks.wait_idle()
        except TimeoutError:
            pass
        await self.commit(states)
        left = 0
        for state in states:
            state.live = False
            left += state.acks.in_flight
            del self.partitions[state.tp]
        self.stats.count("rebalances", kind="revoked")
        if left:
            self.stats.count("revoked_batches_in_flight", left)
        log.info("partitions revoked", extra={"component_id": self.id, "batches_in_flight": left,
                                              "partitions": sorted(f"{s.tp.topic}/{s.tp.partition}" for s in states)})

    async def commit(self, states: Iterable[_Partition] | None = None) -> None:
        """Commit the acknowledged positions that moved (one request for all of them)."""
        consumer = self.consumer
        if consumer is None:
            return
        async with self._commit_lock:
            due = {s.tp: (s, offset) for s in (self.partitions.values() if states is None else states)
                   if (offset := s.due()) is not None}
            if not due:
                return
            try:
                async with asyncio.timeout(COMMIT_TIMEOUT):
                    await self._commit_offsets(consumer, {tp: offset for tp, (_, offset) in due.items()})
            except Exception as exc:  # a rebalance under way, the coordinator gone, the client's own fault: later
                self.stats.error("commit_failed", "receiving")
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__  # (a timeout has no text)
                log.warning("offset commit failed", extra={"component_id": self.id, "error": error})
                return
            for state, offset in due.values():
                state.committed = offset
            self.stats.count("commits")

    async def _commit_offsets(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """aiokafka's commit, never cancelled: it shields a task of its own, which a cancel would leave to fail
        later with nobody to read its exception ("Task exception was never retrieved" at error level). A commit
        our timeout gave up on goes on, read by :func:`_retrieved`; the next one waits for it before it starts
        (aiokafka commits one at a time anyway), so they never pile up during an outage."""
        if self._commit_task is not None:
            await asyncio.wait([self._commit_task])  # (a cancel of this wait leaves the task alone)
        task = self._commit_task = asyncio.ensure_future(consumer.commit(offsets))
        task.add_done_callback(_retrieved)
        await asyncio.wait([task])
        self._commit_task = None
        task.result()

    async def _commit_every(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _wait(stop, self.config.commit_interval)
            await self.commit()

    async def _measure_lag_every(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.measure_lag()
            await _wait(stop, LAG_INTERVAL)

    async def measure_lag(self) -> None:
        """Look at the end offsets of the assigned partitions (one ListOffsets request per leader), and at the
        consumer's position in those nothing was fetched from yet: paused partitions are not fetched, so their
        fetches' high watermarks would stand still. Bounded by :data:`LAG_TIMEOUT`; a failure keeps the last
        values."""
        consumer = self.consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        states = [state for tp, state in self.partitions.items() if tp in assigned]
        if not states:
            return
        try:
            async with asyncio.timeout(LAG_TIMEOUT):
                ends = await consumer.end_offsets([state.tp for state in states])
                for state in states:
                    state.end = ends.get(state.tp, state.end)
                for state in states:
                    if state.fetched is None and state.tp in consumer.assignment():
                        state.position = await consumer.position(state.tp)
        except Exception as exc:  # brokers gone, a rebalance under way: the gauge keeps its last values
            log.debug("end offsets not read", extra={"component_id": self.id, "error": repr(exc)})

    def _lag(self) -> int:
        """The group's lag as Kafka's tools show it: each assigned partition's end offset (the fetches' high
        watermark or the last :meth:`measure_lag`, the later) past its committed offset (before this member
        committed, the first offset it fetched; before any fetch, the consumer's position)."""
        consumer, total = self.consumer, 0
        if consumer is not None:
            assigned = consumer.assignment()  # (aiokafka asserts on a partition it no longer has)
            for tp, state in self.partitions.items():
                if tp not in assigned:
                    continue
                end = max(consumer.highwater(tp) or 0, state.end or 0)
                done = next((o for o in (state.committed, state.started, state.position) if o is not None), None)
                if done is not None:
                    total += max(0, end - done)
        return total

    def _uncommitted(self) -> int:
        """Records fetched but not committed (what a crash now would have the group read again)."""
        total = 0
        for state in self.partitions.values():
            if state.fetched is not None:
                total += state.fetched - (state.committed if state.committed is not None else state.started or 0)
        return total



def _retrieved(task: asyncio.Future[None]) -> None:
    """Reads a finished commit's exception (whoever waited for it logged it; or nobody did)."""
    if not task.cancelled():
        task.exception()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` passed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
