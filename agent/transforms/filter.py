"""Transform `filter`: keep or drop events by a condition, or by Fluent Bit's grep rules.

``condition:`` keeps the events for which it holds, ``drop_if:`` drops them (the expression language
of :mod:`agent.expr`). Fluent Bit's grep filter carries over as ``regex: {field: pattern}`` (keep an
event only if every such field matches its pattern) and ``exclude: {field: pattern}`` (drop an event
if any such field matches): the semantics Fluent Bit documents for its default, ``legacy`` mode. A
field that is missing or not a string matches no pattern. Patterns are RE2 (``agent.core.regex``).

A dropped event is done, not lost: it is counted (discarded, reason ``filtered``) and, once a whole
batch is dropped, its acks are released as delivered. Raw lines are tested as ``{"message": line}``
(JSON lines as their object) and passed on as they came.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.config.model import TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch, Kind
from agent.core.drop import keep_only
from agent.core.events import event_views
from agent.core.regex import compile_user_regex, searcher
from agent.expr import compile_condition
from agent.expr.paths import get_field, parse_path

Predicate = Callable[[dict[str, Any]], bool]


class FilterConfig(TransformConfig, tag="filter"):
    """Keep events by ``condition``, drop them by ``drop_if``, or grep them by ``regex``/``exclude``."""

    condition: str | None = None
    drop_if: str | None = None
    regex: dict[str, str] = {}
    exclude: dict[str, str] = {}

    def __post_init__(self) -> None:
        given = [key for key in ("condition", "drop_if") if getattr(self, key) is not None]
        if self.regex or self.exclude:
            given.append("regex/exclude")
        if len(given) != 1:
            raise ValueError('a filter takes exactly one of "condition", "drop_if", or the grep rules '
                             f'"regex" and "exclude" (got {", ".join(given) or "none"})')
        keep_predicate(self)  # an error in a condition, a field or a pattern is a config error


def keep_predicate(config: FilterConfig) -> Predicate:
    """The test an event must pass to be kept."""
    if config.condition is not None:
        return compile_condition(config.condition)
    if config.drop_if is not None:
        drop = compile_condition(config.drop_if)
        return lambda event: not drop(event)
    return _grep(_rules(config.regex, "regex"), _rules(config.exclude, "exclude"))


Rule = tuple[Any, Callable[[str], bool]]  # a field path, and a search of its text


def _rules(rules: dict[str, str], key: str) -> list[Rule]:
    compiled = []
    for field, pattern in rules.items():
        try:
            compiled.append((parse_path(field), searcher(compile_user_regex(pattern))))
        except ValueError as exc:
            raise ValueError(f"{key}.{field}: {exc}") from None
    return compiled


def _grep(regex: list[Rule], exclude: list[Rule]) -> Predicate:
    def keep(event: dict[str, Any]) -> bool:
        for path, search in exclude:
            value = get_field(event, path)
            if type(value) is str and search(value):
                return False
        for path, search in regex:
            value = get_field(event, path)
            if type(value) is not str or not search(value):
                return False
        return True

    return keep


@register("transform", "filter", FilterConfig, "Keeps or drops events by a condition or grep rules.")
class FilterTransform:
    """Passes on the events that pass its test, in order; counts the others as discarded (``filtered``)."""

    mutates = False

    def __init__(self, config: FilterConfig, ctx: BuildContext) -> None:
        self.keep = keep_predicate(config)
        self.stats = ctx.stats

    def process(self, batch: Batch) -> Batch | None:
        if batch.kind is Kind.METRICS:
            return batch
        events, keep = batch.events, self.keep
        if batch.kind.is_raw:
            kept = [event for event, view in zip(events, event_views(batch), strict=True) if keep(view)]
        else:
            kept = [event for event in events if keep(event)]
        return keep_only(batch, kept, self.stats, "filtered")  # a dropped event is done: counted, acks released
