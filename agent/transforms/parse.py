"""Transform `parse`: decode JSON from a raw line or an event field into event fields.

A raw line is parsed whole; a dict event's ``field`` is parsed and its
object merged into the event (or placed under ``target``). A line that does
not parse is counted and, with ``on_error: keep``, passed on as
``{"message": <line>, "parse_error": "..."}`` so nothing is lost. The batch's
``byte_size`` grows by what the merged keys cost in memory (``agent.core.footprint``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import orjson

from agent.config.model import TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch, Kind
from agent.core.footprint import parsed_bytes

log = logging.getLogger("agent.transforms.parse")


class ParseConfig(TransformConfig, tag="parse"):
    """Parse JSON from raw lines or from ``field`` of structured events."""

    codec: Literal["json"] = "json"
    field: str = "message"
    target: str | None = None
    drop_field: bool = True
    on_error: Literal["keep", "drop"] = "keep"


@register("transform", "parse", ParseConfig, "Parses JSON into event fields.")
class ParseTransform:
    """Turns a batch of lines or events into a LOGS batch of parsed dicts (same acks)."""

    mutates = True

    def __init__(self, config: ParseConfig, ctx: BuildContext) -> None:
        self.config = config
        self.stats = ctx.stats
        self.component_id = ctx.component_id

    def process(self, batch: Batch) -> Batch | None:
        if batch.kind is Kind.METRICS:
            return batch
        from_lines = batch.kind.is_raw
        if from_lines:
            events, failed, keys = self._parse_lines(batch.events)
        else:
            events, failed, keys = self._parse_fields(batch.events)
        if failed:
            self._count_failures(failed)
        batch.events = events
        batch.kind = Kind.LOGS
        batch.byte_size = parsed_bytes(batch.byte_size, len(events), keys, from_lines)
        return batch

    def _parse_lines(self, lines: list[bytes]) -> tuple[list[dict[str, Any]], int, int]:
        """The events of ``lines``, how many did not parse, and how many keys the parsed ones have."""
        loads, target, keep = orjson.loads, self.config.target, self.config.on_error == "keep"
        events: list[dict[str, Any]] = []
        append = events.append
        failed = keys = 0
        for line in lines:
            try:
                value = loads(line)
            except orjson.JSONDecodeError:
                value = None
            if type(value) is not dict:
                failed += 1
                if keep:
                    append({"message": line.decode("utf-8", "replace"), "parse_error": "not a JSON object"})
                continue
            keys += len(value)
            append({target: value} if target else value)
        return events, failed, keys

    def _parse_fields(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int, int]:
        """The events with ``field`` parsed, how many did not parse, and how many keys were merged in."""
        loads, field, target = orjson.loads, self.config.field, self.config.target
        drop_field, keep = self.config.drop_field, self.config.on_error == "keep"
        out: list[dict[str, Any]] = []
        append = out.append
        failed = keys = 0
        for event in events:
            try:
                value = loads(event.get(field))  # type: ignore[arg-type]  # None or non-text: JSONDecodeError
            except orjson.JSONDecodeError:
                value = None
            if type(value) is not dict:
                failed += 1
                if keep:
                    event["parse_error"] = "not a JSON object"
                    append(event)
                continue
            keys += len(value)
            if target:
                event[target] = value
            else:
                if drop_field:
                    del event[field]
                event.update(value)
            append(event)
        return out, failed, keys

    def _count_failures(self, failed: int) -> None:
        self.stats.error("parse_failed", "processing", failed)
        if self.config.on_error == "drop":
            self.stats.discard("parse_failed", failed)
        log.warning("events did not parse as JSON objects", extra={
            "component_id": self.component_id, "count": failed, "on_error": self.config.on_error})
