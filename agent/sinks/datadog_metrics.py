"""Sink `datadog_metrics`: metric samples to Datadog's series API v2 (``POST /api/v2/series``).

Mapping, one series entry per sample (``default_namespace`` prefixes names
as ``ns.name``; labels become ``label:value`` tags; ``hostname`` becomes a
``host`` resource; timestamps are whole seconds):

    gauge, untyped      type 3 (gauge) with the sample's value
    counter             type 1 (count) with the increase since the previous sample of the same
                        series (name and labels) that this sink saw, and ``interval`` = the seconds
                        between the two samples (at least 1)
    histogram, summary  ``_bucket``, ``_count`` and ``_sum`` samples as counters, others as gauges

Counters are cumulative, Datadog counts are deltas, so **the first sample of
a counter series only records its baseline and emits no point** (counted as
``counter_baselines``). A value lower than the previous one is a counter
reset: the delta is the new value. A sample not newer than the previous one
of its series (a duplicate or out of order) emits nothing and leaves the
baseline alone (``stale_samples``), as does a NaN or infinite value
(``non_finite_samples``: JSON cannot carry them). Baselines of series not
seen for two hours are forgotten.

Counter state and retries: the driver may encode a request again (a retry,
or the halves of a split), so deltas must not be computed from the state
again. Encoding therefore converts a request's samples to series entries
once, in place (``request.events`` then holds the entries; a retry, a split
half and the dead letter see those), and that conversion is the only place
the counter state moves: each sample updates it exactly once, in the order
requests were formed (the driver encodes requests in creation order, before
anything else can run). A request that is later refused for good or given
up still moved the baselines: its deltas are lost, never counted twice.

Limits: 512,000 bytes as sent and 5,242,880 bytes uncompressed per request;
a larger request is split in two by the driver. ``compression`` is gzip by
default; ``zstd`` is sent as ``Content-Encoding: zstd1`` (Datadog's name).

Answers: 202 delivers; 429 and 5xx are retried, 413 splits, other 4xx send
the entries to the dead letter. A refused API key (401 or 403) holds the
data and retries every ``request.retry_max_backoff``, logged and counted as
for `datadog_logs` (see :mod:`agent.sinks.datadog_logs`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from agent.config.registry import BuildContext, register
from agent.core.metric import Sample
from agent.core.metric import Series as MetricSeries
from agent.delivery.batcher import Request
from agent.delivery.driver import Outcome, PayloadTooLarge
from agent.delivery.http import HttpClient, compress_async
from agent.observe.stats import ComponentStats
from agent.sinks.datadog_api import DatadogConfig, DatadogSink

log = logging.getLogger("agent.sinks.datadog")

MAX_SENT = 512_000  # bytes per request as sent (compressed)
MAX_UNCOMPRESSED = 5_242_880  # bytes per request once decompressed
GAUGE, COUNT = 3, 1
STATE_TTL_MS = 2 * 3600 * 1000  # forget counter baselines not updated for this long
PRUNE_EVERY = 10_000  # samples between two sweeps of the counter state
_CUMULATIVE_SUFFIXES = ("_bucket", "_count", "_sum")


class DatadogMetricsConfig(DatadogConfig, tag="datadog_metrics", kw_only=True):
    """Send metrics to Datadog's series API v2 (``POST /api/v2/series`` on ``api.<site>``).

    Gauges are sent as gauges, counters as count deltas per interval (the first sample of a series sets its baseline; a
    lower value is a reset); labels become tags. Payloads stay within 512 kB.
    """

    input_types: ClassVar[frozenset[str]] = frozenset({"metrics"})
    default_namespace: str | None = None
    """Prefix for metric names, as <namespace>.<name>."""


class Series(dict[str, Any]):
    """One series entry of the payload (marks a request's events as converted)."""


@dataclass(slots=True)
class _Last:
    value: float
    timestamp_ms: int


class CounterState:
    """The previous value and time of every counter series seen, to turn cumulative values into deltas."""

    def __init__(self) -> None:
        self._last: dict[MetricSeries, _Last] = {}
        self._newest_ms = 0
        self._since_prune = 0

    def __len__(self) -> int:
        return len(self._last)

    def update(self, sample: Sample) -> tuple[float, int] | str:
        """``(delta, interval_s)``, or why there is no point: ``baseline`` or ``stale``."""
        key = sample.series
        now = sample.timestamp_ms
        self._newest_ms = max(self._newest_ms, now)
        self._since_prune += 1
        if self._since_prune >= PRUNE_EVERY:
            self.prune()
        last = self._last.get(key)
        if last is None:
            self._last[key] = _Last(sample.value, now)
            return "baseline"
        if now <= last.timestamp_ms:
            return "stale"
        delta = sample.value - last.value if sample.value >= last.value else sample.value  # lower: a reset
        interval = max(1, round((now - last.timestamp_ms) / 1000))
        last.value, last.timestamp_ms = sample.value, now
        return delta, interval

    def prune(self) -> None:
        self._since_prune = 0
        horizon = self._newest_ms - STATE_TTL_MS
        for key in [k for k, last in self._last.items() if last.timestamp_ms < horizon]:
            del self._last[key]


def is_cumulative(sample: Sample) -> bool:
    if sample.kind == "counter":
        return True
    return sample.kind in ("histogram", "summary") and sample.name.endswith(_CUMULATIVE_SUFFIXES)


class SeriesBuilder:
    """Samples to series entries; counters through a :class:`CounterState`."""

    def __init__(self, namespace: str | None, hostname: str | None, stats: ComponentStats | None = None) -> None:
        self.prefix = f"{namespace}." if namespace else ""
        self.resources = [{"name": hostname, "type": "host"}] if hostname else None
        self.counters = CounterState()
        self.stats = stats

    def _count(self, name: str) -> None:
        if self.stats is not None:
            self.stats.count(name)

    def series(self, sample: Sample) -> Series | None:
        """The entry for one sample, or None (a counter baseline, a stale or non-finite sample)."""
        if not math.isfinite(sample.value):
            self._count("non_finite_samples")
            return None
        value, interval = sample.value, None
        metric_type = GAUGE
        if is_cumulative(sample):
            delta = self.counters.update(sample)
            if isinstance(delta, str):
                self._count("counter_baselines" if delta == "baseline" else "stale_samples")
                return None
            (value, interval), metric_type = delta, COUNT
        entry = Series(metric=self.prefix + sample.name, type=metric_type,
                       points=[{"timestamp": sample.timestamp_ms // 1000, "value": value}],
                       tags=[f"{k}:{v}" for k, v in sample.labels])
        if interval is not None:
            entry["interval"] = interval
        if self.resources is not None:
            entry["resources"] = self.resources
        return entry

    def convert(self, samples: list[Any]) -> list[Series]:
        out = []
        for sample in samples:
            entry = self.series(sample)
            if entry is not None:
                out.append(entry)
        return out


def series_body(entries: list[Any]) -> bytes:
    return orjson.dumps({"series": entries})


@register("sink", "datadog_metrics", DatadogMetricsConfig, "Sends metrics to Datadog's series API (v2).")
class DatadogMetricsSink(DatadogSink):
    """Batches of samples as series POSTed to ``/api/v2/series``; counters become deltas (see the module)."""

    def __init__(self, config: DatadogMetricsConfig, ctx: BuildContext) -> None:
        base = (config.endpoint or f"https://api.{config.site}").rstrip("/")
        super().__init__(config, ctx, f"{base}/api/v2/series", config.validate_endpoint or base)
        self.builder = SeriesBuilder(config.default_namespace, config.hostname, ctx.stats)

    def convert(self, request: Request) -> list[Any]:
        """The request's series entries, converting its samples (and moving counter state) only the first time."""
        events = request.events
        if events and isinstance(events[0], Sample):
            events = request.events = self.builder.convert(events)
        return events

    def encode(self, request: Request) -> bytes:
        entries = self.convert(request)
        if not entries:
            return b""  # only baselines: nothing to send
        body = series_body(entries)
        if len(body) >= MAX_UNCOMPRESSED:
            raise PayloadTooLarge()
        return body

    async def _compress(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        data, headers = await compress_async(body, self.config.compression)
        if headers.get("Content-Encoding") == "zstd":
            headers["Content-Encoding"] = "zstd1"  # the series API's name for it
        return data, headers

    async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome:
        if not body:
            return Outcome()
        data, headers = await self._compress(body)
        if len(data) > MAX_SENT:
            raise PayloadTooLarge()
        response = await self.post(client, data, headers, len(request.events))
        self._note_intake_errors(response.body)
        return Outcome()

    def _note_intake_errors(self, body: bytes) -> None:
        """Datadog lists non-fatal problems of an accepted payload in ``errors``: count and log them."""
        try:
            errors = orjson.loads(body).get("errors") if body else None
        except (orjson.JSONDecodeError, AttributeError):
            return
        if isinstance(errors, list) and errors:
            self.stats.count("intake_warnings")
            log.warning("Datadog accepted the series with warnings",
                        extra={"component_id": self.driver.component_id, "errors": errors[:5]})


