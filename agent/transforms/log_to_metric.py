"""Transform `log_to_metric`: counters, gauges and histograms from log events, emitted as metric samples.

Each entry of ``metrics`` names a metric, an optional ``condition`` and ``labels`` taken from event fields
(a field path or a ``{{ path }}`` template per label; a missing or null field leaves its label out). A ``counter`` adds
1 per event (or the value of ``field``); a ``gauge`` takes the last value of ``field``; a ``histogram`` counts
``field`` into ``buckets`` and emits Prometheus's ``_bucket{le}``, ``_sum`` and ``_count`` series. Every
``interval`` the current values of every series are sent on as one METRICS batch (cumulative, as
``prometheus_remote_write`` and ``datadog_metrics`` expect); a series that no event updated for
``expire_after`` is forgotten.

The log events are consumed: once counted their acks are released as delivered. Labels from log fields can
explode, so the stage holds at most ``max_series`` series (a histogram counts all of its series); an event that
would start one more is not counted, and is counted in ``agent_log_to_metric_series_limited_events_total``. An
event without ``field`` (or with null there) is skipped for that metric; one whose value is not a number (or a
numeric string; or is negative, for a counter) too, counted in
``agent_component_errors_total{error_type="invalid_value"}``. Raw lines are read as events first
(``agent.core.events``).
"""

from __future__ import annotations

import math
import re
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from agent.config.model import RootConfig, TransformConfig
from agent.config.registry import BuildContext, register
from agent.config.units import Duration
from agent.core.ack import AckStatus
from agent.core.batch import Batch, Kind
from agent.core.events import to_log_events
from agent.core.keys import at_key, compile_key
from agent.core.metric import Sample, Series
from agent.expr import compile_condition, condition_warnings
from agent.expr.paths import compile_getter, parse_path
from agent.prometheus.scrape import SAMPLE_BYTES

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # Prometheus's defaults
MAX_LABEL_CHARS = 1024  # a longer label value is cut (receivers refuse long ones)
MAX_NUMBER_CHARS = 64  # a longer string is not a number worth parsing
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NOT_NUMBER = object()


class MetricSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One metric made from log events."""

    type: Literal["counter", "gauge", "histogram"]
    """counter, gauge or histogram."""
    name: str
    """The metric's name ([a-zA-Z_:][a-zA-Z0-9_:]*)."""
    field: str | None = None
    """Field path of the value: a counter adds it instead of 1; a gauge or histogram needs it."""
    condition: str | None = None
    """Count only the events for which this condition holds."""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    """Label name: field path or template giving its value."""
    buckets: list[float] | None = None
    """Histogram upper bounds, increasing; Prometheus's defaults when unset."""

    def __post_init__(self) -> None:
        if not _METRIC_NAME.fullmatch(self.name):
            raise ValueError(f"name: {self.name!r} is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
        if self.type != "counter" and self.field is None:
            raise ValueError(f"a {self.type} needs a field to take its value from")
        if self.field is not None:
            at_key("field", parse_path, self.field)
        if self.condition is not None:
            at_key("condition", compile_condition, self.condition)
        for label, source in self.labels.items():
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"labels: {label!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting "
                                 "with __)")
            if label == "le" and self.type == "histogram":
                raise ValueError('labels: "le" is the bucket label of a histogram')
            at_key(f"labels.{label}", compile_key, source)
        if self.buckets is not None:
            if self.type != "histogram":
                raise ValueError("buckets apply to histograms only")
            if not self.buckets or any(not math.isfinite(b) for b in self.buckets):
                raise ValueError("buckets must be finite numbers")
            if any(b >= c for b, c in zip(self.buckets, self.buckets[1:], strict=False)):
                raise ValueError("buckets must be in increasing order")

    def names(self) -> tuple[str, ...]:
        """The metric's name and those of the series it emits (a histogram's ``_bucket``, ``_sum``, ``_count``)."""
        if self.type != "histogram":
            return (self.name,)
        return self.name, f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count"


class LogToMetricConfig(TransformConfig, tag="log_to_metric"):
    """Make counters, gauges and histograms from log events, emitted every ``interval`` as metric samples.

    Each entry of ``metrics`` counts events (or adds a field's value), or observes a field, per set of ``labels`` taken
    from fields. The log events are consumed. At most ``max_series`` series are held; an event that would start one more
    is counted, not lost silently. Wire its output to a metrics sink such as ``prometheus_remote_write``.
    """

    metrics: list[MetricSpec]
    """The metrics to make."""
    interval: Duration = Duration(10.0)
    """How often the series are emitted as samples."""
    expire_after: Duration = Duration(600.0)
    """A series no event updated for this long is forgotten."""
    max_series: int = 10_000
    """Series held at most (a histogram counts each of its series); an event that would start one more is not counted.
    """

    def warnings(self, root: RootConfig) -> list[tuple[str, tuple[str, int, str]]]:
        """(message, key) of what is dubious in the metrics' conditions (``agent validate`` prints them)."""
        return [(message, ("metrics", n, "condition")) for n, metric in enumerate(self.metrics)
                for message in condition_warnings(metric.condition)]

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("metrics must hold at least one metric")
        if self.interval <= 0:
            raise ValueError("interval must be longer than 0s")
        if self.max_series < 1:
            raise ValueError("max_series must be at least 1")
        owner: dict[str, MetricSpec] = {}  # each name the metrics emit, and the metric emitting it
        for metric in self.metrics:
            for name in metric.names():
                other = owner.setdefault(name, metric)
                if other is metric:
                    continue
                if other.name == metric.name:
                    raise ValueError(f"metrics: metric {name!r} is defined twice")
                raise ValueError(f"metrics: {name!r} would be a series of both {other.name!r} and {metric.name!r}")

    def output_type(self, input_type: str) -> str:
        return "metrics"


def number(value: Any) -> Any:
    """``value`` as a finite float, or _NOT_NUMBER: numbers and numeric strings are numbers, booleans are not."""
    kind = type(value)
    if kind is int or kind is float:
        result = float(value)
    elif kind is str and len(value) <= MAX_NUMBER_CHARS:
        try:
            result = float(value)
        except ValueError:
            return _NOT_NUMBER
    else:
        return _NOT_NUMBER
    return result if math.isfinite(result) else _NOT_NUMBER


class _Entry:
    """One label set's state: a value (counter, gauge) or bucket counts, sum and count (histogram)."""

    __slots__ = ("buckets", "count", "series", "total", "touched", "value")

    def __init__(self, series: list[Series], buckets: int) -> None:
        self.series = series  # counter, gauge: one; histogram: each bucket, +Inf, _sum, _count
        self.value = 0.0
        self.buckets = [0] * buckets
        self.total = 0.0
        self.count = 0
        self.touched = 0  # the flush generation that last saw an event for it


class _Metric:
    """One configured metric and its series by label values."""

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.kind = spec.type
        self.condition = compile_condition(spec.condition) if spec.condition is not None else None
        self.value = compile_getter(parse_path(spec.field)) if spec.field is not None else None
        self.labels = sorted((name, compile_key(source, null_is_missing=True)) for name, source in spec.labels.items())
        self.bounds = tuple(spec.buckets if spec.buckets is not None else DEFAULT_BUCKETS)
        self.entries: dict[tuple[str | None, ...], _Entry] = {}
        self.cost = len(self.bounds) + 3 if self.kind == "histogram" else 1  # series per entry

    def label_values(self, event: Any) -> tuple[str | None, ...]:
        return tuple(_label_value(key(event)) for _, key in self.labels)

    def new_entry(self, values: tuple[str | None, ...]) -> _Entry:
        labels = tuple((name, value) for (name, _), value in zip(self.labels, values, strict=True)
                       if value is not None)
        name = self.spec.name
        if self.kind != "histogram":
            return _Entry([Series(name, labels, self.kind)], 0)
        series = [Series(f"{name}_bucket", _with_le(labels, _le(bound)), "histogram") for bound in self.bounds]
        series.append(Series(f"{name}_bucket", _with_le(labels, "+Inf"), "histogram"))
        series.append(Series(f"{name}_sum", labels, "histogram"))
        series.append(Series(f"{name}_count", labels, "histogram"))
        return _Entry(series, len(self.bounds) + 1)

    def samples(self, timestamp_ms: int) -> list[Sample]:
        out: list[Sample] = []
        for entry in self.entries.values():
            if self.kind != "histogram":
                out.append(Sample(entry.series[0], entry.value, timestamp_ms))
                continue
            cumulative = 0
            for series, count in zip(entry.series, entry.buckets, strict=False):
                cumulative += count
                out.append(Sample(series, float(cumulative), timestamp_ms))
            out.append(Sample(entry.series[-2], entry.total, timestamp_ms))
            out.append(Sample(entry.series[-1], float(entry.count), timestamp_ms))
        return out


def _label_value(text: str | None) -> str | None:
    """A label's value: None for a missing or empty one (Prometheus has no empty labels), long ones cut."""
    if not text:
        return None
    if len(text) > MAX_LABEL_CHARS:
        return text[:MAX_LABEL_CHARS]
    return text


def _le(bound: float) -> str:
    return repr(float(bound))


def _with_le(labels: tuple[tuple[str, str], ...], le: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((*labels, ("le", le))))


@register("transform", "log_to_metric", LogToMetricConfig, "Counts, gauges and histograms from log events.")
class LogToMetricTransform:
    """Aggregates log events into series; ``flush()`` (every ``interval``) emits them as samples.

    Exposes ``series`` (held now) as a gauge.
    """

    mutates = False

    def __init__(self, config: LogToMetricConfig, ctx: BuildContext,
                 clock: Callable[[], float] = time.time) -> None:
        self.metrics = [_Metric(spec) for spec in config.metrics]
        self.flush_interval = float(config.interval)
        self.expire_flushes = max(1, math.ceil(float(config.expire_after) / self.flush_interval))
        self.max_series = config.max_series
        self.series = 0
        self.generation = 0
        self.stats = ctx.stats
        self.component_id = ctx.component_id
        self.clock = clock
        ctx.stats.gauges["series"] = lambda: self.series

    def process(self, batch: Batch) -> Batch | None:
        to_log_events(batch)
        events = batch.events
        limited = invalid = 0
        for metric in self.metrics:
            more_limited, more_invalid = self._count(metric, events)
            limited += more_limited
            invalid += more_invalid
        if limited:
            self.stats.count("series_limited_events", limited)
        if invalid:
            self.stats.error("invalid_value", "processing", invalid)
        batch.finalize(AckStatus.DELIVERED)  # counted: the events are done
        return None

    def _count(self, metric: _Metric, events: list[dict[str, Any]]) -> tuple[int, int]:
        """Count ``events`` into ``metric``; returns how many were refused a new series, and how many had no
        number where one was needed."""
        condition, get_value, kind, bounds = metric.condition, metric.value, metric.kind, metric.bounds
        entries, generation = metric.entries, self.generation
        limited = invalid = 0
        for event in events:
            if condition is not None and not condition(event):
                continue
            value = 1.0
            if get_value is not None:
                raw = get_value(event)
                if raw is None:  # no such field (or null) in this event: nothing to count
                    continue
                value = number(raw)
                if value is _NOT_NUMBER or (kind == "counter" and value < 0):
                    invalid += 1
                    continue
            values = metric.label_values(event)
            entry = entries.get(values)
            if entry is None:
                if self.series + metric.cost > self.max_series:
                    limited += 1
                    continue
                entry = entries[values] = metric.new_entry(values)
                self.series += metric.cost
            entry.touched = generation
            if kind == "counter":
                entry.value += value
            elif kind == "gauge":
                entry.value = value
            else:
                entry.buckets[bisect_left(bounds, value)] += 1
                entry.total += value
                entry.count += 1
        return limited, invalid

    def flush(self) -> Batch | None:
        """Every series's current value as one METRICS batch (None if there is none); expired series go."""
        self._expire()
        self.generation += 1
        timestamp_ms = int(self.clock() * 1000)
        samples: list[Sample] = []
        for metric in self.metrics:
            samples.extend(metric.samples(timestamp_ms))
        if not samples:
            return None
        return Batch(samples, Kind.METRICS, SAMPLE_BYTES * len(samples))

    def _expire(self) -> None:
        oldest = self.generation - self.expire_flushes  # touched in this flush period or before: expire_after ago
        for metric in self.metrics:
            stale = [values for values, entry in metric.entries.items() if entry.touched <= oldest]
            for values in stale:
                del metric.entries[values]
            self.series -= metric.cost * len(stale)
