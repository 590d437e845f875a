"""Transform `route`: send events to named outputs by condition.

``routes: {audit: 'type == "audit"', errors: 'level in ["ERROR", "CRITICAL"]'}`` gives the component
one output per route plus ``_unmatched`` (events no route took); downstream components read
``inputs: [<id>.audit]``. An event goes to every route whose condition holds, or with ``exclusive:
true`` to the first one in the order written. An output nobody reads is fine: what reaches it is
counted (discarded, reason ``no_consumer``) and released as delivered.

Each output's batch carries its own reference on the acks of the batch it came from, so an event
sent to two routes is acknowledged once both consumers have finished with it. The events themselves
are shared between outputs, not copied: the topology copies them for consumers that change events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.config.model import TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.ack import AckStatus
from agent.core.batch import Batch
from agent.core.events import event_views
from agent.expr import compile_condition

UNMATCHED = "_unmatched"


class RouteConfig(TransformConfig, tag="route"):
    """Named outputs, each taking the events for which its condition holds; ``_unmatched`` takes the rest."""

    routes: dict[str, str]
    exclusive: bool = False  # an event goes to the first route that matches only

    def __post_init__(self) -> None:
        if not self.routes:
            raise ValueError("a route needs at least one entry in routes")
        for name, condition in self.routes.items():
            if not name or "." in name or name == UNMATCHED:
                raise ValueError(f'routes: "{name}" cannot name a route (not empty, no ".", not "{UNMATCHED}")')
            try:
                compile_condition(condition)
            except ValueError as exc:
                raise ValueError(f"routes.{name}: {exc}") from None

    def named_outputs(self) -> list[str]:
        """The outputs downstream components read as ``<id>.<name>``."""
        return [*self.routes, UNMATCHED]


@register("transform", "route", RouteConfig, "Sends events to named outputs by condition.")
class RouteTransform:
    """Splits each batch into one batch per output that receives events (see the module docstring)."""

    mutates = False
    fallback = UNMATCHED  # where a batch goes whole if routing it fails

    def __init__(self, config: RouteConfig, ctx: BuildContext) -> None:
        self.names = list(config.routes)
        self.conditions: list[Callable[[dict[str, Any]], bool]] = [compile_condition(c) for c in config.routes.values()]
        self.exclusive = config.exclusive
        self.shares_events = not config.exclusive  # one event may be in several outputs' batches

    def route(self, batch: Batch) -> list[tuple[str, Batch]]:
        events = batch.events
        views = event_views(batch)
        if self.exclusive:
            chosen = self._first_matches(views)
        else:
            chosen = self._all_matches(views)
        parts = [(name, picked) for name, picked in chosen if picked]
        if not parts:  # an empty batch
            batch.finalize(AckStatus.DELIVERED)
            return []
        if len(parts) == 1 and len(parts[0][1]) == len(events):
            return [(parts[0][0], batch)]  # everything went one way: the batch itself goes on
        batch.retain(len(parts) - 1)
        total = len(events)
        return [(name, Batch([events[i] for i in picked], batch.kind, batch.byte_size * len(picked) // total,
                             list(batch.acks)))
                for name, picked in parts]

    def _all_matches(self, views: list[Any]) -> list[tuple[str, list[int]]]:
        """Per route, the indexes of the events it takes; then those none took."""
        matched = [[i for i, view in enumerate(views) if condition(view)] for condition in self.conditions]
        taken: set[int] = set().union(*matched)
        unmatched = [i for i in range(len(views)) if i not in taken]
        return [*zip(self.names, matched, strict=True), (UNMATCHED, unmatched)]

    def _first_matches(self, views: list[Any]) -> list[tuple[str, list[int]]]:
        """Per route, the indexes of the events for which it is the first route that matches; then the rest."""
        picked: list[list[int]] = [[] for _ in range(len(self.conditions) + 1)]
        conditions = list(enumerate(self.conditions))
        rest = picked[-1]
        for i, view in enumerate(views):
            for k, condition in conditions:
                if condition(view):
                    picked[k].append(i)
                    break
            else:
                rest.append(i)
        return list(zip([*self.names, UNMATCHED], picked, strict=True))
