"""Kafka record values back into events: the three encodings the sink writes (``agent.kafka.encoding``).

``json``: each value one JSON object; ``msgpack``: one msgpack map; ``raw``: the value is the ``message``.
A value that does not decode to an object (bad JSON, a scalar, a tombstone without value) becomes
``{"message": <the value as text>, "parse_error": <reason>}``: it goes on and is counted, so a poison record
never holds its partition. With ``metadata``, each event gets ``kafka: {topic, partition, offset, timestamp,
key}`` (the key as UTF-8 text, else base64; the timestamp in milliseconds).

One loop per encoding over a whole fetched batch: per record, a decode and a dict.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson

from agent.core.footprint import decoded_bytes
from agent.kafka.encoding import Encoding

NOT_JSON = "not a JSON object"
NOT_MSGPACK = "not a msgpack map"
NO_VALUE = "record without a value"
METADATA_BYTES = 250  # the kafka dict of one event with its offset, timestamp and key (tracemalloc: ~242)

_msgpack_decode = msgspec.msgpack.Decoder().decode
# what a value that does not decode raises: DecodeError (a ValueError), TypeError for a tombstone's None, and
# RecursionError from msgspec on a value nested deeper than Python's recursion limit
_UNDECODABLE = (ValueError, TypeError, RecursionError)


def key_text(key: bytes | None) -> str | None:
    """A record key as text: UTF-8 when it is, else base64."""
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(key).decode("ascii")


def _raw_event(value: bytes | None, reason: str) -> dict[str, Any]:
    text = value.decode("utf-8", "replace") if value is not None else ""
    return {"message": text, "parse_error": reason}


class RecordDecoder:
    """Turns the records aiokafka fetched from one partition into events; ``errors`` counts the ones passed raw."""

    __slots__ = ("encoding", "errors", "metadata")

    def __init__(self, encoding: Encoding, metadata: bool) -> None:
        self.encoding = encoding
        self.metadata = metadata
        self.errors = 0

    def decode(self, topic: str, partition: int, records: Sequence[Any]) -> tuple[list[Any], bool, int]:
        """``(events, are_dicts, byte_size)``: raw values without metadata stay bytes (a LINES batch)."""
        nbytes = 0
        if self.encoding == "raw":
            if not self.metadata:
                lines = [r.value if r.value is not None else b"" for r in records]
                return lines, False, sum(map(len, lines)) + len(lines)
            events: list[dict[str, Any]] = []
            append = events.append
            for r in records:
                value = r.value
                if value is None:
                    append(_raw_event(None, NO_VALUE))
                    self.errors += 1
                    continue
                nbytes += len(value)
                append({"message": value.decode("utf-8", "replace")})
        else:
            events = self._objects(records)
            nbytes = sum(len(r.value) for r in records if r.value is not None)
        if self.metadata:
            for event, r in zip(events, records, strict=True):
                key = r.key
                if key is not None:
                    key = key_text(key)
                event["kafka"] = {"topic": topic, "partition": partition, "offset": r.offset,
                                  "timestamp": r.timestamp, "key": key}
            nbytes += METADATA_BYTES * len(events)
        return events, True, decoded_bytes(nbytes, len(events))

    def _objects(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        if self.encoding == "json":
            loads: Any = orjson.loads
            reason = NOT_JSON
        else:
            loads = _msgpack_decode
            reason = NOT_MSGPACK
        events: list[dict[str, Any]] = []
        append = events.append
        for r in records:
            value = r.value
            try:
                event = loads(value)
            except _UNDECODABLE:
                append(_raw_event(value, NO_VALUE if value is None else reason))
                self.errors += 1
                continue
            if type(event) is not dict:
                append(_raw_event(value, reason))
                self.errors += 1
                continue
            append(event)
        return events
