"""Transform `nest`: Fluent Bit's nest filter, ``nest`` (gather keys under one) and ``lift`` (the reverse).

``operation: nest`` moves every top-level key that matches one of ``wildcard`` (a name, or a prefix ending
in ``*``; ``*`` alone matches every key) into an object under ``nest_under``; an event with no matching key
is left as it is, and an object already under ``nest_under`` is merged into. ``operation: lift`` moves the
keys of the object under ``nested_under`` to the top level (replacing keys of the same name there); a value
that is not an object is left where it is. For the keys moved either way, ``remove_prefix`` is taken off their
names when they start with it and ``add_prefix`` is put in front (``wildcard: Mem.*``, ``remove_prefix:
Mem.``). Objects read from an event are never changed in place (another consumer may share them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from agent.config.model import TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch, Kind
from agent.core.events import to_log_events
from agent.core.footprint import PARSED_DICT_BYTES


class NestConfig(TransformConfig, tag="nest"):
    """Fluent Bit's nest filter: nest top-level keys under one key, or lift a nested object's keys to the top level."""

    operation: Literal["nest", "lift"]
    """nest: move keys under one key; lift: bring a nested object's keys to the top level."""
    wildcard: list[str] | str = []
    """nest: the keys to move; a trailing * matches a prefix."""
    nest_under: str | None = None
    """nest: the key they are moved under."""
    nested_under: str | None = None
    """lift: the object whose keys come up."""
    add_prefix: str = ""
    """Prefix added to each moved key."""
    remove_prefix: str = ""
    """Prefix removed from each moved key."""

    def __post_init__(self) -> None:
        wildcards = [self.wildcard] if isinstance(self.wildcard, str) else self.wildcard
        if self.operation == "nest":
            if not wildcards or not self.nest_under:
                raise ValueError("operation nest needs wildcard and nest_under")
            for pattern in wildcards:
                if "*" in pattern[:-1]:
                    raise ValueError(f"wildcard {pattern!r}: a * may only end a pattern (it matches a prefix)")
        elif not self.nested_under:
            raise ValueError("operation lift needs nested_under")

    @property
    def wildcards(self) -> list[str]:
        return [self.wildcard] if isinstance(self.wildcard, str) else self.wildcard


@register("transform", "nest", NestConfig, "Nests keys under a key or lifts them out.")
class NestTransform:
    """Applies one nest or lift operation to every event of a batch."""

    mutates = True

    def __init__(self, config: NestConfig, ctx: BuildContext) -> None:
        self.config = config
        self.stats = ctx.stats
        self.rename = _renamer(config.remove_prefix, config.add_prefix)

    def process(self, batch: Batch) -> Batch | None:
        if batch.kind is Kind.METRICS:
            return batch
        to_log_events(batch)
        if self.config.operation == "nest":
            nested = self._nest(batch.events)
            batch.byte_size += nested * PARSED_DICT_BYTES
        else:
            self._lift(batch.events)
        return batch

    def _nest(self, events: list[dict[str, Any]]) -> int:
        """Nest the matching keys of every event; how many events got a new object."""
        exact = frozenset(p for p in self.config.wildcards if not p.endswith("*"))
        prefixes = tuple(p[:-1] for p in self.config.wildcards if p.endswith("*"))
        under, rename = self.config.nest_under, self.rename
        assert under is not None
        nested = 0
        for event in events:
            moved = [k for k in event if type(k) is str and (k in exact or k.startswith(prefixes))]
            if not moved:
                continue
            inner = {rename(k): event.pop(k) for k in moved}
            existing = event.get(under)
            if type(existing) is dict:
                inner = {**existing, **inner}
            else:
                nested += 1
            event[under] = inner
        return nested

    def _lift(self, events: list[dict[str, Any]]) -> None:
        under, rename = self.config.nested_under, self.rename
        for event in events:
            inner = event.get(under)  # type: ignore[arg-type]
            if type(inner) is not dict:
                continue
            del event[under]  # type: ignore[arg-type]
            for key, value in inner.items():
                event[rename(key) if type(key) is str else key] = value


def _renamer(remove_prefix: str, add_prefix: str) -> Callable[[str], str]:
    """The name a moved key takes."""
    if not remove_prefix and not add_prefix:
        return lambda key: key

    def rename(key: str) -> str:
        if remove_prefix and key.startswith(remove_prefix):
            key = key[len(remove_prefix):]
        return add_prefix + key

    return rename
