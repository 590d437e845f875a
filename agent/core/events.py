"""Helpers of the stages that change fields: raw lines as dict events, copy-on-write of nested objects.

A LINES batch becomes ``{"message": <text>}`` events (invalid UTF-8 replaced), a JSON_LINES batch its parsed
objects (a line that is not an object is kept as its text under ``message``, as ``parse`` keeps it). The batch
is changed in place, kind and ``byte_size`` included (``agent.core.footprint``).
"""

from __future__ import annotations

from typing import Any

import orjson

from agent.core.batch import Batch, Kind
from agent.core.footprint import decoded_bytes
from agent.expr.paths import FieldPath


def to_log_events(batch: Batch) -> None:
    """Make a raw batch a LOGS batch of dict events (a LOGS batch is left as it is)."""
    if not batch.kind.is_raw:
        return
    if batch.kind is Kind.JSON_LINES:
        events = []
        for line in batch.events:
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                value = None
            events.append(value if type(value) is dict else {"message": line.decode("utf-8", "replace")})
    else:
        events = [{"message": line.decode("utf-8", "replace")} for line in batch.events]
    batch.events = events
    batch.kind = Kind.LOGS
    batch.byte_size = decoded_bytes(batch.byte_size, len(events))


def event_views(batch: Batch) -> list[Any]:
    """The events of ``batch`` as dicts to test, without changing the batch: raw lines are read as
    ``{"message": text}``, JSON lines as their object (see :func:`to_log_events`)."""
    if not batch.kind.is_raw:
        return batch.events
    view = Batch(list(batch.events), batch.kind, 0)
    to_log_events(view)
    return view.events


def own_parents(event: dict[str, Any], path: FieldPath) -> None:
    """Replace the dicts and lists on the way to ``path`` by copies, so that a write there changes this event only.

    Fan-out gives a mutating consumer a shallow copy of each event (``Batch.copy_for_mutation``): the nested
    objects are still shared with the other consumers, and must not be changed in place.
    """
    target: Any = event
    for key in path[:-1]:
        if isinstance(key, str):
            child = target.get(key) if type(target) is dict else None
        else:
            child = target[key] if type(target) is list and -len(target) <= key < len(target) else None
        if type(child) is dict:
            child = target[key] = dict(child)
        elif type(child) is list:
            child = target[key] = list(child)
        else:
            return
        target = child
