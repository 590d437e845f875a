"""Transform `sample`: keep 1 event in ``rate``, or the fraction ``ratio`` of them.

Without ``key``, the choice is a counter, not a coin: exactly one event in ``rate`` is kept (the first, then
every ``rate``-th). With ``key``, an event is kept when a stable hash of its key's value falls in the kept
fraction, so every event of one trace (``key: trace_id``) is kept or dropped together, the same way in every
agent and after every restart; events without the key fall back to the counter. Raw lines are read as events
(``agent.core.events``) only when ``key`` or ``exclude`` needs their fields. The dropped events are counted
(``agent_component_discarded_events_total{reason="sampled"}``) and done: their acks are released as delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.config.model import RootConfig, TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch
from agent.core.drop import keep_only
from agent.core.events import to_log_events
from agent.core.keys import at_key, compile_key, stable_hash
from agent.expr import compile_condition, condition_warnings

RATIO_SCALE = 1_000_000  # a ratio is kept to six decimals


class SampleConfig(TransformConfig, tag="sample"):
    """Keep 1 in ``rate`` events, or the fraction ``ratio``.

    With ``key``, the decision is a stable hash of the key's value, so all events of one trace are kept or dropped
    together. Events for which ``exclude`` holds are always kept. Dropped events are counted and acknowledged.
    """

    rate: int | None = None
    """Keep 1 event in this many (set this or ratio)."""
    ratio: float | None = None
    """Keep this fraction of events, more than 0 and at most 1 (set this or rate)."""
    key: str | None = None
    """Field path or template whose value decides by a stable hash, so all events of one value (a trace_id) are kept or
    dropped together.
    """
    exclude: str | None = None
    """Condition: events for which it holds are always kept."""

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.ratio is None):
            raise ValueError("set exactly one of rate (keep 1 in N) and ratio (keep this fraction)")
        if self.rate is not None and self.rate < 1:
            raise ValueError("rate must be at least 1")
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise ValueError("ratio must be more than 0 and at most 1")
        if self.key is not None:
            at_key("key", compile_key, self.key)
        if self.exclude is not None:
            at_key("exclude", compile_condition, self.exclude)

    def warnings(self, root: RootConfig) -> list[tuple[str, str]]:
        """(message, key) of what is dubious in ``exclude`` (``agent validate`` prints them)."""
        return [(message, "exclude") for message in condition_warnings(self.exclude)]

    def fraction(self) -> tuple[int, int]:
        """The kept fraction as integers ``(kept, of)``, so counting stays exact."""
        if self.rate is not None:
            return 1, self.rate
        return max(1, round(self.ratio * RATIO_SCALE)), RATIO_SCALE  # type: ignore[operator]


@register("transform", "sample", SampleConfig, "Keeps 1 in N events, or a fraction, optionally whole per key.")
class SampleTransform:
    """Keeps a fixed fraction of events: by a counter, or by a stable hash of a key's value."""

    mutates = False

    def __init__(self, config: SampleConfig, ctx: BuildContext) -> None:
        self.kept, self.of = config.fraction()
        self.key: Callable[[Any], str | None] | None = compile_key(config.key) if config.key is not None else None
        self.exclude = compile_condition(config.exclude) if config.exclude is not None else None
        self.stats = ctx.stats
        self.credit = self.of - self.kept  # the first event is kept

    def _count(self) -> bool:
        """The counter's choice for the next event."""
        self.credit += self.kept
        if self.credit >= self.of:
            self.credit -= self.of
            return True
        return False

    def process(self, batch: Batch) -> Batch | None:
        events = batch.events
        if self.key is None and self.exclude is None:
            kept = [event for event in events if self._count()]
        else:
            to_log_events(batch)
            events = batch.events
            kept = self._sample_events(events)
        return keep_only(batch, kept, self.stats, "sampled")

    def _sample_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        key_of, exclude, kept_of, of = self.key, self.exclude, self.kept, self.of
        decided: dict[str, bool] = {}  # per batch: the events of one trace usually come together
        kept: list[dict[str, Any]] = []
        append = kept.append
        for event in events:
            if exclude is not None and exclude(event):
                append(event)
                continue
            text = key_of(event) if key_of is not None else None
            if text is None:
                keep = self._count()
            else:
                keep = decided.get(text)  # type: ignore[assignment]
                if keep is None:
                    keep = decided[text] = stable_hash(text) % of < kept_of
            if keep:
                append(event)
        return kept
