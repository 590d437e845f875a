"""The HTTP driver with scripted sinks (no network): faults stay in their request, splits survive a reload."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from agent.buffers.memory import MemoryBuffer
from agent.config.units import Duration
from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.core.component import SinkContext
from agent.delivery.batcher import Request
from agent.delivery.config import BatchConfig, DeadLetterConfig, HttpSinkConfig, RequestConfig
from agent.delivery.dead_letter import DeadLetterFile
from agent.delivery.driver import HttpDriver, Outcome, PayloadTooLarge
from agent.delivery.http import HttpClient
from agent.observe.stats import ComponentStats

Send = Callable[[Request], Outcome]


class ScriptedSink:
    """A RequestSink whose encode and send are plain functions the test supplies."""

    partition_key: Callable[[Any], Hashable] | None = None

    def __init__(self, send: Send, encode: Callable[[Request], bytes] | None = None) -> None:
        self._send = send
        self._encode = encode
        self.sent: list[list[Any]] = []

    def encode(self, request: Request) -> bytes:
        return self._encode(request) if self._encode else json.dumps(request.events).encode()

    async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome:
        await asyncio.sleep(0)
        outcome = self._send(request)
        if not outcome.retry and not outcome.rejected:
            self.sent.append(list(request.events))
        return outcome

    async def check(self, client: HttpClient) -> None:
        return None


def config(tmp_path: Path | None = None, max_events: int = 100) -> HttpSinkConfig:
    return HttpSinkConfig(
        inputs=["x"], healthcheck=False,
        batch=BatchConfig(max_events=max_events, timeout=Duration(0.01)),
        request=RequestConfig(retry_initial_backoff=Duration(0.001), retry_max_backoff=Duration(0.01)),
        dead_letter=DeadLetterConfig(path=str(tmp_path / "dl" / "dead.ndjson")) if tmp_path else None)


class Tracked:
    """One ack for one input batch, recording the status it finished with."""

    def __init__(self) -> None:
        self.status: AckStatus | None = None
        self.ack = Ack(self._done)

    def _done(self, status: AckStatus) -> None:
        self.status = status


async def run_driver(sink: ScriptedSink, events: list[Any], cfg: HttpSinkConfig,
                     stats: ComponentStats) -> tuple[Tracked, MemoryBuffer]:
    inbox = MemoryBuffer(10_000, 1 << 30, "block", stats)
    tracked = Tracked()
    await inbox.put(Batch(events, Kind.LOGS, 10 * len(events), [tracked.ack]))
    inbox.close()
    driver = HttpDriver(sink, cfg, "sink", stats)
    await asyncio.wait_for(driver.run(SinkContext("sink", inbox, stats)), 10)
    return tracked, inbox


def stats() -> ComponentStats:
    return ComponentStats("sink", "sink", "test")


async def test_a_reload_during_a_413_split_hands_back_both_halves() -> None:
    """Issue 8.4: the second half lived in a local variable; only the first was handed to the successor."""
    first_half_sent = asyncio.Event()
    never = asyncio.Event()

    class Splitting(ScriptedSink):
        async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome:
            if len(request.events) > 2:
                raise PayloadTooLarge()
            first_half_sent.set()
            await never.wait()  # the peer is slow: the reload comes while the first half is in flight
            return Outcome()

    st = stats()
    inbox = MemoryBuffer(10_000, 1 << 30, "block", st)
    tracked = Tracked()
    await inbox.put(Batch([0, 1, 2, 3], Kind.LOGS, 40, [tracked.ack]))
    driver = HttpDriver(Splitting(lambda r: Outcome()), config(max_events=4), "sink", st)
    run = asyncio.create_task(driver.run(SinkContext("sink", inbox, st)))
    await asyncio.wait_for(first_half_sent.wait(), 5)
    inbox.interrupt()  # a reload replaces the sink
    await asyncio.wait_for(run, 5)
    inbox.resume()
    inbox.close()
    handed_back: list[Any] = []
    while (batch := await inbox.get()) is not None:
        handed_back.extend(batch.events)
        batch.finalize(AckStatus.DELIVERED)  # the successor delivers them
    assert sorted(handed_back) == [0, 1, 2, 3]
    assert tracked.status is AckStatus.DELIVERED  # every part released its reference: the checkpoint moves


async def test_an_unexpected_exception_in_send_is_a_retried_error_of_that_request() -> None:
    calls = 0

    def send(request: Request) -> Outcome:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise KeyError("a peer's odd answer")
        return Outcome()

    sink, st = ScriptedSink(send), stats()
    tracked, _ = await run_driver(sink, [1, 2, 3], config(), st)
    assert sink.sent == [[1, 2, 3]] and tracked.status is AckStatus.DELIVERED
    assert st.errors[("unexpected_error", "sending")] == 2 and st.retries == 2


async def test_an_event_that_cannot_be_encoded_is_isolated_and_dead_lettered(tmp_path: Path) -> None:
    def encode(request: Request) -> bytes:
        if "bad" in request.events:
            raise TypeError("cannot encode")
        return json.dumps(request.events).encode()

    events: list[Any] = [0, 1, 2, "bad", 4, 5, 6]
    sink, st = ScriptedSink(lambda r: Outcome(), encode), stats()
    tracked, _ = await run_driver(sink, events, config(tmp_path), st)
    assert sorted(e for part in sink.sent for e in part) == [0, 1, 2, 4, 5, 6]
    letters = [json.loads(line) for line in (tmp_path / "dl" / "dead.ndjson").read_text().splitlines()]
    assert [(entry["event"], entry["reason"]) for entry in letters] == [("bad", "encode_failed")]
    assert "cannot encode" in letters[0]["error"]
    assert tracked.status is AckStatus.REJECTED and st.discarded["rejected"] == 1
    assert st.errors[("encode_failed", "encoding")] >= 1


async def test_an_outcome_naming_events_the_request_lacks_retries_the_whole_request() -> None:
    """Issue 15.1 at the driver: an index past the end raised IndexError out of run()."""
    answers = [Outcome(retry=[0, 5]), Outcome(rejected=[(1, "x", None), (1, "x", None)]), Outcome()]
    sink, st = ScriptedSink(lambda r: answers.pop(0)), stats()
    tracked, _ = await run_driver(sink, ["a", "b"], config(), st)
    assert sink.sent == [["a", "b"]] and tracked.status is AckStatus.DELIVERED
    assert st.errors[("item_count_mismatch", "sending")] == 2 and st.sent_events == 2


def test_the_dead_letter_file_touches_the_disk_only_when_written(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "dead.ndjson"
    letters = DeadLetterFile(str(path), "sink")
    assert not (tmp_path / "a").exists()  # `agent validate` builds sinks: it must create nothing
    assert letters.write([({"n": 1}, "rejected", "HTTP 400")])
    letters.close()
    assert json.loads(path.read_text())["event"] == {"n": 1}


async def test_a_dead_letter_path_that_cannot_be_opened_is_counted_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "dl").write_text("a file where the directory should be")
    sink, st = ScriptedSink(lambda r: Outcome(rejected=[(0, "mapper_parsing_exception", {})])), stats()
    tracked, _ = await run_driver(sink, [{"n": 1}], config(tmp_path), st)
    assert tracked.status is AckStatus.REJECTED
    assert st.discarded["rejected"] == 1 and st.errors[("dead_letter_failed", "sending")] == 1


async def test_a_driver_fault_sends_the_request_back_through_the_inbox_not_errored() -> None:
    """Review finding: a fault of the driver's own finished the request ERRORED, freezing the file's checkpoint."""
    sink, st = ScriptedSink(lambda r: Outcome()), stats()
    driver = HttpDriver(sink, config(), "sink", st)
    original = driver._deliver_until_done
    faults = [RuntimeError("a bug in the driver")]

    async def once_faulty(request: Request) -> list[Request]:
        if faults:
            raise faults.pop()
        return await original(request)

    driver._deliver_until_done = once_faulty  # type: ignore[method-assign]
    inbox = MemoryBuffer(10_000, 1 << 30, "block", st)
    tracked = Tracked()
    await inbox.put(Batch([1, 2, 3], Kind.LOGS, 30, [tracked.ack]))
    run = asyncio.create_task(driver.run(SinkContext("sink", inbox, st)))
    for _ in range(200):  # bounded: the retry comes after a backoff of at most 10 ms
        if tracked.status is not None:
            break
        await asyncio.sleep(0.01)
    assert tracked.status is AckStatus.DELIVERED  # while the inbox is still open: the reader woke for it
    inbox.close()
    await asyncio.wait_for(run, 5)
    assert sink.sent == [[1, 2, 3]]
    assert st.errors[("internal", "sending")] == 1


async def test_a_fault_of_the_main_loop_hands_everything_held_back_to_the_inbox() -> None:
    """Review finding: events waiting in the batcher were neither sent nor released when the driver died."""
    sink, st = ScriptedSink(lambda r: Outcome()), stats()
    cfg = config(max_events=100)
    cfg.batch.timeout = Duration(60.0)  # the first batch waits in its partition
    driver = HttpDriver(sink, cfg, "sink", st)
    inbox = MemoryBuffer(10_000, 1 << 30, "block", st)
    tracked = Tracked()
    await inbox.put(Batch([1, 2, 3], Kind.LOGS, 30, [tracked.ack]))
    original = driver._next_requests
    calls = 0

    async def faulty_second_time(ctx: SinkContext, batcher: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("a bug in the loop")
        return await original(ctx, batcher)

    driver._next_requests = faulty_second_time  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(driver.run(SinkContext("sink", inbox, st)), 5)
        raise AssertionError("the fault must end run() so the supervisor restarts the sink")
    except* RuntimeError:
        pass
    assert tracked.status is None  # not ERRORED: still pending, and back in the inbox for the restarted sink
    inbox.close()
    batch = await inbox.get()
    assert batch is not None and batch.events == [1, 2, 3]
    batch.finalize(AckStatus.DELIVERED)
    assert tracked.status is AckStatus.DELIVERED
