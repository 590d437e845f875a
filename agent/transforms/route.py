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

from itertools import compress
from typing import Any

from agent.config.model import RootConfig, TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.ack import AckStatus
from agent.core.batch import Batch
from agent.core.events import event_views
from agent.core.keys import at_key
from agent.expr import Column, compile_condition, compile_condition_column, condition_warnings
from agent.expr.columns import Mask, all_of, any_of, negate

UNMATCHED = "_unmatched"


class RouteConfig(TransformConfig, tag="route"):
    """Named outputs, each taking the events for which its condition holds; ``_unmatched`` takes the rest.

    Downstream components read an output as ``inputs: [<id>.<name>]``. An event goes to every route that matches, or
    only to the first with ``exclusive: true``, and is acknowledged once every consumer delivered it.
    """

    routes: dict[str, str]
    """Output name to condition; downstream components read an output as <id>.<name>, and <id>._unmatched gets events no
    route took.
    """
    exclusive: bool = False
    """Send an event to the first route that matches only, instead of to every one."""

    def __post_init__(self) -> None:
        if not self.routes:
            raise ValueError("a route needs at least one entry in routes")
        for name, condition in self.routes.items():
            if not name or "." in name or name == UNMATCHED:
                raise ValueError(f'routes: "{name}" cannot name a route (not empty, no ".", not "{UNMATCHED}")')
            at_key(f"routes.{name}", compile_condition, condition)

    def warnings(self, root: RootConfig) -> list[tuple[str, tuple[str, str]]]:
        """(message, key) of what is dubious in the conditions (``agent validate`` prints them)."""
        return [(message, ("routes", name)) for name, text in self.routes.items()
                for message in condition_warnings(text)]

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
        self.columns: list[Column] = [compile_condition_column(c) for c in config.routes.values()]
        self.exclusive = config.exclusive
        self.shares_events = not config.exclusive  # one event may be in several outputs' batches

    def route(self, batch: Batch) -> list[tuple[str, Batch]]:
        events = batch.events
        views = event_views(batch)
        chosen = self._first_matches(views) if self.exclusive else self._all_matches(views)
        parts = [(name, list(compress(events, column))) for name, column in chosen]
        parts = [(name, picked) for name, picked in parts if picked]
        if not parts:  # an empty batch
            batch.finalize(AckStatus.DELIVERED)
            return []
        if len(parts) == 1 and len(parts[0][1]) == len(events):
            return [(parts[0][0], batch)]  # everything went one way: the batch itself goes on
        batch.retain(len(parts) - 1)
        total = len(events)
        return [(name, Batch(picked, batch.kind, batch.byte_size * len(picked) // total, list(batch.acks)))
                for name, picked in parts]

    def _all_matches(self, views: list[Any]) -> list[tuple[str, Mask]]:
        """Per route, the events it takes; then those none took."""
        masks = [column(views) for column in self.columns]
        return [*zip(self.names, masks, strict=True), (UNMATCHED, negate(any_of(masks, len(views))))]

    def _first_matches(self, views: list[Any]) -> list[tuple[str, Mask]]:
        """Per route, the events for which it is the first route that matches; then the rest."""
        size = len(views)
        free = b"\x01" * size  # not taken by an earlier route
        picked: list[tuple[str, Mask]] = []
        for name, column in zip(self.names, self.columns, strict=True):
            mask = column(views)
            picked.append((name, all_of([mask, free], size)))
            free = all_of([free, negate(mask)], size)
        picked.append((UNMATCHED, free))
        return picked
