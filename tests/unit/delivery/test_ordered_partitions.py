"""The driver's ordered partitions: one request of a key in flight at a time, in the order the requests were formed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Hashable
from typing import Any

from agent.buffers.memory import MemoryBuffer
from agent.config.units import Duration
from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.core.component import SinkContext
from agent.core.errors import PermanentError, RetryableError
from agent.delivery.batcher import Request
from agent.delivery.config import BatchConfig, HttpSinkConfig, RequestConfig
from agent.delivery.driver import HttpDriver, Outcome
from agent.delivery.http import HttpClient
from agent.observe.stats import ComponentStats


class KeyedSink:
    """Events are (key, n); the first attempt of every request with n in ``fail_first`` fails (retryable),
    those in ``reject`` are refused for good. Records what was in flight per key."""

    def __init__(self, ordered: bool, fail_first: set[int], reject: frozenset[int] = frozenset()) -> None:
        self.ordered_partitions = ordered
        self.fail_first = set(fail_first)
        self.reject = reject
        self.in_flight: dict[Hashable, int] = defaultdict(int)
        self.most_in_flight: dict[Hashable, int] = defaultdict(int)
        self.most_in_flight_overall = 0
        self.delivered: dict[Hashable, list[int]] = defaultdict(list)

    @staticmethod
    def partition_key(event: Any) -> Hashable:
        return event[0]

    def encode(self, request: Request) -> bytes:
        return b"x"

    async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome:
        key, n = request.events[0]
        self.in_flight[key] += 1
        self.most_in_flight[key] = max(self.most_in_flight[key], self.in_flight[key])
        self.most_in_flight_overall = max(self.most_in_flight_overall, sum(self.in_flight.values()))
        try:
            await asyncio.sleep(0.002 * (n % 3))  # uneven latencies: later requests could overtake
            if n in self.fail_first:
                self.fail_first.discard(n)
                raise RetryableError("503")
            if n in self.reject:
                raise PermanentError("400 out of order sample")
            self.delivered[key].append(n)
            return Outcome()
        finally:
            self.in_flight[key] -= 1

    async def check(self, client: HttpClient) -> None:
        return None


async def run(sink: KeyedSink, events: list[tuple[str, int]]) -> AckStatus | None:
    stats = ComponentStats("sink", "sink", "test")
    cfg = HttpSinkConfig(inputs=["x"], healthcheck=False,
                         batch=BatchConfig(max_events=1, timeout=Duration(0.01)),
                         request=RequestConfig(concurrency=8, retry_initial_backoff=Duration(0.005),
                                               retry_max_backoff=Duration(0.01)))
    inbox = MemoryBuffer(10_000, 1 << 30, "block", stats)
    status: list[AckStatus] = []
    await inbox.put(Batch(events, Kind.METRICS, 10 * len(events), [Ack(status.append)]))
    inbox.close()
    await asyncio.wait_for(HttpDriver(sink, cfg, "sink", stats).run(SinkContext("sink", inbox, stats)), 10)
    return status[0] if status else None


EVENTS = [(key, n) for n in range(30) for key in ("a", "b", "c")]


async def test_one_request_per_key_in_flight_and_each_key_delivered_in_order() -> None:
    sink = KeyedSink(ordered=True, fail_first={0, 4, 9})
    assert await run(sink, EVENTS) is AckStatus.DELIVERED
    assert dict(sink.delivered) == {key: list(range(30)) for key in ("a", "b", "c")}
    assert max(sink.most_in_flight.values()) == 1
    assert sink.most_in_flight_overall > 1  # the keys still go concurrently


async def test_without_the_opt_in_requests_of_a_key_overlap_and_overtake() -> None:
    """The same scenario unordered: what the opt-in prevents (and what the driver does for log sinks)."""
    sink = KeyedSink(ordered=False, fail_first={0, 4, 9})
    assert await run(sink, EVENTS) is AckStatus.DELIVERED
    assert max(sink.most_in_flight.values()) > 1
    assert any(sent != sorted(sent) for sent in sink.delivered.values())


async def test_a_request_refused_for_good_lets_the_next_of_its_key_go() -> None:
    sink = KeyedSink(ordered=True, fail_first=set(), reject=frozenset({3}))
    assert await run(sink, EVENTS) is AckStatus.REJECTED
    assert dict(sink.delivered) == {key: [n for n in range(30) if n != 3] for key in ("a", "b", "c")}
    assert max(sink.most_in_flight.values()) == 1


async def test_a_reload_while_requests_wait_for_their_turn_hands_every_one_back() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    class Slow(KeyedSink):
        async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome:
            started.set()
            await release.wait()  # the first request of the key hangs; the others wait for their turn
            return Outcome()

    sink = Slow(ordered=True, fail_first=set())
    stats = ComponentStats("sink", "sink", "test")
    cfg = HttpSinkConfig(inputs=["x"], healthcheck=False, batch=BatchConfig(max_events=1, timeout=Duration(0.01)),
                         request=RequestConfig(concurrency=8))
    inbox = MemoryBuffer(10_000, 1 << 30, "block", stats)
    events = [("a", n) for n in range(5)]
    await inbox.put(Batch(events, Kind.METRICS, 50, [Ack(lambda status: None)]))
    run_task = asyncio.create_task(HttpDriver(sink, cfg, "sink", stats).run(SinkContext("sink", inbox, stats)))
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.02)
    inbox.interrupt()
    await asyncio.wait_for(run_task, 5)
    inbox.resume()
    inbox.close()
    handed_back = []
    while (batch := await inbox.get()) is not None:
        handed_back.extend(batch.events)
        batch.finalize(AckStatus.DELIVERED)
    assert sorted(handed_back) == events
