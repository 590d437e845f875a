"""Raw lines as dict events, for the stages that work on fields of any batch (modify, nest, redact, ...).

A LINES batch becomes ``{"message": <text>}`` events (invalid UTF-8 replaced), a JSON_LINES batch its parsed
objects (a line that is not an object is kept as its text under ``message``, as ``parse`` keeps it). The batch
is changed in place, kind and ``byte_size`` included (``agent.core.footprint``).
"""

from __future__ import annotations

import orjson

from agent.core.batch import Batch, Kind
from agent.core.footprint import decoded_bytes


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
