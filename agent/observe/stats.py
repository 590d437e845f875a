"""Per-component counters kept as plain ints on the hot path.

Counting a batch is an attribute add; prometheus-client is only asked at
scrape time (see :mod:`agent.observe.metrics`), so the data path never takes
its locks. Stats objects outlive reloads, so counters never go backwards.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class ScrapeStats:
    """A ``prometheus_scrape`` source's targets, by (job, instance): health, the last scrape's samples, scrape
    durations per job and failures by reason. Exported as ``agent_scrape_*``; a target that goes away is
    forgotten."""

    health: dict[tuple[str, str], str] = field(default_factory=dict)  # "up" | "down" | "unknown"
    samples: dict[tuple[str, str], int] = field(default_factory=dict)
    failures: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (job, instance, reason)
    durations: dict[str, list[int]] = field(default_factory=dict)  # job -> non-cumulative REQUEST_BUCKETS counts
    duration_sums: dict[str, float] = field(default_factory=dict)

    def set_health(self, job: str, instance: str, health: str) -> None:
        self.health[(job, instance)] = health

    def observe(self, job: str, instance: str, up: bool, seconds: float, samples: int) -> None:
        """One scrape's outcome."""
        self.health[(job, instance)] = "up" if up else "down"
        self.samples[(job, instance)] = samples
        counts = self.durations.setdefault(job, [0] * (len(REQUEST_BUCKETS) + 1))
        counts[bisect_left(REQUEST_BUCKETS, seconds)] += 1
        self.duration_sums[job] = self.duration_sums.get(job, 0.0) + seconds

    def fail(self, job: str, instance: str, reason: str) -> None:
        self.failures[(job, instance, reason)] += 1

    def forget(self, job: str, instance: str) -> None:
        self.health.pop((job, instance), None)
        self.samples.pop((job, instance), None)
        for key in [k for k in self.failures if k[:2] == (job, instance)]:
            del self.failures[key]


@dataclass(slots=True)
class ComponentStats:
    """Counters of one component, labelled by id and type when exported."""

    component_id: str
    component_kind: str  # source | transform | sink
    component_type: str
    received_events: int = 0
    received_bytes: int = 0
    sent_events: int = 0
    sent_bytes: int = 0
    retries: int = 0
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (error_type, stage)
    discarded: Counter[str] = field(default_factory=Counter)  # reason
    request_counts: list[int] = field(default_factory=lambda: [0] * (len(REQUEST_BUCKETS) + 1))  # last: +Inf
    request_seconds_sum: float = 0.0
    # exported as agent_<type>_<name>; a callable is read at export time (live even while the component waits)
    gauges: dict[str, float | Callable[[], float]] = field(default_factory=dict)
    counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=Counter)  # (name, labels)
    scrape: ScrapeStats | None = None  # a prometheus_scrape source's targets

    def error(self, error_type: str, stage: str, n: int = 1) -> None:
        self.errors[(error_type, stage)] += n

    def discard(self, reason: str, n: int) -> None:
        self.discarded[reason] += n

    def gauge_values(self) -> dict[str, float]:
        """Current gauge values (callables are read now)."""
        return {name: value() if callable(value) else value for name, value in self.gauges.items()}

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        """Add to a component-specific counter, exported as agent_<type>_<name>_total{labels}."""
        self.counters[(name, tuple(sorted(labels.items())))] += n

    def observe_request(self, seconds: float) -> None:
        """Count one delivery attempt's duration in the request histogram (non-cumulative buckets)."""
        self.request_counts[bisect_left(REQUEST_BUCKETS, seconds)] += 1
        self.request_seconds_sum += seconds


class StatsRegistry:
    """All components' stats by id; the source of /metrics, /api/v1/components and `agent top`."""

    def __init__(self) -> None:
        self._by_id: dict[str, ComponentStats] = {}

    def get(self, component_id: str, kind: str, type_name: str) -> ComponentStats:
        stats = self._by_id.get(component_id)
        if stats is None or stats.component_type != type_name:
            stats = ComponentStats(component_id, kind, type_name)
            self._by_id[component_id] = stats
        return stats

    def remove(self, component_id: str) -> None:
        self._by_id.pop(component_id, None)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._by_id.values()))
