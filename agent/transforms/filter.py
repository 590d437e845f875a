"""Transform `filter`: keep or drop events by a condition, or by Fluent Bit's grep rules.

``condition:`` keeps the events for which it holds, ``drop_if:`` drops them (the expression language
of :mod:`agent.expr`). Fluent Bit's grep filter carries over as ``regex: {field: pattern}`` (keep by a
match), ``exclude: {field: pattern}`` (drop by a match) and ``rules:``, the same rules as an ordered list
(``[{exclude: {log: health}}, {regex: {level: ERROR}}]``), with Fluent Bit's ``logical_op``:

- ``legacy`` (Fluent Bit's default, as its 4.2.8 binary behaves, which is not what its documentation says):
  the rules in order; a matching ``exclude`` drops, a ``regex`` decides at once (kept if it matches, dropped if
  not), an event no rule decided is kept. The maps are read exclude rules first, then regex rules. A rule after
  the first ``regex`` rule would never be evaluated, so it is a config error (use ``and`` or ``or``).
- ``and`` / ``or``: rules of one kind only (both is an error, as in Fluent Bit): keep an event if every / any
  ``regex`` rule matches, or drop it if every / any ``exclude`` rule matches.

A field that is missing or not a string matches no pattern. Patterns are RE2 (``agent.core.regex``).

A dropped event is done, not lost: it is counted (discarded, reason ``filtered``) and, once a whole
batch is dropped, its acks are released as delivered. Raw lines are tested as ``{"message": line}``
(JSON lines as their object) and passed on as they came.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress
from typing import Any, Literal, NamedTuple

from agent.config.model import RootConfig, TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch, Kind
from agent.core.drop import keep_only
from agent.core.events import event_views
from agent.core.keys import at_key
from agent.core.regex import compile_user_regex, searcher
from agent.expr import Column, compile_condition_column, compile_condition_steps, condition_warnings
from agent.expr.columns import negate
from agent.expr.paths import get_field, parse_path

Predicate = Callable[[dict[str, Any]], bool]


class FilterConfig(TransformConfig, tag="filter"):
    """Keep events by ``condition``, drop them by ``drop_if``, or grep them by ``regex``/``exclude``/``rules``.

    Conditions are the agent's expression language (``level == "ERROR" and kubernetes.namespace != "kube-system"``),
    compiled when the config loads. Fluent Bit's grep rules carry over as they are, with its ``logical_op``; regexes are
    RE2. Dropped events are counted (``reason="filtered"``) and acknowledged.
    """

    condition: str | None = None
    """Keep the events for which this condition holds."""
    drop_if: str | None = None
    """Drop the events for which this condition holds."""
    regex: dict[str, str] = {}
    """Fluent Bit grep: field: pattern, keep events whose field matches."""
    exclude: dict[str, str] = {}
    """Fluent Bit grep: field: pattern, drop events whose field matches."""
    rules: list[dict[Literal["regex", "exclude"], dict[str, str]]] = []
    """Fluent Bit grep rules in order, each {regex: {field: pattern}} or {exclude: {field: pattern}}."""
    logical_op: Literal["legacy", "and", "or"] = "legacy"
    """How grep rules combine: legacy (as Fluent Bit 4.2.8 runs them, in order), and (every rule), or (any rule)."""

    def __post_init__(self) -> None:
        given = [key for key in ("condition", "drop_if") if getattr(self, key) is not None]
        if self.regex or self.exclude or self.rules:
            given.append("regex/exclude/rules")
        if len(given) != 1:
            raise ValueError('a filter takes exactly one of "condition", "drop_if", or the grep rules '
                             f'"regex", "exclude" and "rules" (got {", ".join(given) or "none"})')
        keep_steps(self)  # an error in a condition, a field or a pattern is a config error

    def warnings(self, root: RootConfig) -> list[tuple[str, str]]:
        """(message, key) of what is dubious in the conditions (``agent validate`` prints them)."""
        return [(message, key) for key in ("condition", "drop_if")
                for message in condition_warnings(getattr(self, key))]


def keep_steps(config: FilterConfig) -> list[Column]:
    """The tests events must pass to be kept, in turn, each over a batch (a mask, one byte per event, 1: keep).
    A condition ``a and b`` is one step per operand: ``b`` runs only on what ``a`` kept, as the per-event test
    would short-circuit."""
    # each named by its key, so that a config error points at the key's line, not the component's
    if config.condition is not None:
        return at_key("condition", compile_condition_steps, config.condition)
    if config.drop_if is not None:
        drop = at_key("drop_if", compile_condition_column, config.drop_if)
        return [lambda events: negate(drop(events))]
    rules = _rules(config)
    keep = _legacy(rules) if config.logical_op == "legacy" else _combined(rules, config.logical_op == "and")
    return [lambda events: bytes(map(keep, events))]


class _Rule(NamedTuple):
    """One grep rule: where it was written (``regex.log``, ``rules[1].exclude.log``), its kind, field and search."""

    where: str
    exclude: bool
    path: Any
    search: Callable[[str], bool]

    def matches(self, event: dict[str, Any]) -> bool:
        value = get_field(event, self.path)
        return type(value) is str and bool(self.search(value))


def _rules(config: FilterConfig) -> list[_Rule]:
    """The rules in evaluation order: the ``rules`` list if given (with the maps after it), else the
    ``exclude`` map, then the ``regex`` map."""
    written: list[tuple[str, str, dict[str, str]]] = [
        (f"rules[{n}].{kind}", kind, fields) for n, rule in enumerate(config.rules) for kind, fields in rule.items()]
    written += [("exclude", "exclude", config.exclude), ("regex", "regex", config.regex)]
    compiled = []
    for prefix, kind, fields in written:
        for field, pattern in fields.items():
            where = f"{prefix}.{field}"
            try:
                compiled.append(_Rule(where, kind == "exclude", parse_path(field),
                                      searcher(compile_user_regex(pattern))))
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
    return compiled


def _legacy(rules: list[_Rule]) -> Predicate:
    decisive = next((n for n, rule in enumerate(rules) if not rule.exclude), len(rules))
    if decisive + 1 < len(rules):
        raise ValueError(f"{rules[decisive + 1].where}: never evaluated: in the legacy order (Fluent Bit's) the "
                         f"first regex rule ({rules[decisive].where}) decides; set logical_op: and (every rule "
                         "must match) or or (any rule)")
    excludes = rules[:decisive]
    regex = rules[decisive] if decisive < len(rules) else None

    def keep(event: dict[str, Any]) -> bool:
        for rule in excludes:
            if rule.matches(event):
                return False
        return regex is None or regex.matches(event)

    return keep


def _combined(rules: list[_Rule], every: bool) -> Predicate:
    kinds = {rule.exclude for rule in rules}
    if len(kinds) > 1:
        raise ValueError("logical_op and / or takes regex rules or exclude rules, not both (as Fluent Bit)")
    exclude = kinds.pop()
    combine = all if every else any

    def keep(event: dict[str, Any]) -> bool:
        return combine(rule.matches(event) for rule in rules) is not exclude

    return keep


@register("transform", "filter", FilterConfig, "Keeps or drops events by a condition or grep rules.")
class FilterTransform:
    """Passes on the events that pass its test, in order; counts the others as discarded (``filtered``)."""

    mutates = False

    def __init__(self, config: FilterConfig, ctx: BuildContext) -> None:
        self.steps = keep_steps(config)
        self.stats = ctx.stats

    def process(self, batch: Batch) -> Batch | None:
        if batch.kind is Kind.METRICS:
            return batch
        kept, views = batch.events, event_views(batch)  # raw lines are tested as dicts, passed on as they came
        own_views = views is kept  # dict events are their own views
        for step in self.steps:
            mask = step(views)
            kept = list(compress(kept, mask))
            views = kept if own_views else list(compress(views, mask))
        return keep_only(batch, kept, self.stats, "filtered")  # a dropped event is done: counted, acks released
