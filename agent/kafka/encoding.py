"""How events become Kafka record values: ``json`` (default), ``msgpack`` or ``raw``.

``json``: one JSON object per event; raw JSON lines verbatim, plain lines as ``{"message": ...}``.
``msgpack``: the same object as one msgpack map. ``raw``: the ``message`` field's bytes (a plain or JSON line
as read; a dict event without ``message`` as its JSON). The Kafka source decodes the same three.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import orjson

from agent.codecs.encoding import dumps_lenient, json_documents
from agent.core.batch import Kind

Encoding = Literal["json", "msgpack", "raw"]
ENCODINGS: tuple[Encoding, ...] = ("json", "msgpack", "raw")

_msgpack = msgspec.msgpack.Encoder()
_msgpack_lenient = msgspec.msgpack.Encoder(enc_hook=str)


def encode_values(kind: Kind, events: list[Any], encoding: Encoding) -> list[bytes]:
    """Each event's record value (never raises for an odd value: it is written as text)."""
    if encoding == "json":
        return json_documents(kind, events)
    if encoding == "raw":
        if kind.is_raw:
            return events
        return [_raw(event) for event in events]
    if kind is Kind.LINES:
        return [_msgpack.encode({"message": line.decode("utf-8", "replace")}) for line in events]
    objects = [orjson.loads(line) for line in events] if kind is Kind.JSON_LINES else events
    try:
        return [_msgpack.encode(event) for event in objects]
    except (TypeError, ValueError, OverflowError):  # a value msgpack has no type for: written as its text
        return [_msgpack_value(event) for event in objects]


def _msgpack_value(event: Any) -> bytes:
    try:
        return _msgpack_lenient.encode(event)
    except (TypeError, ValueError, OverflowError):  # integers past 64 bits, cycles: the event's JSON, as text
        return _msgpack.encode(dumps_lenient(event).decode())


def _raw(event: Any) -> bytes:
    message = event.get("message") if type(event) is dict else None
    if type(message) is bytes:
        return message
    if type(message) is str:
        return message.encode("utf-8", "surrogatepass")
    return dumps_lenient(event if message is None else message)
