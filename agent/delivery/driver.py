"""The delivery loop of every HTTP sink: inbox -> batcher -> requests in flight -> retries -> acks.

A sink supplies a :class:`RequestSink`: how events are partitioned,
encoded (pure, unit-testable) and sent (one HTTP exchange, returning which
events to retry and which were rejected). The driver owns batching,
concurrency, backoff, Retry-After, the retry deadline, dead letters, acks
and metrics, the same way for every sink.

Acks: a request finishes its acks DELIVERED when everything arrived,
REJECTED when some events were refused for good (they went to the dead
letter, or were dropped and counted), and ERRORED when retries ran out
(``retry_max_duration``) or the agent was stopped at its deadline: then the
source does not move past them and reads them again after a restart.

Faults stay in their request: an unexpected exception from a sink's ``send``
(a peer's odd answer) is a retryable error of that request, logged with the
component id and counted; one from ``encode`` is the data's: the request is
split until the event that cannot be encoded is alone, and that event goes to
the dead letter (``encode_failed``). An outcome that names events the request
does not have is not trusted: the whole request is sent again. Nothing a
single request does ends :meth:`HttpDriver.run`.

A request split in two (413, or an encode failure) keeps both halves on the
task's list of parts until each is finished, so a reload hands back every
part still held.

Ordered partitions: a sink with ``ordered_partitions = True`` (remote-write,
where one series' samples must arrive in time order) never has two requests
of one partition key in flight: a request waits until the one formed before
it with the same key has finished (delivered, rejected or given up), and the
halves of a split go one after the other. Requests of different keys still
run concurrently, up to the concurrency limit.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.core.ack import AckStatus
from agent.core.component import Inbox, SinkContext
from agent.core.errors import DeliveryError, HealthcheckError, PermanentError, RetryableError
from agent.core.retry import Backoff
from agent.delivery.batcher import Batcher, Request
from agent.delivery.concurrency import Limiter
from agent.delivery.config import HttpSinkConfig
from agent.delivery.dead_letter import DeadLetterFile
from agent.delivery.http import HttpClient, InvalidResponse
from agent.observe.stats import ComponentStats

log = logging.getLogger("agent.delivery")


class PayloadTooLarge(Exception):
    """The encoded events exceed what the peer accepts in one request: the driver splits them."""


class EncodeFailed(Exception):
    """The sink's ``encode`` raised: some event in the request cannot be encoded."""


@dataclass(slots=True)
class Outcome:
    """What the peer did with a request: indexes to send again, and those refused for good."""

    retry: list[int] = field(default_factory=list)
    retry_after: float | None = None
    rejected: list[tuple[int, str, Any]] = field(default_factory=list)  # (index, reason, peer's error)


class _Turn:
    """One request's place in its partition's line (see "Ordered partitions" in the module docstring)."""

    __slots__ = ("_key", "_line", "_mine", "_previous")

    def __init__(self, line: dict[Hashable, asyncio.Future[None]], key: Hashable) -> None:
        self._line, self._key = line, key
        self._previous = line.get(key)
        self._mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line[key] = self._mine

    async def wait(self) -> None:
        """Until the previous request of this key has finished."""
        if self._previous is not None and not self._previous.done():
            await asyncio.shield(self._previous)  # a cancelled waiter must not cancel the request before it

    def finish(self) -> None:
        """Let the next request of this key go, once every earlier one has finished too."""
        previous = self._previous
        if previous is None or previous.done():
            self._done()
        else:  # cancelled while waiting: the next one still waits for the one before this
            previous.add_done_callback(lambda _: self._done())

    def _done(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)
        if self._line.get(self._key) is self._mine:
            del self._line[self._key]


class RequestSink(Protocol):
    """What an HTTP sink implements; everything else is the driver's."""

    partition_key: Callable[[Any], Hashable] | None  # None: one partition
    # optional: ``ordered_partitions = True`` sends one partition's requests one at a time, in order

    def encode(self, request: Request) -> bytes: ...  # pure; may raise PayloadTooLarge

    async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome: ...

    async def check(self, client: HttpClient) -> None: ...  # the peer answers sensibly; else HealthcheckError


class HttpDriver:
    """Runs one HTTP sink (see the module docstring)."""

    def __init__(self, sink: RequestSink, config: HttpSinkConfig, component_id: str, stats: ComponentStats,
                 tls_context: ssl.SSLContext | None = None) -> None:
        """``tls_context``, when given, is used instead of one built from ``config.tls``."""
        self.sink = sink
        self.config = config
        self.component_id = component_id
        self.stats = stats
        request = config.request
        self.client = HttpClient(tls_context or config.tls, config.auth, request.headers, request.timeout)
        adaptive = request.concurrency == "adaptive"
        self.limiter = Limiter(request.max_concurrency if adaptive else int(request.concurrency),
                               adaptive=adaptive, maximum=request.max_concurrency)
        self.dead_letter = DeadLetterFile(config.dead_letter.path, component_id) if config.dead_letter else None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._handing_back: SinkContext | None = None
        self._inbox: Inbox | None = None  # while the main loop reads it: where a request a driver fault hit goes back
        self._fault_backoff = Backoff(config.request.retry_initial_backoff, config.request.retry_max_backoff)
        # partition key -> the last request formed for it (ordered partitions only)
        self._lines: dict[Hashable, asyncio.Future[None]] | None = \
            {} if getattr(sink, "ordered_partitions", False) else None

    async def healthcheck(self) -> None:
        """The sink's own check, for `agent validate`."""
        try:
            await self.sink.check(self.client)
        finally:
            await self.client.close()

    async def run(self, ctx: SinkContext) -> None:
        batch_config = self.config.batch
        batcher = Batcher(self.sink.partition_key, batch_config.max_events, batch_config.max_bytes,
                          batch_config.timeout)
        try:
            if self.config.healthcheck:
                await self._startup_check()
            async with asyncio.TaskGroup() as tasks:
                self._inbox = ctx.inbox
                try:
                    await self._read(ctx, batcher, tasks)
                except Exception:  # a fault of the loop itself: everything held goes back before the task dies
                    if self._handing_back is None:
                        self._hand_back(ctx, batcher, [])
                    raise
                finally:
                    self._inbox = None
                if ctx.inbox.interrupted and self._handing_back is None:
                    self._hand_back(ctx, batcher, [])
                for request in batcher.drain():
                    await self.limiter.acquire()
                    tasks.create_task(self._deliver(request), name=f"{self.component_id}-request")
        finally:
            await self.client.close()
            if self.dead_letter is not None:
                self.dead_letter.close()

    async def _read(self, ctx: SinkContext, batcher: Batcher, tasks: asyncio.TaskGroup) -> None:
        """Batch what the inbox gives and send it, a task per request, until the inbox ends or is handed back."""
        while (requests := await self._next_requests(ctx, batcher)) is not None:
            for index, request in enumerate(requests):
                if not await self._slot(ctx):  # all slots busy: stop reading, the inbox fills
                    self._hand_back(ctx, batcher, requests[index:])
                    break
                self._in_flight.add(tasks.create_task(self._deliver(request), name=f"{self.component_id}-request"))
            if self._handing_back is not None:
                break

    async def _startup_check(self) -> None:
        try:
            await self.sink.check(self.client)
        except HealthcheckError as exc:
            log.warning("healthcheck failed; starting anyway", extra={"component_id": self.component_id,
                                                                      "error": str(exc)})

    async def _next_requests(self, ctx: SinkContext, batcher: Batcher) -> list[Request] | None:
        """Requests ready to send: full partitions, or expired ones; None when the inbox has ended."""
        deadline = batcher.next_deadline()
        try:
            async with asyncio.timeout(None if deadline is None else max(0.0, deadline - time.monotonic())):
                batch = await ctx.inbox.get()
            if batch is None:
                return None
        except TimeoutError:
            return batcher.expired()
        self.stats.received_events += len(batch.events)
        self.stats.received_bytes += batch.byte_size
        key_errors = batcher.key_errors
        requests = batcher.add(batch)
        if batcher.key_errors != key_errors:
            self.stats.error("partition_key_failed", "processing", batcher.key_errors - key_errors)
        return requests + batcher.expired()

    async def _slot(self, ctx: SinkContext) -> bool:
        """Wait for a free request slot; False if a reload interrupts the wait."""
        if self.limiter.try_acquire():
            return True
        acquire = asyncio.ensure_future(self.limiter.acquire())
        interrupted = asyncio.ensure_future(ctx.inbox.wait_interrupted())
        await asyncio.wait([acquire, interrupted], return_when=asyncio.FIRST_COMPLETED)
        interrupted.cancel()
        if acquire.done():
            return True
        acquire.cancel()
        return False

    def _hand_back(self, ctx: SinkContext, batcher: Batcher, pending: list[Request]) -> None:
        """A reload replaces this sink: give every request it holds back to the inbox for the new one.

        Requests still retrying (a peer that is down, a refused key) would
        otherwise hold the reload up for as long as the outage lasts.
        """
        self._handing_back = ctx
        for request in [*pending, *batcher.drain()]:
            ctx.inbox.requeue(request.as_batch())
        for task in self._in_flight:
            task.cancel()

    async def _deliver(self, request: Request) -> None:
        turn = None if self._lines is None else _Turn(self._lines, request.key)  # before any await: in order
        parts = [request]  # the parts not finished yet; the first is the one being sent
        try:
            if turn is not None:
                await turn.wait()
            while parts:
                halves = await self._deliver_until_done(parts[0])
                parts[:1] = halves  # no await in between: a split's halves are never out of reach
        except asyncio.CancelledError:
            for part in parts:
                if self._handing_back is not None:  # not lost: the next instance sends it (maybe again)
                    self._handing_back.inbox.requeue(part.as_batch())
                else:
                    self.stats.discard("shutdown_timeout", len(part.events))
                    part.finalize(AckStatus.ERRORED)
            raise
        except Exception:  # a fault of the driver's own, not of the request: keep the sink running
            self.stats.error("internal", "sending")
            log.exception("delivery failed unexpectedly; its events go back to the sink's inbox",
                          extra={"component_id": self.component_id})
            await self._back_to_inbox(parts)
        finally:
            if turn is not None:
                turn.finish()
            self.limiter.release()
            self._in_flight.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _back_to_inbox(self, parts: list[Request]) -> None:
        """After a backoff (a fault that repeats must not spin), requeue ``parts`` to be batched and sent again.

        Once the main loop has stopped reading (the inbox ended), nothing would read them: they finish
        ERRORED instead, and the source reads them again after a restart.
        """
        try:
            await asyncio.sleep(self._fault_backoff.next())
        finally:  # also when cancelled: a hand-back takes them, a hard stop finishes them ERRORED
            for part in parts:
                target = self._handing_back.inbox if self._handing_back is not None else self._inbox
                if target is None:
                    part.finalize(AckStatus.ERRORED)
                else:
                    target.requeue(part.as_batch())

    async def _deliver_until_done(self, request: Request) -> list[Request]:
        """Send ``request`` until it is finished (returns []) or has to be split (returns its two halves)."""
        request_config = self.config.request
        backoff = Backoff(request_config.retry_initial_backoff, request_config.retry_max_backoff)
        rejected_any = False
        while True:
            try:
                outcome = await self._attempt(request)
            except PayloadTooLarge:
                return self._split(request, "too_large", "a single event is larger than the peer accepts")
            except EncodeFailed as exc:
                self.stats.error("encode_failed", "encoding")
                log.error("events could not be encoded; isolating the event at fault", extra={
                    "component_id": self.component_id, "events": len(request.events), "error": str(exc.__cause__)})
                return self._split(request, "encode_failed", repr(exc.__cause__))
            except PermanentError as exc:
                self._reject(request, [(i, "rejected", str(exc)) for i in range(len(request.events))])
                request.finalize(AckStatus.REJECTED)
                return []
            except RetryableError as exc:
                self.stats.error(getattr(exc, "error_type", "request_failed"), "sending")
                wait, reason = backoff.next(exc.retry_after), str(exc)
            else:
                if outcome.rejected:
                    rejected_any = True
                    self._reject(request, outcome.rejected)
                delivered = len(request.events) - len(outcome.retry) - len(outcome.rejected)
                self.stats.sent_events += delivered
                if not outcome.retry:
                    request.finalize(AckStatus.REJECTED if rejected_any else AckStatus.DELIVERED)
                    return []
                request.events = [request.events[i] for i in outcome.retry]
                self.stats.error("partial_failure", "sending")
                wait, reason = backoff.next(outcome.retry_after), f"{len(outcome.retry)} events to retry"
            if not self._may_retry(request, wait):
                return []
            self.stats.retries += 1
            log.warning("delivery failed; retrying", extra={
                "component_id": self.component_id, "error": reason, "events": len(request.events),
                "retry_in_s": round(wait, 3)})
            await asyncio.sleep(wait)

    async def _attempt(self, request: Request) -> Outcome:
        """One exchange; any exception but PayloadTooLarge, EncodeFailed and the delivery errors is retryable."""
        try:
            body = self.sink.encode(request)
        except PayloadTooLarge:
            raise
        except Exception as exc:
            raise EncodeFailed() from exc
        started = time.perf_counter()
        throttled = False
        try:
            outcome = await self.sink.send(self.client, request, body)
        except (PayloadTooLarge, DeliveryError) as exc:
            throttled = getattr(exc, "error_type", None) == "throttled"
            raise
        except Exception as exc:  # a peer's odd answer the sink did not expect: this request's error only
            log.error("unexpected error sending a request", exc_info=True,
                      extra={"component_id": self.component_id, "events": len(request.events)})
            raise InvalidResponse(f"{type(exc).__name__}: {exc}", "unexpected_error") from None
        finally:
            latency = time.perf_counter() - started
            self.stats.observe_request(latency)
            self.limiter.observe(latency, throttled)
        self.stats.sent_bytes += len(body)
        return _checked(outcome, len(request.events))

    def _may_retry(self, request: Request, wait: float) -> bool:
        limit = self.config.request.retry_max_duration
        if limit is None or time.monotonic() - request.started + wait <= limit:
            return True
        self.stats.discard("retries_exhausted", len(request.events))
        log.error("giving up after retry_max_duration; the source will read these events again after a restart",
                  extra={"component_id": self.component_id, "events": len(request.events)})
        request.finalize(AckStatus.ERRORED)
        return False

    def _split(self, request: Request, reason: str, error: str) -> list[Request]:
        """The two halves of ``request`` (the first is ``request`` itself); a single event is rejected instead."""
        if len(request.events) == 1:
            self._reject(request, [(0, reason, error)])
            request.finalize(AckStatus.REJECTED)
            return []
        half = len(request.events) // 2
        for ack in request.acks:
            ack.retain()
        second = Request(request.kind, request.key, request.events[half:], list(request.acks),
                         request.byte_size // 2)
        request.events = request.events[:half]
        request.byte_size -= second.byte_size
        return [request, second]

    def _reject(self, request: Request, rejected: list[tuple[int, str, Any]]) -> None:
        """Dead-letter (or drop, counted) events the peer refused for good."""
        self.stats.discard("rejected", len(rejected))
        reasons = sorted({reason for _, reason, _ in rejected})
        self.stats.error("rejected", "sending", len(rejected))
        if self.dead_letter is not None and not self.dead_letter.write(
                [(request.events[i], reason, error) for i, reason, error in rejected]):
            self.stats.error("dead_letter_failed", "sending", len(rejected))
        log.error("events rejected by the peer", extra={
            "component_id": self.component_id, "events": len(rejected), "reasons": reasons,
            "dead_letter": self.dead_letter.path if self.dead_letter else None})


def _checked(outcome: Outcome, events: int) -> Outcome:
    """``outcome``, unless it names events the request does not have (or one twice): then the request is retried."""
    if not outcome.retry and not outcome.rejected:
        return outcome
    named = [*outcome.retry, *(i for i, _, _ in outcome.rejected)]
    if len(set(named)) != len(named) or not all(0 <= i < events for i in named):
        raise InvalidResponse(f"the peer's answer names events the request of {events} does not have",
                              "item_count_mismatch")
    return outcome
