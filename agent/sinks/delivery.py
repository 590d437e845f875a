"""The delivery loop shared by sinks that write each batch as it arrives.

``write`` is retried with jittered backoff until it succeeds, so a peer that
is down holds the batch (and, through acks, the sources' checkpoints) back
instead of losing it. A :class:`PermanentError` rejects the batch for good
(counted). Cancellation at the shutdown deadline finalizes the batch in hand
as not delivered, so its source replays it after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from agent.core.ack import AckStatus
from agent.core.batch import Batch
from agent.core.component import SinkContext
from agent.core.errors import PermanentError, RetryableError
from agent.core.retry import Backoff

log = logging.getLogger("agent.sinks")

Write = Callable[[Batch], Awaitable[int]]  # returns the bytes written


async def deliver_each(ctx: SinkContext, write: Write, backoff: Backoff | None = None) -> None:
    """Read the inbox until it ends, delivering each batch with ``write``."""
    backoff = backoff or Backoff(initial=0.2, cap=30.0)
    stats = ctx.stats
    while (batch := await ctx.inbox.get()) is not None:
        stats.received_events += len(batch.events)
        stats.received_bytes += batch.byte_size
        await deliver_one(ctx, batch, write, backoff)


async def deliver_one(ctx: SinkContext, batch: Batch, write: Write, backoff: Backoff) -> None:
    """Write one batch, retrying until it is delivered or rejected; releases its acks once."""
    stats = ctx.stats
    try:
        while True:
            started = time.perf_counter()
            try:
                written = await write(batch)
            except PermanentError as exc:
                stats.error("rejected", "sending")
                stats.discard("rejected", len(batch.events))
                log.error("batch rejected for good", extra={"component_id": ctx.id, "error": str(exc)})
                batch.finalize(AckStatus.REJECTED)
                return
            except (RetryableError, OSError, TimeoutError) as exc:
                stats.observe_request(time.perf_counter() - started)
                stats.error(type(exc).__name__, "sending")
                stats.retries += 1
                delay = backoff.next(getattr(exc, "retry_after", None))
                log.warning("delivery failed; retrying", extra={
                    "component_id": ctx.id, "error": str(exc) or type(exc).__name__, "retry_in_s": round(delay, 3)})
                await asyncio.sleep(delay)
                continue
            stats.observe_request(time.perf_counter() - started)
            backoff.reset()
            stats.sent_events += len(batch.events)
            stats.sent_bytes += written
            batch.finalize(AckStatus.DELIVERED)
            return
    except asyncio.CancelledError:
        stats.discard("shutdown_timeout", len(batch.events))
        batch.finalize(AckStatus.ERRORED)
        raise
