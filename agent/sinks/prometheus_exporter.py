"""Sink `prometheus_exporter`: serves the samples it receives at ``http://<address>/metrics``, for users who
scrape the agent instead of having it push.

The page is the text exposition format 0.0.4: ``# HELP`` (samples carry no help text: the family's name,
as Vector writes) and ``# TYPE`` lines per family (counter, gauge, histogram, summary; anything else is
untyped), then the latest value of each of its series, without timestamps (the scraper stamps them, as
with any exporter). A series keeps its newest sample by timestamp; one that received nothing for
``expire_after`` is dropped, and a stale marker (the NaN Prometheus writes when a series ends) drops it at
once. A batch is acknowledged as delivered as soon as it is stored.

The port is bound in :meth:`PrometheusExporterSink.start`, so a port in use ends start-up with one line.
"""

from __future__ import annotations

import errno
import math
import os
import time
from dataclasses import dataclass
from typing import ClassVar

from aiohttp import web

from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.config.units import Duration
from agent.core.ack import AckStatus
from agent.core.component import SinkContext
from agent.core.errors import StartupError
from agent.core.metric import Sample
from agent.prometheus import is_stale
from agent.sources.socket import split_address

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TYPES = frozenset({"counter", "gauge", "histogram", "summary"})  # what 0.0.4 can say; others are untyped
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
PRUNE_EVERY = 1.0  # seconds between two sweeps for expired series while batches arrive


class PrometheusExporterConfig(SinkConfig, tag="prometheus_exporter"):
    """Serve the latest sample of every series received at ``http://<address>/metrics``, for Prometheus to scrape.

    The text format 0.0.4; a series that receives nothing for ``expire_after`` is dropped, a stale marker drops it at
    once.
    """

    input_types: ClassVar[frozenset[str]] = frozenset({"metrics"})
    address: str = "127.0.0.1:9598"
    """host:port serving /metrics."""
    expire_after: Duration = Duration(300.0)
    """A series that receives nothing for this long is dropped; a stale marker drops it at once."""


@dataclass(slots=True)
class _Series:
    family: str
    kind: str
    line_head: str  # 'name{label="value",...} '
    order: tuple  # within a family: by labels, then buckets (quantiles) by bound, then _sum and _count
    value: float
    timestamp_ms: int
    seen: float  # monotonic time of the last sample stored


def family_of(name: str, kind: str) -> tuple[str, str]:
    """The family a sample belongs to and its 0.0.4 type (``node_x_bucket`` of a histogram: ``node_x``)."""
    kind = kind if kind in TYPES else "untyped"
    for suffix in _SUFFIXES.get(kind, ()):
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, kind


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _order(name: str, family: str, labels: tuple[tuple[str, str], ...]) -> tuple:
    """Where a series goes in its family: by its other labels, then _bucket (or quantiles) by bound, _sum, _count."""
    rest = tuple(pair for pair in labels if pair[0] not in ("le", "quantile"))
    bound = next((v for k, v in labels if k in ("le", "quantile")), "")
    try:
        number = float(bound) if bound else 0.0
    except ValueError:
        number = math.inf
    return rest, (name[len(family):] or "_bucket") != "_bucket", name, number


class SeriesStore:
    """The latest sample of every series, and the exposition page of them all."""

    def __init__(self, expire_after: float) -> None:
        self.expire_after = expire_after
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], _Series] = {}

    def __len__(self) -> int:
        return len(self._series)

    def add(self, samples: list[Sample], now: float) -> int:
        """Store a batch; returns how many series a stale marker removed."""
        series, removed = self._series, 0
        for sample in samples:
            key = (sample.name, sample.labels)
            known = series.get(key)
            if known is not None and sample.timestamp_ms < known.timestamp_ms:
                continue  # older than what is stored: the newest sample wins
            if is_stale(sample.value):
                if known is not None:
                    del series[key]
                    removed += 1
            elif known is not None:
                known.value, known.timestamp_ms, known.seen = sample.value, sample.timestamp_ms, now
            else:
                family, kind = family_of(sample.name, sample.kind)
                labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sample.labels)
                head = f"{sample.name}{{{labels}}} " if labels else f"{sample.name} "
                series[key] = _Series(family, kind, head, _order(sample.name, family, sample.labels),
                                      sample.value, sample.timestamp_ms, now)
        return removed

    def expire(self, now: float) -> int:
        """Drop series not updated for ``expire_after``; returns how many."""
        horizon = now - self.expire_after
        old = [key for key, s in self._series.items() if s.seen < horizon]
        for key in old:
            del self._series[key]
        return len(old)

    def render(self) -> str:
        """The page: families sorted by name, each with its HELP and TYPE lines and its series."""
        families: dict[str, list[_Series]] = {}
        for s in self._series.values():
            families.setdefault(s.family, []).append(s)
        out: list[str] = []
        for family in sorted(families):
            members = sorted(families[family], key=lambda s: s.order)
            out.append(f"# HELP {family} {family}\n# TYPE {family} {members[0].kind}\n")
            out.extend(f"{s.line_head}{format_value(s.value)}\n" for s in members)
        return "".join(out)


@register("sink", "prometheus_exporter", PrometheusExporterConfig,
          "Serves the latest value of every series it receives at /metrics, for Prometheus to scrape.")
class PrometheusExporterSink:
    """Keeps the latest sample per series and serves them; acknowledges a batch once stored."""

    input_types = PrometheusExporterConfig.input_types

    def __init__(self, config: PrometheusExporterConfig, ctx: BuildContext) -> None:
        self.id = ctx.component_id
        self.address = config.address
        self.host, self.port = split_address(config.address)
        self.store = SeriesStore(config.expire_after)
        self._stats = ctx.stats
        app = web.Application()
        app.add_routes([web.get("/metrics", self._metrics)])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._listening = False

    async def healthcheck(self) -> None:
        return None

    async def start(self) -> None:
        """Listen on ``address``; StartupError with one line when that fails."""
        if self._listening:
            return
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()
        except OSError as exc:
            await self._runner.cleanup()
            hint = "is another agent or exporter listening? " if exc.errno == errno.EADDRINUSE else ""
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(f'sink "{self.id}": cannot listen on {self.address}: {reason}; '
                               f"{hint}change sinks.{self.id}.address") from None
        self._listening = True

    async def run(self, ctx: SinkContext) -> None:
        await self.start()
        stats = ctx.stats
        stats.gauges["series"] = lambda: len(self.store)
        next_prune = time.monotonic() + PRUNE_EVERY
        try:
            while (batch := await ctx.inbox.get()) is not None:
                now = time.monotonic()
                n = len(batch.events)
                stats.received_events += n
                stats.received_bytes += batch.byte_size
                removed = self.store.add(batch.events, now)
                if removed:
                    stats.count("stale_removed", removed)
                if now >= next_prune:
                    next_prune = now + PRUNE_EVERY
                    self._expire(now)
                stats.sent_events += n
                stats.sent_bytes += batch.byte_size
                batch.finalize(AckStatus.DELIVERED)
        finally:
            await self._runner.cleanup()
            self._listening = False

    def _expire(self, now: float) -> None:
        expired = self.store.expire(now)
        if expired:
            self._stats.count("expired", expired)

    async def _metrics(self, request: web.Request) -> web.Response:
        self._expire(time.monotonic())
        response = web.Response(body=self.store.render().encode(), headers={"Content-Type": CONTENT_TYPE})
        response.enable_compression()
        return response
