"""Partitioned batching: events grouped by a key (an index, a tenant) until a limit or a timeout."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind


@dataclass(slots=True)
class Request:
    """Events of one partition (one kind, one key) on their way to the peer, holding a reference on each ack."""

    kind: Kind
    key: Hashable
    events: list[Any]
    acks: list[Ack]
    byte_size: int
    started: float = field(default_factory=time.monotonic)

    def finalize(self, status: AckStatus) -> None:
        acks, self.acks = self.acks, []
        for ack in acks:
            ack.release(status)

    def as_batch(self) -> Batch:
        """The request as a batch holding its ack references, to put back in an inbox."""
        return Batch(self.events, self.kind, self.byte_size, self.acks)


@dataclass(slots=True)
class _Partition:
    events: list[Any] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    byte_size: int = 0
    opened: float = 0.0


class Batcher:
    """Collects events per partition (kind of batch, then ``key(event)``); hands out full or old ones.

    Each input batch's acks are retained once for every partition its events
    land in, then the batch's own reference is released: the acks finish
    when every request that carries part of the batch has finished.
    """

    def __init__(self, key: Callable[[Any], Hashable] | None, max_events: int, max_bytes: int,
                 timeout: float) -> None:
        self._key = key
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._partitions: dict[tuple[Kind, Hashable], _Partition] = {}
        self.key_errors = 0  # events whose key raised: sent in the default (None) partition

    def add(self, batch: Batch) -> list[Request]:
        """Take ``batch`` in; return the requests that became full."""
        per_event = batch.byte_size // max(1, len(batch.events))
        kind = batch.kind
        groups: dict[tuple[Kind, Hashable], list[Any]]
        if self._key is None:
            groups = {(kind, None): batch.events}
        else:
            try:
                keys = list(map(self._key, batch.events))
            except Exception:  # an odd event must not stop the sink: it goes to the default partition
                keys = [self._safe_key(event) for event in batch.events]
            if keys and keys.count(keys[0]) == len(keys):  # the usual case: one partition for the whole batch
                groups = {(kind, keys[0]): batch.events}
            else:
                by_key: dict[Hashable, list[Any]] = {}
                for event, key in zip(batch.events, keys, strict=True):
                    group = by_key.get(key)
                    if group is None:
                        by_key[key] = [event]
                    else:
                        group.append(event)
                groups = {(kind, key): events for key, events in by_key.items()}
        full: list[Request] = []
        for group_key, events in groups.items():
            full.extend(self._add_events(group_key, events, per_event, batch.acks))
        batch.finalize(AckStatus.DELIVERED)  # the partitions now hold their own references
        return full

    def _safe_key(self, event: Any) -> Hashable:
        assert self._key is not None
        try:
            return self._key(event)
        except Exception:
            self.key_errors += 1
            return None

    def _add_events(self, key: tuple[Kind, Hashable], events: list[Any], per_event: int,
                    acks: list[Ack]) -> list[Request]:
        full = []
        start = 0
        while start < len(events):
            part = self._partitions.get(key)
            if part is None:
                part = self._partitions[key] = _Partition(opened=time.monotonic())
            room = self.max_events - len(part.events)
            if per_event:
                room = min(room, max(1, (self.max_bytes - part.byte_size) // per_event))
            chunk = events[start:start + room]
            start += len(chunk)
            part.events.extend(chunk)
            part.byte_size += per_event * len(chunk)
            for ack in acks:
                if not any(held is ack for held in part.acks):
                    ack.retain()
                    part.acks.append(ack)
            if len(part.events) >= self.max_events or part.byte_size >= self.max_bytes:
                full.append(self._take(key))
        return full

    def _take(self, key: tuple[Kind, Hashable]) -> Request:
        part = self._partitions.pop(key)
        return Request(key[0], key[1], part.events, part.acks, part.byte_size)

    def expired(self, now: float | None = None) -> list[Request]:
        """Requests of partitions older than the timeout."""
        now = time.monotonic() if now is None else now
        old = [k for k, p in self._partitions.items() if now - p.opened >= self.timeout]
        return [self._take(k) for k in old]

    def next_deadline(self) -> float | None:
        if not self._partitions:
            return None
        return min(p.opened for p in self._partitions.values()) + self.timeout

    def drain(self) -> list[Request]:
        """Every partition, as requests (end of input)."""
        return [self._take(k) for k in list(self._partitions)]
