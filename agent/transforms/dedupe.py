"""Transform `dedupe`: drop an event whose ``fields`` all equal those of one seen recently.

An event's identity is the values of ``fields`` (a missing field differs from a null one; objects compare by
content, whatever their key order), remembered as a 16-byte digest, so a huge value costs no more memory
than a small one. The last ``max_keys`` identities are remembered, the least recently seen forgotten first;
seeing one again makes it recent. Duplicates are counted (``agent_component_discarded_events_total{reason=
"duplicate"}``) and done: their acks are released as delivered. An event that has none of ``fields`` cannot be
told apart from another: it is passed on, not remembered, and counted in ``agent_dedupe_unidentified_events_total``
(with the default ``fields: [message]``, parsed JSON logs without a ``message`` would otherwise all be duplicates
of the first). Raw lines are read as events first (``agent.core.events``: a text line is its ``message``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import msgspec
import orjson

from agent.config.model import TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch
from agent.core.drop import keep_only
from agent.core.events import to_log_events
from agent.core.keys import at_key, digest
from agent.expr.paths import FieldPath, get_field, parse_path

_MISSING = object()
_ABSENT = orjson.Fragment(b"!")  # where a field is missing: no JSON value encodes to a bare "!"
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class DedupeConfig(TransformConfig, tag="dedupe"):
    """Drop events whose ``fields`` equal those of one of the last ``max_keys`` distinct events.

    The remembered identities are bounded, shown as a gauge, and kept across a reload that does not change the stage.
    Dropped events are counted (``reason="duplicate"``) and acknowledged. An event with none of ``fields`` is passed on
    (and counted as unidentified), never taken for a duplicate.
    """

    fields: list[str] = msgspec.field(default_factory=lambda: ["message"])
    """Field paths whose values together identify an event (an event with none of them is passed on)."""
    max_keys: int = 10_000
    """Distinct identities remembered (the most recent ones)."""

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("fields must name at least one field")
        if self.max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        for n, field in enumerate(self.fields):
            at_key(f"fields: item {n + 1} ({field!r})", parse_path, field)


@register("transform", "dedupe", DedupeConfig, "Drops events seen recently, by fields.")
class DedupeTransform:
    """Remembers recent identities in an LRU of ``max_keys``; exposes ``keys`` as a gauge."""

    mutates = False

    def __init__(self, config: DedupeConfig, ctx: BuildContext) -> None:
        self.paths: list[FieldPath] = [parse_path(field) for field in config.fields]
        self.max_keys = config.max_keys
        self.stats = ctx.stats
        self.seen: OrderedDict[bytes, None] = OrderedDict()
        ctx.stats.gauges["keys"] = lambda: len(self.seen)

    def process(self, batch: Batch) -> Batch | None:
        to_log_events(batch)
        events, identity = batch.events, self._identity
        seen, max_keys = self.seen, self.max_keys
        kept = []
        unidentified = 0
        for event in events:
            key = identity(event)
            if key is None:
                unidentified += 1
                kept.append(event)
                continue
            if key in seen:
                seen.move_to_end(key)
                continue
            seen[key] = None
            if len(seen) > max_keys:
                seen.popitem(last=False)
            kept.append(event)
        if unidentified:
            self.stats.count("unidentified_events", unidentified)
        return keep_only(batch, kept, self.stats, "duplicate")

    def _identity(self, event: Any) -> bytes | None:
        """The digest of the event's values of ``fields``; None if it has none of them."""
        values = []
        found = False
        for path in self.paths:
            value = get_field(event, path, _MISSING)
            if value is _MISSING:
                value = _ABSENT
            else:
                found = True
            values.append(value)
        if not found:
            return None
        try:
            data = orjson.dumps(values, option=_OPTIONS)
        except (TypeError, orjson.JSONEncodeError):  # an integer past 64 bits, an object of no JSON type, too deep
            try:
                data = repr(values).encode("utf-8", "surrogatepass")
            except RecursionError:  # nested past the recursion limit: never taken for a duplicate
                return os.urandom(16)
        return digest(data)
