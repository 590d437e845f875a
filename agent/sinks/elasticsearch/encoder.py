"""Building `_bulk` bodies: pure functions from events to NDJSON, testable without a network.

Each event becomes an action line and a document line. The index comes from
a template with strftime codes (rendered from the event's time) and
``{{ field }}`` references, so Fluent Bit's ``Logstash_Format`` /
``Logstash_Prefix`` / ``Logstash_DateFormat`` map onto ``index:
"mobius-%Y.%m.%d"``. ``@timestamp`` is set from the event's time when the
document has none. ``id: auto`` derives ``_id`` from where the event was read
(``file`` and ``offset`` for tail), so a retry or a replay after a crash
writes the same documents again instead of new ones.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from agent.codecs.encoding import json_documents
from agent.core.batch import Kind

_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FIELD = re.compile(r"\{\{\s*([A-Za-z0-9_.@-]+)\s*\}\}")


@lru_cache(maxsize=4096)
def _hour(prefix: str) -> datetime | None:
    """The UTC hour of an RFC 3339 timestamp's first 13 characters (cached: one parse per hour seen)."""
    try:
        return datetime.strptime(prefix, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    except ValueError:
        return None


def _time_value(event: Any) -> Any:
    if type(event) is dict:
        value = event.get("@timestamp")
        if value is None:
            value = event.get("time")
            if value is None:
                value = event.get("timestamp")
        return value
    return None


def event_time(event: Any) -> datetime:
    """The event's time to the hour (what index names use), or now."""
    value = _time_value(event)
    if isinstance(value, str) and len(value) >= 13:
        hour = _hour(value[:13])
        if hour is not None:
            return hour
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    return datetime.now(UTC)


def lookup(event: Any, dotted: str) -> Any:
    value = event
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


class IndexTemplate:
    """Renders ``index`` for one event; strftime results are cached by the hour of the event's time."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.fields = _FIELD.findall(template)
        self.timed = "%" in template
        self._by_hour: dict[tuple[str, str], str] = {}

    @property
    def static(self) -> bool:
        return not self.fields and not self.timed

    def partition_key(self) -> Callable[[Any], str]:
        """The function the batcher calls per event: :meth:`render`, with a shortcut for time-only templates."""
        if self.fields or not self.timed:
            return self.render
        by_prefix: dict[str, str] = {}
        render = self.render

        def key(event: Any) -> str:
            value = _time_value(event)
            if type(value) is str:
                name = by_prefix.get(value[:13])
                if name is None:
                    if len(by_prefix) >= 4096:
                        by_prefix.clear()
                    name = by_prefix[value[:13]] = render(event)
                return name
            return render(event)

        return key

    def render(self, event: Any) -> str:
        name = self.template
        if self.fields:
            name = _FIELD.sub(lambda m: _index_safe(lookup(event, m.group(1))), name)
        if self.timed:
            value = _time_value(event)
            if type(value) is not str or len(value) < 13:
                return event_time(event).strftime(name)
            key = (name, value[:13])
            rendered = self._by_hour.get(key)
            if rendered is None:
                if len(self._by_hour) >= 4096:
                    self._by_hour.clear()
                rendered = self._by_hour[key] = event_time(event).strftime(name)
            return rendered
        return name


def _index_safe(value: Any) -> str:
    if value is None:
        return "unknown"
    return re.sub(r"[\\/*?\"<>| ,#:]", "_", str(value)).lower()


@lru_cache(maxsize=4096)
def _file_prefix(source: str, inode: Any) -> bytes:
    """8 bytes naming one file: its path and inode."""
    return hashlib.blake2b(f"{source}\0{inode}".encode(), digest_size=8).digest()


def document_id(event: Any, id_mode: str) -> str | None:
    """``auto``: from where the event was read; ``none``: let Elasticsearch pick; else a field's value.

    ``auto`` is 18 bytes, base64url: a hash of the file's path and inode, the
    offset the event starts at, and a CRC of its time (or, without one, its
    message). A replay of the same bytes gives the same ``_id``; a file that
    replaced another under the same path (rotation, copytruncate) gives new
    ones. Events that were not read from a file get no ``_id``.
    """
    if type(event) is not dict or id_mode == "none":
        return None
    if id_mode == "auto":
        raw = _auto_id(event)
        return None if raw is None else raw.decode()
    value = lookup(event, id_mode)
    return None if value is None else str(value)


def _auto_id(event: dict[str, Any]) -> bytes | None:
    """The ``auto`` id as base64url bytes (JSON-safe as they are), or None without a file position."""
    source, offset = event.get("file"), event.get("offset")
    if type(source) is not str or type(offset) is not int:
        return None
    stamp = event.get("time")
    if type(stamp) is not str:
        stamp = str(event.get("message", ""))
    key = (_file_prefix(source, event.get("inode")) + offset.to_bytes(6, "big")
           + zlib.crc32(stamp.encode("utf-8", "replace")).to_bytes(4, "big"))
    return binascii.b2a_base64(key, newline=False).translate(_URLSAFE)


def bulk_body(kind: Kind, events: list[Any], index: str, *, op: str, id_mode: str, routing: str | None,
              type_name: str | None) -> bytes:
    """The NDJSON `_bulk` body for events that all go to ``index`` (it ends with a newline)."""
    documents = json_documents(kind, events)
    dumps = orjson.dumps
    now = dumps(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z")
    plain = dumps({op: _meta(index, None, type_name)})  # {"index":{"_index":"x"}}
    open_meta = plain[:-2]
    auto, by_field = id_mode == "auto", id_mode not in ("auto", "none")
    parts: list[Any] = []
    append = parts.append
    for event, document in zip(events, documents, strict=True):
        id_part = None
        if auto and type(event) is dict:
            raw_id = _auto_id(event)
            if raw_id is not None:
                id_part = b',"_id":"' + raw_id + b'"'
        elif by_field:
            doc_id = document_id(event, id_mode)
            if doc_id is not None:
                id_part = b',"_id":' + dumps(doc_id)
        route = lookup(event, routing) if routing else None
        if id_part is None and route is None:
            append(plain)
        else:
            append(open_meta)
            if id_part is not None:
                append(id_part)
            if route is not None:
                append(b',"routing":' + dumps(str(route)))
            append(b"}}")
        append(b"\n")
        _append_document(append, event, document, now)
        append(b"\n")
    return b"".join(parts)


def _append_document(append: Any, event: Any, document: bytes, now: bytes) -> None:
    """``document`` with ``@timestamp`` spliced in front unless it has one (no re-encoding, no copy)."""
    if isinstance(event, dict):
        if "@timestamp" in event:
            append(document)
            return
        stamp = event.get("time")
        if type(stamp) is not str:
            stamp = event.get("timestamp")
        stamp_json = orjson.dumps(stamp) if type(stamp) is str else now
    elif b'"@timestamp"' in document:
        append(document)
        return
    else:
        stamp_json = now
    append(b'{"@timestamp":')
    append(stamp_json)
    if document == b"{}":
        append(b"}")
    else:
        append(b",")
        append(memoryview(document)[1:])


def _meta(index: str, routing: Any, type_name: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"_index": index}
    if type_name:
        meta["_type"] = type_name
    if routing is not None:
        meta["routing"] = str(routing)
    return meta
