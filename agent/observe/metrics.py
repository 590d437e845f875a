"""Self metrics: the ``agent_*`` families, exported from plain counters at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.observe.stats import REQUEST_BUCKETS, ComponentStats, ScrapeStats, StatsRegistry

_LABELS = ["component_id", "component_kind", "component_type"]


class AgentCollector(Collector):
    """Reads component stats, buffer usage and agent-wide counters when /metrics is scraped."""

    def __init__(self, stats: StatsRegistry, buffers: Callable[[], dict[str, Any]],
                 reloads: dict[str, int], memory: Callable[[], dict[str, float]] | None = None) -> None:
        self.stats = stats
        self.buffers = buffers
        self.reloads = reloads
        self.memory = memory  # memory_limit's usage, when one is set

    def collect(self) -> Iterator[Metric]:
        counters = {
            name: CounterMetricFamily(f"agent_component_{name}", help_, labels=_LABELS)
            for name, help_ in (
                ("received_events", "Events a component took in."),
                ("received_bytes", "Bytes a component took in (estimated after parsing)."),
                ("sent_events", "Events a component emitted or delivered."),
                ("sent_bytes", "Bytes a component emitted or delivered."),
            )
        }
        errors = CounterMetricFamily("agent_component_errors", "Errors by type and stage.",
                                     labels=[*_LABELS, "error_type", "stage"])
        discarded = CounterMetricFamily("agent_component_discarded_events", "Events dropped, by reason.",
                                        labels=[*_LABELS, "reason"])
        retries = CounterMetricFamily("agent_sink_retries", "Delivery attempts that were retried.", labels=_LABELS)
        durations = HistogramMetricFamily("agent_sink_request_duration_seconds", "Duration of delivery requests.",
                                          labels=_LABELS)
        own: dict[str, Metric] = {}
        scrapes = _ScrapeFamilies()
        for s in self.stats:
            labels = [s.component_id, s.component_kind, s.component_type]
            for name, family in counters.items():
                family.add_metric(labels, getattr(s, name))
            for (error_type, stage), n in s.errors.items():
                errors.add_metric([*labels, error_type, stage], n)
            for reason, n in s.discarded.items():
                discarded.add_metric([*labels, reason], n)
            if s.component_kind == "sink":
                retries.add_metric(labels, s.retries)
                durations.add_metric(labels, _cumulative_buckets(s.request_counts), s.request_seconds_sum)
            _add_own_families(s, labels, own)
            if s.scrape is not None:
                scrapes.add(s.scrape, labels)
        yield from counters.values()
        yield from (errors, discarded, retries, durations)
        yield from own.values()
        yield from scrapes.families()
        yield from self._buffer_metrics()
        reloads = CounterMetricFamily("agent_config_reloads", "Config reloads by result.", labels=["result"])
        for result in ("success", "failure"):
            reloads.add_metric([result], self.reloads.get(result, 0))
        yield reloads
        if self.memory is not None:
            yield from _memory_metrics(self.memory())

    def _buffer_metrics(self) -> Iterator[Metric]:
        names = ("events", "bytes", "max_events", "max_bytes")
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            n: GaugeMetricFamily(f"agent_buffer_{n}", f"Buffer {n.replace('_', ' ')}.", labels=_LABELS)
            for n in names}
        families["full_waits"] = CounterMetricFamily(
            "agent_buffer_full_waits", "Sends that waited for room in the buffer (when_full: block).", labels=_LABELS)
        families["blocked_seconds"] = CounterMetricFamily(
            "agent_buffer_blocked_seconds", "Time producers waited for room: backpressure from this consumer.",
            labels=_LABELS)
        for labels, usage in self.buffers().values():
            for n, family in families.items():
                family.add_metric(labels, getattr(usage, n))
        yield from families.values()


def _memory_metrics(usage: dict[str, float]) -> Iterator[Metric]:
    """memory_limit: the limit, the share the buffers may use, what they hold, and how long sources paused."""
    yield GaugeMetricFamily("agent_memory_limit_bytes", "memory_limit.", value=usage["limit_bytes"])
    yield GaugeMetricFamily("agent_memory_buffer_budget_bytes", "What buffered events may take under memory_limit.",
                            value=usage["buffer_budget_bytes"])
    yield GaugeMetricFamily("agent_memory_buffered_bytes", "What the pipeline's buffers hold now.",
                            value=usage["buffered_bytes"])
    yield CounterMetricFamily("agent_memory_paused_seconds", "Time sources waited for memory_limit.",
                              value=usage["paused_seconds"])


def _add_own_families(stats: ComponentStats, labels: list[str], families: dict[str, Metric]) -> None:
    """A component's own gauges and counters, named after its type (agent_tail_files_open...)."""
    prefix = f"agent_{stats.component_type}_"
    for name, value in stats.gauge_values().items():
        family = families.get(prefix + name)
        if family is None:
            family = families[prefix + name] = GaugeMetricFamily(
                prefix + name, f"{stats.component_type}: {name.replace('_', ' ')}.", labels=_LABELS)
        family.add_metric(labels, value)  # type: ignore[attr-defined]
    for (name, extra), value in stats.counters.items():
        family = families.get(prefix + name)
        if family is None:
            family = families[prefix + name] = CounterMetricFamily(
                prefix + name, f"{stats.component_type}: {name.replace('_', ' ')}.",
                labels=[*_LABELS, *(k for k, _ in extra)])
        family.add_metric([*labels, *(v for _, v in extra)], value)  # type: ignore[attr-defined]


class _ScrapeFamilies:
    """agent_scrape_*: the targets of prometheus_scrape sources (health, durations, samples, failures)."""

    def __init__(self) -> None:
        self.used = False
        self.targets = GaugeMetricFamily("agent_scrape_targets", "Scrape targets by the health of their last scrape.",
                                         labels=[*_LABELS, "health"])
        self.durations = HistogramMetricFamily("agent_scrape_duration_seconds", "Duration of scrapes.",
                                               labels=[*_LABELS, "job"])
        self.samples = GaugeMetricFamily("agent_scrape_samples", "Samples of a target's last scrape, after "
                                         "metric relabelling.", labels=[*_LABELS, "job", "instance"])
        self.failures = CounterMetricFamily("agent_scrape_failures", "Failed scrapes by reason.",
                                            labels=[*_LABELS, "job", "instance", "reason"])

    def add(self, scrape: ScrapeStats, labels: list[str]) -> None:
        self.used = True
        health = Counter(scrape.health.values())
        for state in ("up", "down", "unknown"):
            self.targets.add_metric([*labels, state], health[state])
        for job, counts in scrape.durations.items():
            self.durations.add_metric([*labels, job], _cumulative_buckets(counts), scrape.duration_sums[job])
        for (job, instance), n in scrape.samples.items():
            self.samples.add_metric([*labels, job, instance], n)
        for (job, instance, reason), n in scrape.failures.items():
            self.failures.add_metric([*labels, job, instance, reason], n)

    def families(self) -> Iterator[Metric]:
        if self.used:
            yield from (self.targets, self.durations, self.samples, self.failures)


def _cumulative_buckets(counts: list[int]) -> list[tuple[str, float]]:
    bounds = [*map(str, REQUEST_BUCKETS), "+Inf"]
    total = 0
    out = []
    for bound, count in zip(bounds, counts, strict=True):
        total += count
        out.append((bound, float(total)))
    return out


def build_registry(collector: AgentCollector) -> CollectorRegistry:
    """A registry with the agent's families plus process, platform and GC metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
