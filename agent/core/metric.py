"""Metric samples, shaped for remote-write: labels sorted, series grouped by the sink."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Sample:
    """One sample of one series.

    ``labels`` is a tuple of (name, value) pairs sorted by name, without
    ``__name__``; ``kind`` is the Prometheus type (counter, gauge, untyped...).
    """

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp_ms: int
    kind: str = "untyped"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "labels": dict(self.labels),
            "value": self.value,
            "timestamp_ms": self.timestamp_ms,
            "kind": self.kind,
        }
