"""Dropping events from a batch by a counted policy (throttled, sampled, duplicate, filtered, ...)."""

from __future__ import annotations

from typing import Any

from agent.core.ack import AckStatus
from agent.core.batch import Batch
from agent.observe.stats import ComponentStats


def keep_only(batch: Batch, kept: list[Any], stats: ComponentStats, reason: str) -> Batch | None:
    """``batch`` narrowed to ``kept`` (some of its events, in order); the others are counted as discarded for
    ``reason`` and are done, not lost: with none kept, the acks are released as delivered and None returned.
    The byte size shrinks in proportion."""
    total = len(batch.events)
    dropped = total - len(kept)
    if not dropped:
        return batch
    stats.discard(reason, dropped)
    if not kept:
        batch.finalize(AckStatus.DELIVERED)
        return None
    batch.byte_size = batch.byte_size * len(kept) // total
    batch.events = kept
    return batch
