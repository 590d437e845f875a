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

import base64
import hashlib
import re
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from agent.codecs.encoding import json_documents
from agent.core.batch import Kind

_FIELD = re.compile(r"\{\{\s*([A-Za-z0-9_.@-]+)\s*\}\}")
TIME_FIELDS = ("@timestamp", "time", "timestamp")


@lru_cache(maxsize=4096)
def _hour(prefix: str) -> datetime | None:
    """The UTC hour of an RFC 3339 timestamp's first 13 characters (cached: one parse per hour seen)."""
    try:
        return datetime.strptime(prefix, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    except ValueError:
        return None


def event_time(event: Any) -> datetime:
    """The event's time to the hour (what index names use), or now."""
    if isinstance(event, dict):
        for name in TIME_FIELDS:
            value = event.get(name)
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
    """Renders ``index`` for one event; static templates render once."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.fields = _FIELD.findall(template)
        self.timed = "%" in template

    @property
    def static(self) -> bool:
        return not self.fields and not self.timed

    def render(self, event: Any) -> str:
        name = self.template
        if self.fields:
            name = _FIELD.sub(lambda m: _index_safe(lookup(event, m.group(1))), name)
        if self.timed:
            name = event_time(event).strftime(name)
        return name


def _index_safe(value: Any) -> str:
    if value is None:
        return "unknown"
    return re.sub(r"[\\/*?\"<>| ,#:]", "_", str(value)).lower()


def document_id(event: Any, id_mode: str) -> str | None:
    """``auto``: from file and offset when the event has them; ``none``: let Elasticsearch pick; else a field."""
    if not isinstance(event, dict) or id_mode == "none":
        return None
    if id_mode == "auto":
        source, offset = event.get("file"), event.get("offset")
        if source is None or offset is None:
            return None
        digest = hashlib.blake2b(f"{source}\0{offset}".encode(), digest_size=15).digest()
        return base64.urlsafe_b64encode(digest).decode()
    value = lookup(event, id_mode)
    return None if value is None else str(value)


def _timestamp(event: Any) -> str | None:
    if isinstance(event, dict):
        for name in ("time", "timestamp"):
            value = event.get(name)
            if isinstance(value, str):
                return value
    return None


def bulk_body(kind: Kind, events: list[Any], index: str, *, op: str, id_mode: str, routing: str | None,
              type_name: str | None) -> bytes:
    """The NDJSON `_bulk` body for events that all go to ``index`` (it ends with a newline)."""
    documents = json_documents(kind, events)
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
    plain_action = orjson.dumps({op: _meta(index, None, None, type_name)})
    keyed = id_mode != "none" or routing is not None
    lines: list[bytes] = []
    append = lines.append
    for event, document in zip(events, documents, strict=True):
        if keyed:
            doc_id = document_id(event, id_mode)
            route = lookup(event, routing) if routing else None
            append(orjson.dumps({op: _meta(index, doc_id, route, type_name)}) if doc_id or route else plain_action)
        else:
            append(plain_action)
        append(_with_timestamp(event, document, now))
    lines.append(b"")
    return b"\n".join(lines)


def _meta(index: str, doc_id: str | None, routing: Any, type_name: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"_index": index}
    if type_name:
        meta["_type"] = type_name
    if doc_id is not None:
        meta["_id"] = doc_id
    if routing is not None:
        meta["routing"] = str(routing)
    return meta


def _with_timestamp(event: Any, document: bytes, now: str) -> bytes:
    """``document`` with ``@timestamp`` spliced in front unless it has one (no re-encoding)."""
    if isinstance(event, dict):
        if "@timestamp" in event:
            return document
        stamp = _timestamp(event) or now
    elif b'"@timestamp"' in document:
        return document
    else:
        stamp = now
    if document == b"{}":
        return b'{"@timestamp":' + orjson.dumps(stamp) + b"}"
    return b'{"@timestamp":' + orjson.dumps(stamp) + b"," + document[1:]
