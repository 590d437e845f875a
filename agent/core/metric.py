"""Metric samples, shaped for remote-write: labels sorted, series grouped by the sink.

A :class:`Series` (name, labels, type) is built once per series and reused scrape after scrape; a
:class:`Sample` is a series, a value and a timestamp. Both are frozen msgspec structs (a few tens of
nanoseconds to build, untracked by the garbage collector), and a series computes its hash once, so the
dicts keyed by series along the path (the scrape loop's, the sinks' caches, the shard of a sample) cost a
lookup, not a hash of the labels, per sample.
"""

from __future__ import annotations

from typing import Any

import msgspec

Labels = tuple[tuple[str, str], ...]


class Series(msgspec.Struct, frozen=True, cache_hash=True, gc=False):
    """One series: ``name``; ``labels``, a tuple of (name, value) pairs sorted by name, without
    ``__name__``; ``kind``, the Prometheus type (counter, gauge, untyped...). Equal series hash equal."""

    name: str
    labels: Labels
    kind: str = "untyped"


class Sample(msgspec.Struct, frozen=True, gc=False):
    """One sample of one series: ``series``, ``value``, ``timestamp_ms`` (``name``, ``labels`` and ``kind``
    read through to the series)."""

    series: Series
    value: float
    timestamp_ms: int

    @classmethod
    def of(cls, name: str, labels: Labels, value: float, timestamp_ms: int, kind: str = "untyped") -> Sample:
        """A sample of a series built here (for callers that do not keep their series)."""
        return cls(Series(name, labels, kind), value, timestamp_ms)

    @property
    def name(self) -> str:
        return self.series.name

    @property
    def labels(self) -> Labels:
        return self.series.labels

    @property
    def kind(self) -> str:
        return self.series.kind

    def to_dict(self) -> dict[str, Any]:
        series = self.series
        return {
            "name": series.name,
            "labels": dict(series.labels),
            "value": self.value,
            "timestamp_ms": self.timestamp_ms,
            "kind": series.kind,
        }
