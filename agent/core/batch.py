"""Batches: the only unit that moves between components."""

from __future__ import annotations

import enum
from typing import Any

from agent.core.ack import Ack, AckStatus


class Kind(enum.IntEnum):
    """What a batch's events are.

    LINES and JSON_LINES hold ``bytes`` lines exactly as read (no newline), so
    a line that no stage parses is never decoded or re-encoded. JSON_LINES
    promises each line is one JSON object (a JSON encoder writes it verbatim);
    LINES are plain text. LOGS hold ``dict`` events, METRICS hold
    :class:`~agent.core.metric.Sample` objects.
    """

    LINES = 0
    JSON_LINES = 1
    LOGS = 2
    METRICS = 3

    @property
    def is_raw(self) -> bool:
        return self <= Kind.JSON_LINES

    @property
    def data_type(self) -> str:
        return "metrics" if self is Kind.METRICS else "logs"


class Batch:
    """A list of events of one :class:`Kind` plus the acks they carry.

    The batch holds exactly one reference on each ack. ``byte_size`` is the
    estimate buffers budget on (for raw lines, the bytes read). Transforms
    build new event lists instead of editing ``events`` in place, because
    fan-out may share one list between consumers that do not mutate.
    """

    __slots__ = ("acks", "byte_size", "done", "events", "kind")

    def __init__(self, events: list[Any], kind: Kind, byte_size: int, acks: list[Ack] | None = None) -> None:
        self.events = events
        self.kind = kind
        self.byte_size = byte_size
        self.acks: list[Ack] = acks if acks is not None else []
        self.done = False  # finalized by its holder

    def __len__(self) -> int:
        return len(self.events)

    def finalize(self, status: AckStatus) -> None:
        """Release every ack once; the batch is finished for its holder."""
        acks, self.acks = self.acks, []
        self.done = True
        for ack in acks:
            ack.release(status)

    def retain(self, n: int = 1) -> None:
        for ack in self.acks:
            ack.retain(n)

    def copy_for_mutation(self) -> Batch:
        """A copy whose dict events can be changed without touching this one's.

        Does not touch ack references: the caller retains for the copy.
        """
        if self.kind is Kind.LOGS:
            events = [dict(e) for e in self.events]
        else:
            events = list(self.events)
        return Batch(events, self.kind, self.byte_size, list(self.acks))

    def __repr__(self) -> str:
        return f"Batch({self.kind.name}, events={len(self.events)}, bytes={self.byte_size}, acks={len(self.acks)})"
