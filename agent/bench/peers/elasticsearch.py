"""The ``bulk`` role: a minimal Elasticsearch (raw asyncio HTTP/1.1) that counts what the agent sends it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import zlib
from typing import Any

from agent.bench.peers.lines import HOST, _emit

ES_VERSION = "8.15.0"
_ES_BANNER = {
    "name": "bench-es", "cluster_name": "bench", "cluster_uuid": "YmVuY2gtY2x1c3Rlci11dWlkLTAw",
    "version": {"number": ES_VERSION, "build_flavor": "default", "build_type": "docker",
                "build_hash": "0000000000000000000000000000000000000000",
                "build_date": "2024-08-05T10:05:34.233336849Z", "build_snapshot": False, "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0", "minimum_index_compatibility_version": "7.0.0"},
    "tagline": "You Know, for Search",
}
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            415: b"Unsupported Media Type"}
_ES_HEADERS = b"Content-Type: application/json\r\nX-Elastic-Product: Elasticsearch\r\n"
_DOC_OPS = frozenset(("index", "create", "update"))  # followed by a document line; delete is not
_CREATED = b',"_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":%d,' \
           b'"_primary_term":1,"status":201}}'


class BulkCounter:
    """The state of the ``bulk`` role: what arrived, and the response to each request.

    :meth:`bulk` takes one decoded ``_bulk`` body and returns the response body. It parses every
    action line (orjson) for its op, ``_index`` and ``_id``; a document line is only checked to be a
    JSON object by its first and last bytes (``bad_documents``) and to carry ``@timestamp``
    (``documents_without_timestamp``), except the first document of all, which is parsed whole and kept
    as ``sample`` so the parent can check what the agent sent. An action without ``_id`` gets one made
    up here (``generated_ids``), as Elasticsearch does. ``distinct_ids`` counts (index, ``_id``) pairs
    held, ``indices`` the documents held per index (a ``delete`` of a held id removes it); every item
    succeeds: ``201 created``, or for ``delete`` ``200 deleted`` / ``404 not_found``.
    """

    def __init__(self) -> None:
        import orjson  # the agent's own dependency; not imported by the other roles

        self._loads, self._dumps = orjson.loads, orjson.dumps
        self.requests = self.documents = self.actions = self.bad_documents = self.no_timestamp = 0
        self.generated_ids = self.wire_bytes = self.body_bytes = 0
        self.encodings: dict[str, int] = {}
        self.indices: dict[str, int] = {}
        self.ids: dict[str, set[str]] = {}  # by index, as Elasticsearch keys documents
        self.sample: Any = None
        self._seq_no = 0

    def bulk(self, body: bytes, default_index: str | None) -> tuple[int, bytes]:
        """Count one decoded body; return (HTTP status, response body).

        The whole body is parsed before anything is counted, as Elasticsearch refuses a malformed bulk
        request as a whole (400) without executing any of its items.
        """
        started = time.perf_counter()
        lines = body.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        loads = self._loads
        actions: list[tuple[str, Any, Any, Any, bytes, bytes | None]] = []  # op, meta, index, id, line, document
        append_action = actions.append
        i, n = 0, len(lines)
        while i < n:
            line = lines[i]
            try:
                ((op, meta),) = loads(line).items()
                index, doc_id = meta.get("_index", default_index), meta.get("_id")
            except (ValueError, AttributeError):
                return 400, self._error("x_content_parse_exception", f"line {i + 1}: malformed action", 400)
            if index is None:
                return 400, self._error("action_request_validation_exception", f"line {i + 1}: no index", 400)
            i += 1
            doc = None
            if op in _DOC_OPS:
                if i >= n:
                    return 400, self._error("action_request_validation_exception", "document is missing", 400)
                doc = lines[i]
                i += 1
            elif op != "delete":
                return 400, self._error("illegal_argument_exception", f"line {i}: unknown action [{op}]", 400)
            append_action((op, meta, index, doc_id, line, doc))
        items = self._apply(actions)
        took = int((time.perf_counter() - started) * 1000)
        return 200, b'{"took":%d,"errors":false,"items":[%s]}' % (took, b",".join(items))

    def _apply(self, actions: list[tuple[str, Any, Any, Any, bytes, bytes | None]]) -> list[bytes]:
        """Count the actions of a well-formed body; the response item of each."""
        dumps, ids, indices = self._dumps, self.ids, self.indices  # indices: documents held per index
        items: list[bytes] = []
        append = items.append
        seq_no = self._seq_no
        index_ids: set[Any] = set()
        last_index = None
        for op, meta, index, doc_id, line, doc in actions:
            if index != last_index:
                index_ids = ids.setdefault(index, set())
                last_index = index
            if doc is not None:
                if doc[:1] != b"{" or doc[-1:] != b"}":
                    self.bad_documents += 1
                elif b'"@timestamp"' not in doc:
                    self.no_timestamp += 1
                if self.sample is None:
                    self.sample = self._loads(doc)
                self.documents += 1
                indices[index] = indices.get(index, 0) + 1
                if doc_id is not None and len(meta) == 2 and "_index" in meta and line[-2:] == b"}}":
                    # {"op":{"_index":..,"_id":..}}: the item is that line with the outcome added
                    index_ids.add(doc_id)
                    append(line[:-2] + _CREATED % seq_no)
                    seq_no += 1
                    continue
                if doc_id is None:
                    doc_id = f"gen{self.generated_ids:017d}"
                    self.generated_ids += 1
                index_ids.add(doc_id)
                result, status = "created", 201
            elif doc_id in index_ids:  # delete
                index_ids.discard(doc_id)
                indices[index] -= 1
                result, status = "deleted", 200
            else:
                result, status = "not_found", 404
            append(dumps({op: {"_index": index, "_id": doc_id, "_version": 1, "result": result,
                               "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": seq_no,
                               "_primary_term": 1, "status": status}}))
            seq_no += 1
        self.actions += seq_no - self._seq_no
        self._seq_no = seq_no
        self.requests += 1
        return items

    def _error(self, kind: str, reason: str, status: int) -> bytes:
        cause = {"type": kind, "reason": reason}
        return self._dumps({"error": {"root_cause": [cause], **cause}, "status": status})

    def counts(self) -> dict[str, Any]:
        return {"documents": self.documents, "actions": self.actions, "distinct_ids": sum(map(len, self.ids.values())),
                "generated_ids": self.generated_ids, "requests": self.requests, "bad_documents": self.bad_documents,
                "documents_without_timestamp": self.no_timestamp, "wire_bytes": self.wire_bytes,
                "body_bytes": self.body_bytes, "encodings": self.encodings, "indices": self.indices,
                "sample": self.sample}


class _HttpConnection(asyncio.Protocol):
    """HTTP/1.1 keep-alive requests with a Content-Length or chunked body, answered in order.

    ``handle(method, target, headers, body)`` returns (status, body, extra header lines), or None to hold
    the request unanswered (the connection reads nothing more); ``headers`` go on every answer.
    """

    def __init__(self, handle: Any, headers: bytes = _ES_HEADERS) -> None:
        self._handle = handle
        self._headers = headers
        self._held = False
        self._buf = bytearray()
        self._head: tuple[str, str, dict[str, str]] | None = None
        self._need = 0
        self._chunks: list[bytes] | None = None  # a chunked body being read
        self._transport: Any = None  # an asyncio.Transport (uvloop's are not subclasses of it)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while not self._held:
            if self._head is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                request_line, *fields = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[:end + 4]
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for f in fields:
                    name, _, value = f.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self._head = (method, target, headers)
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    self._chunks, self._need = [], -1
                else:
                    self._chunks, self._need = None, int(headers.get("content-length", "0"))
            if self._chunks is not None:
                body = self._read_chunked()
                if body is None:
                    return
            else:
                if len(buf) < self._need:
                    return
                body = bytes(buf[:self._need])
                del buf[:self._need]
            method, target, headers = self._head
            self._head = None
            answer = self._handle(method, target, headers, body)
            if answer is None:
                self._held = True
                return
            status, payload, extra = answer
            head = (b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n%s\r\n"
                    % (status, _REASONS.get(status, b"Error"), self._headers, len(payload), extra))
            self._transport.write(head + payload if method != "HEAD" else head)

    def _read_chunked(self) -> bytes | None:
        """The whole body once its last chunk is in; None while more bytes are needed."""
        buf, chunks = self._buf, self._chunks
        assert chunks is not None
        while True:
            if self._need < 0:  # a chunk-size line
                end = buf.find(b"\r\n")
                if end < 0:
                    return None
                size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
                del buf[:end + 2]
                if size == 0:
                    self._need = -2
                else:
                    self._need = size
                    continue
            if self._need == -2:  # after the last chunk: optional trailers, then an empty line
                end = buf.find(b"\r\n")
                if end < 0:
                    return None
                del buf[:end + 2]
                if end == 0:
                    self._chunks = None
                    return b"".join(chunks)
                continue
            if len(buf) < self._need + 2:
                return None
            chunks.append(bytes(buf[:self._need]))
            del buf[:self._need + 2]
            self._need = -1


def bulk(documents: int) -> None:
    """The minimal Elasticsearch: see :mod:`agent.bench.peers` and :class:`BulkCounter` (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve_bulk(documents))
    else:
        uvloop.run(_serve_bulk(documents))


async def _serve_bulk(documents: int) -> None:
    counter = BulkCounter()
    banner = json.dumps(_ES_BANNER).encode()
    finished = asyncio.Event()
    reported = False
    cpu0 = time.process_time()

    def report(**flags: bool) -> None:
        _emit({**counter.counts(), "cpu_s": round(time.process_time() - cpu0, 3), **flags})

    def handle(method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, bytes]:
        nonlocal reported
        path = target.split("?", 1)[0].rstrip("/")
        if path in ("", "/") and method in ("GET", "HEAD"):
            return 200, banner, b""
        parts = path.strip("/").split("/")
        if path == "/ingest" and method == "POST":  # the generic `http` sink: newline-delimited lines
            counter.encodings["ingest"] = counter.encodings.get("ingest", 0) + 1
            counter.wire_bytes += len(body)
            counter.body_bytes += len(body)
            counter.documents += body.count(b"\n")
            if not reported and counter.documents >= documents:
                reported = True
                report(done=True)
            return 200, b"{}", b""
        if parts[-1] != "_bulk" or len(parts) > 2:
            return 404, counter._error("no_handler_found_exception", f"no handler for {method} {target}", 404), b""
        if method not in ("POST", "PUT"):
            return 405, counter._error("method_not_allowed", f"{method} {target}", 405), b"Allow: POST,PUT\r\n"
        encoding = headers.get("content-encoding", "identity").lower()
        counter.encodings[encoding] = counter.encodings.get(encoding, 0) + 1
        counter.wire_bytes += len(body)
        if encoding == "gzip":
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        elif encoding == "zstd":
            import zstandard

            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        elif encoding != "identity":
            return 415, counter._error("illegal_argument_exception", f"encoding {encoding}", 415), b""
        counter.body_bytes += len(body)
        status, payload = counter.bulk(body, parts[0] if len(parts) == 2 else None)
        if not reported and counter.documents >= documents:
            reported = True
            report(done=True)
        return status, payload, b""

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _HttpConnection(handle), HOST, 0)
    _emit({"port": server.sockets[0].getsockname()[1]})
    stdin = sys.stdin.fileno()

    def stdin_readable() -> None:
        if not os.read(stdin, 4096):
            loop.remove_reader(stdin)
            finished.set()

    loop.add_reader(stdin, stdin_readable)
    async with server:
        await finished.wait()
    report(final=True)

