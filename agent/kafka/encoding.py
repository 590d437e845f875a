"""How events become Kafka record values: ``json`` (default), ``msgpack`` or ``raw``.

``json``: one JSON object per event; raw JSON lines verbatim, plain lines as ``{"message": ...}``.
``msgpack``: the same object as one msgpack map. ``raw``: the ``message`` field's bytes (a plain or JSON line
as read; a dict event without ``message`` as its JSON). The Kafka source decodes the same three.
An event nested deeper than the encoders go (or circular) raises ValueError: the sink dead-letters it
(``encode_failed``) rather than write the outline :func:`~agent.codecs.encoding.dumps_lenient` makes of it.
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
    """Each event's record value (an odd value is written as text; ValueError for an event nested deeper than
    the encoders go, or circular)."""
    if encoding == "json":
        if kind is Kind.LOGS:
            try:
                return [orjson.dumps(event) for event in events]
            except TypeError:  # a value orjson does not know (bytes, sets...), or nested too deep: slow path
                return [whole_json(event) for event in events]
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
        return _msgpack.encode(whole_json(event).decode())


def whole_json(value: Any) -> bytes:
    """:func:`dumps_lenient`, except that a container it could only outline (nested too deep, circular) raises
    ValueError."""
    text = dumps_lenient(value)
    if text[:1] == b'"' and isinstance(value, dict | list | tuple):
        raise ValueError("nested deeper than the JSON encoder goes, or circular")
    return text


def _raw(event: Any) -> bytes:
    message = event.get("message") if type(event) is dict else None
    if type(message) is bytes:
        return message
    if type(message) is str:
        return message.encode("utf-8", "surrogatepass")
    return whole_json(event if message is None else message)
