"""Transform `throttle`: at most ``threshold`` events per ``window`` for each value of ``key``.

Windows are fixed: the counts start again from zero ``window`` after the first event of the last window.
Events past a key's threshold are dropped and counted (``agent_component_discarded_events_total{reason=
"throttled"}``); a batch whose events are all dropped has its acks released as delivered (a throttled event is
done, not lost). At most ``max_keys`` keys are counted per window: events of keys beyond that share one more
budget of ``threshold`` (counted in ``agent_throttle_overflow_events_total``), so a field with endless values
neither grows the stage's memory nor lets a flood through. Raw lines are read as events
(``agent.core.events``) only when ``key`` or ``exclude`` needs their fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.config.model import RootConfig, TransformConfig
from agent.config.registry import BuildContext, register
from agent.config.units import Duration
from agent.core.batch import Batch
from agent.core.drop import keep_only
from agent.core.events import to_log_events
from agent.core.keys import at_key, bounded, compile_key
from agent.expr import compile_condition, condition_warnings

_OVERFLOW = object()  # the shared budget of keys past max_keys


class ThrottleConfig(TransformConfig, tag="throttle"):
    """Let ``threshold`` events per ``window`` through for each value of ``key`` (one budget without a key).

    Events past the threshold are dropped and counted (``reason="throttled"``). At most ``max_keys`` values are counted
    per window; events of further values share one more budget, so a field with endless values neither grows memory nor
    lets a flood through.
    """

    threshold: int
    """Events let through per window for each key value."""
    window: Duration = Duration(1.0)
    """Length of the fixed window the threshold applies to."""
    key: str | None = None
    """Field path or template giving each event's budget, e.g. '{{ kubernetes.namespace }}'; none: one budget for all.
    """
    exclude: str | None = None
    """Condition: events for which it holds are never throttled."""
    max_keys: int = 10_000
    """Key values counted per window at most; events of further values share one more budget of threshold."""

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1")
        if self.window <= 0:
            raise ValueError("window must be longer than 0s")
        if self.max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        if self.key is not None:
            at_key("key", compile_key, self.key)
        if self.exclude is not None:
            at_key("exclude", compile_condition, self.exclude)

    def warnings(self, root: RootConfig) -> list[tuple[str, str]]:
        """(message, key) of what is dubious in ``exclude`` (``agent validate`` prints them)."""
        return [(message, "exclude") for message in condition_warnings(self.exclude)]


@register("transform", "throttle", ThrottleConfig, "Drops events past a rate per key.")
class ThrottleTransform:
    """Counts events per key in fixed windows and drops those past the threshold; exposes ``keys`` as a gauge."""

    mutates = False

    def __init__(self, config: ThrottleConfig, ctx: BuildContext, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = config.threshold
        self.window = float(config.window)
        self.max_keys = config.max_keys
        self.key = compile_key(config.key) if config.key is not None else None
        self.exclude = compile_condition(config.exclude) if config.exclude is not None else None
        self.stats = ctx.stats
        self.clock = clock
        self.counts: dict[Any, int] = {}
        self.window_end = 0.0
        ctx.stats.gauges["keys"] = lambda: len(self.counts)

    def process(self, batch: Batch) -> Batch | None:
        now = self.clock()
        if now >= self.window_end:
            self.counts.clear()
            self.window_end = now + self.window
        events = batch.events
        kept: list[Any]
        if batch.kind.is_raw and self.key is None and self.exclude is None:
            kept = self._throttle_lines(events)
        else:
            to_log_events(batch)
            events = batch.events
            kept = self._throttle_events(events)
        return keep_only(batch, kept, self.stats, "throttled")

    def _throttle_lines(self, lines: list[bytes]) -> list[bytes]:
        """Lines of a throttle without key or condition: one budget for all."""
        slot = None if None in self.counts or len(self.counts) < self.max_keys else _OVERFLOW
        used = self.counts.get(slot, 0)
        kept = lines[:max(0, self.threshold - used)]
        self.counts[slot] = used + len(kept)
        return kept

    def _throttle_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        counts, threshold, key_of, exclude = self.counts, self.threshold, self.key, self.exclude
        kept: list[dict[str, Any]] = []
        append = kept.append
        overflowed = 0
        for event in events:
            if exclude is not None and exclude(event):
                append(event)
                continue
            key: Any = None
            if key_of is not None:
                text = key_of(event)
                key = None if text is None else bounded(text)
            used = counts.get(key)
            if used is None:
                if len(counts) >= self.max_keys:
                    key = _OVERFLOW
                    overflowed += 1
                    used = counts.get(_OVERFLOW, 0)
                else:
                    used = 0
            if used < threshold:
                counts[key] = used + 1
                append(event)
        if overflowed:
            self.stats.count("overflow_events", overflowed)
        return kept
