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
from functools import lru_cache
from typing import Any

import orjson

from agent.codecs.encoding import dumps_lenient, json_documents
from agent.codecs.template import EventTemplate, lookup
from agent.core.batch import Kind

_URLSAFE = bytes.maketrans(b"+/", b"-_")


class IndexTemplate(EventTemplate):
    """Renders ``index`` for one event; strftime results are cached by the hour of the event's time."""

    def __init__(self, template: str) -> None:
        super().__init__(template, _index_safe)


def _index_safe(value: Any) -> str:
    if value is None:
        return "unknown"
    return re.sub(r"[\\/*?\"<>| ,#:]", "_", str(value)).lower()


@lru_cache(maxsize=4096)
def _file_prefix(source: str, inode: Any) -> bytes:
    """8 bytes naming one file: its path and inode."""
    return hashlib.blake2b(f"{source}\0{inode}".encode(), digest_size=8).digest()


def auto_ids(events: list[dict[str, Any]]) -> list[bytes | None]:
    """The ``auto`` ``_id`` of each event (base64url bytes, JSON-safe as they are), None without a file position.

    18 bytes: a hash of the file's path and inode, the offset the event starts
    at, and a CRC of its time (or, without one, its message). A replay of the
    same bytes gives the same ``_id``; a file that replaced another under the
    same path (rotation, copytruncate) gives new ones.
    """
    ids: list[bytes | None] = []
    append, crc32, b2a = ids.append, zlib.crc32, binascii.b2a_base64
    last_source: str | None = None
    last_inode: Any = None
    prefix = b""
    for event in events:
        source, offset = event.get("file"), event.get("offset")
        if type(source) is not str or type(offset) is not int:
            append(None)
            continue
        stamp = event.get("time")
        if type(stamp) is not str:
            stamp = str(event.get("message", ""))
        inode = event.get("inode")
        if source is not last_source or inode != last_inode:  # a run of events from one file shares the string
            prefix, last_source, last_inode = _file_prefix(source, inode), source, inode
        key = prefix + ((offset << 32) | crc32(stamp.encode("utf-8", "replace"))).to_bytes(10, "big")
        append(b2a(key, newline=False).translate(_URLSAFE))
    return ids


def document_id(event: Any, id_mode: str) -> str | None:
    """``auto``: from where the event was read (see :func:`auto_ids`); ``none``: let Elasticsearch pick;
    else a field's value. Only dict events get one."""
    if type(event) is not dict or id_mode == "none":
        return None
    if id_mode == "auto":
        raw = auto_ids([event])[0]
        return None if raw is None else raw.decode()
    value = lookup(event, id_mode)
    return None if value is None else str(value)


def bulk_body(kind: Kind, events: list[Any], index: str, *, op: str, id_mode: str, routing: str | None,
              type_name: str | None) -> bytes:
    """The NDJSON `_bulk` body for events that all go to ``index`` (it ends with a newline).

    Dict events without ``@timestamp`` get one from ``time`` or ``timestamp``, else now. A text ``time`` is
    stored in the event itself (the sink declares that it mutates events, so fan-out hands it copies when
    others read them); any other stamp is spliced into the encoded document.
    """
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
    plain = orjson.dumps({op: _meta(index, None, type_name)}) + b"\n"  # {"index":{"_index":"x"}}
    if kind is not Kind.LOGS:
        return _documents_body(json_documents(kind, events), plain, orjson.dumps(now))
    if routing is not None:
        actions = [orjson.dumps({op: _meta(index, lookup(e, routing), type_name, doc_id)}) + b"\n"
                   for e, doc_id in zip(events, _ids(events, id_mode), strict=True)]
        return _events_body(events, actions, now)
    return _events_body(events, _actions(_ids(events, id_mode), plain), now)


def _ids(events: list[dict[str, Any]], id_mode: str) -> list[Any]:
    if id_mode == "auto":
        return auto_ids(events)
    if id_mode == "none":
        return [None] * len(events)
    return [document_id(e, id_mode) for e in events]


def _actions(ids: list[Any], plain: bytes) -> list[bytes]:
    """The action line of each event: ``plain`` with its id, if any, spliced in."""
    opening = plain[:-3] + b',"_id":'
    actions: list[bytes] = []
    append = actions.append
    for doc_id in ids:
        if doc_id is None:
            append(plain)
        elif type(doc_id) is bytes:  # auto: base64url needs no escaping
            append(opening + b'"' + doc_id + b'"}}\n')
        else:
            append(opening + orjson.dumps(doc_id) + b"}}\n")
    return actions


def _events_body(events: list[dict[str, Any]], actions: list[bytes], now: str) -> bytes:
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    parts: list[bytes] = []
    append = parts.append
    for event, action in zip(events, actions, strict=True):
        append(action)
        spliced = None
        if "@timestamp" not in event:
            stamp = event.get("time")
            if type(stamp) is str:  # stored: what index templates read (_time_value) stays the same
                event["@timestamp"] = stamp
            else:  # spliced into the document only: storing it would move the event to another index
                stamp = event.get("timestamp")  # if a retry is partitioned again (hand-back on reload)
                spliced = orjson.dumps(stamp if type(stamp) is str else now)
        try:
            document = dumps(event, option=newline)
        except TypeError:  # a value orjson does not know (bytes, sets...)
            document = dumps_lenient(event, newline)
        append(document if spliced is None else _stamped(spliced, document))
    return b"".join(parts)


def _documents_body(documents: list[bytes], plain: bytes, now: bytes) -> bytes:
    """Bodies of JSON documents already encoded (raw lines, metrics): ``@timestamp`` spliced in front."""
    parts: list[bytes] = []
    append = parts.append
    for document in documents:
        append(plain)
        append(document if b'"@timestamp"' in document else _stamped(now, document))
        append(b"\n")
    return b"".join(parts)


def _stamped(stamp: bytes, document: bytes) -> bytes:
    """``document`` (a JSON object, newline-terminated or not) with ``"@timestamp": stamp`` first."""
    rest = document[1:]
    return b'{"@timestamp":' + stamp + (rest if rest[:1] == b"}" else b"," + rest)


def _meta(index: str, routing: Any, type_name: str | None, doc_id: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"_index": index}
    if type_name:
        meta["_type"] = type_name
    if doc_id is not None:
        meta["_id"] = doc_id.decode() if type(doc_id) is bytes else doc_id
    if routing is not None:
        meta["routing"] = str(routing)
    return meta
