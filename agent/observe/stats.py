"""Per-component counters kept as plain ints on the hot path.

Counting a batch is an attribute add; prometheus-client is only asked at
scrape time (see :mod:`agent.observe.metrics`), so the data path never takes
its locks. Stats objects outlive reloads, so counters never go backwards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


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
    request_seconds: list[float] = field(default_factory=list)  # drained by the exporter
    extra: dict[str, float] = field(default_factory=dict)  # component-specific gauges

    def error(self, error_type: str, stage: str, n: int = 1) -> None:
        self.errors[(error_type, stage)] += n

    def discard(self, reason: str, n: int) -> None:
        self.discarded[reason] += n


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
