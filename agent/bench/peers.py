"""The processes around the agent in the TCP scenarios: a load generator and a counting receiver.

Both run as ``python -m agent.bench.peers send|receive ...`` in their own
process, so their CPU is not charged to the agent (``RUSAGE_SELF``), and
talk to the parent over stdin/stdout, one JSON object per line:

* ``receive --lines N``: listens on 127.0.0.1 (a free port), prints
  ``{"port": P}``, counts the bytes and newlines of every connection, prints
  ``{"lines": .., "bytes": .., "done": true}`` once N lines have arrived and a
  final report (``"final": true``) when its stdin closes, then exits.
  With ``--check-order`` it also checks that the lines of each connection
  carry consecutive line numbers (see :func:`numbered_lines`) from 0, and
  reports ``"out_of_order"``: the lines whose number is not the previous + 1
  (a second connection, after a reconnection, starts mid-sequence and counts
  too), and ``"partial_line_bytes"`` left after the last complete line.
* ``send --port P --lines N --connections C``: connects C times (retrying
  until the agent listens), prints ``{"ready": true}``, waits for a line on
  stdin, then sends N newline-terminated lines of ``LINE_BYTES`` bytes split
  across the connections, each from its own thread by ``sendall`` of a
  pre-built buffer of a few MiB. Prints ``{"sent_lines": .., "sent_bytes": ..}``.
* ``write --path F --lines N``: prints ``{"ready": true}``, waits for a line
  on stdin, then appends N numbered lines of ``LINE_BYTES`` bytes
  (:func:`numbered_lines`) to F, 4,096 lines (1 MiB) per ``write``, as fast as
  it can. Prints ``{"written_lines": .., "written_bytes": .., "wall_s": ..}``.
* ``bulk --documents N``: a minimal Elasticsearch for the ``elasticsearch``
  sink (raw asyncio HTTP/1.1 with keep-alive, see :func:`bulk`): listens on
  127.0.0.1, prints ``{"port": P}``, answers ``GET /`` with an ES 8 banner
  and ``X-Elastic-Product: Elasticsearch``, takes ``POST /_bulk`` (plain,
  gzip or zstd bodies), counts the action/document pairs, the distinct
  ``_id`` values and the documents per index, and answers each request with a
  correct bulk response: one ``201 created`` item per action, in order.
  Prints ``{"documents": .., "distinct_ids": .., "done": true, ...}`` once N
  documents have arrived and a final report (``"final": true``) when its
  stdin closes; both carry its own CPU seconds since it started listening.

This module imports only the standard library so the peers start fast (the
``bulk`` role also uses orjson, imported when it starts); the parent-side
handles (:class:`Receiver`, :class:`LoadGenerator`, :class:`FileWriter`,
:class:`BulkReceiver`) make sure a child is always terminated and reaped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import selectors
import socket
import sys
import threading
import time
import zlib
from typing import Any

HOST = "127.0.0.1"
LINE_BYTES = 256  # including the newline, as in vector-test-harness
BUFFER_LINES = 16_384  # 4 MiB of lines per sendall
_WORDS = (b"GET", b"POST", b"/api/v1/orders", b"/healthz", b"status=200", b"status=404", b"user=42",
          b"region=eu-west-1", b"latency_ms=17", b"trace=9f86d081884c7d65", b"cache=miss", b"bytes=5120")


def build_lines(count: int, line_bytes: int = LINE_BYTES) -> bytes:
    """``count`` distinct printable lines of exactly ``line_bytes`` bytes each (newline included)."""
    out = bytearray()
    for i in range(count):
        line = bytearray(b"<134>1 2024-05-01T12:00:00.%06dZ bench app %d - - " % (i % 1_000_000, i))
        w = i
        while len(line) < line_bytes - 1:
            w = (w * 1103515245 + 12345) & 0x7FFFFFFF
            line += _WORDS[(w >> 16) % len(_WORDS)] + b" "
        out += line[: line_bytes - 1] + b"\n"
    return bytes(out)


NUMBER_DIGITS = 12  # numbered lines start with the line number, zero-padded, then a space


def numbered_lines(start: int, count: int, line_bytes: int = LINE_BYTES) -> bytes:
    """Lines ``start`` .. ``start + count - 1`` of exactly ``line_bytes`` bytes: ``%012d `` + body + newline."""
    bodies = _bodies(line_bytes)
    n = len(bodies)
    return b"".join([b"%012d %s" % (i, bodies[i % n]) for i in range(start, start + count)])


_BODIES: dict[int, list[bytes]] = {}


def _bodies(line_bytes: int) -> list[bytes]:
    """A pool of line bodies (newline included) that fill a numbered line to ``line_bytes``."""
    if line_bytes not in _BODIES:
        size = line_bytes - NUMBER_DIGITS - 1
        _BODIES[line_bytes] = [line[:size - 1] + b"\n" for line in build_lines(1024, line_bytes).split(b"\n")[:-1]]
    return _BODIES[line_bytes]


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _connect(port: int, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection((HOST, port))
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def send(port: int, lines: int, connections: int, line_bytes: int = LINE_BYTES) -> None:
    """Load generator: see the module docstring."""
    buffer = memoryview(build_lines(BUFFER_LINES, line_bytes))
    deadline = time.monotonic() + 10.0
    socks = [_connect(port, deadline) for _ in range(connections)]
    _emit({"ready": True})
    if not sys.stdin.readline():  # the parent gave up before "go"
        return
    errors: list[BaseException] = []

    def pump(sock: socket.socket, n: int) -> None:
        try:
            full, rest = divmod(n, BUFFER_LINES)
            for _ in range(full):
                sock.sendall(buffer)
            if rest:
                sock.sendall(buffer[: rest * line_bytes])
            sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # reported to the parent below
            errors.append(exc)
        finally:
            sock.close()

    share, extra = divmod(lines, connections)
    threads = [threading.Thread(target=pump, args=(sock, share + (1 if k < extra else 0)))
               for k, sock in enumerate(socks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        _emit({"error": repr(errors[0])})
        raise SystemExit(1)
    _emit({"sent_lines": lines, "sent_bytes": lines * line_bytes})


def write(path: str, lines: int, line_bytes: int = LINE_BYTES) -> None:
    """File writer: see the module docstring."""
    _emit({"ready": True})
    if not sys.stdin.readline():
        return
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for start in range(0, lines, 4096):
            os.write(fd, numbered_lines(start, min(4096, lines - start), line_bytes))
    finally:
        os.close(fd)
    _emit({"written_lines": lines, "written_bytes": lines * line_bytes,
           "wall_s": round(time.perf_counter() - started, 4)})


class _OrderCheck:
    """Checks that one connection's lines carry the numbers 0, 1, 2, ... (fixed-size numbered lines)."""

    __slots__ = ("line_bytes", "next", "out_of_order", "pending")

    def __init__(self, line_bytes: int) -> None:
        self.line_bytes = line_bytes
        self.pending = b""
        self.next = 0
        self.out_of_order = 0

    def feed(self, data: bytes) -> None:
        buf = self.pending + data if self.pending else data
        size = self.line_bytes
        full = len(buf) - len(buf) % size
        self.pending = buf[full:]
        try:
            numbers = [int(buf[o:o + NUMBER_DIGITS]) for o in range(0, full, size)]
        except ValueError:  # a line of another length shifted the framing: count the rest as wrong
            self.out_of_order += full // size
            return
        expected = range(self.next, self.next + len(numbers))
        if numbers != list(expected):
            previous = self.next - 1
            for number in numbers:
                self.out_of_order += number != previous + 1
                previous = number
        if numbers:
            self.next = numbers[-1] + 1


def receive(lines: int, check_order: bool = False, line_bytes: int = LINE_BYTES) -> None:
    """Counting receiver: see the module docstring."""
    listener = socket.create_server((HOST, 0))
    listener.setblocking(False)
    _emit({"port": listener.getsockname()[1]})
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    got_lines = got_bytes = connections = 0
    reported = False
    checks: dict[socket.socket, _OrderCheck] = {}

    def counts() -> dict[str, Any]:
        counted = {"lines": got_lines, "bytes": got_bytes, "connections": connections}
        if check_order:
            counted["out_of_order"] = sum(c.out_of_order for c in checks.values())
            counted["partial_line_bytes"] = sum(len(c.pending) for c in checks.values())
        return counted

    while True:
        for key, _ in sel.select():
            if key.data == "accept":
                conn, _ = listener.accept()
                conn.setblocking(False)
                connections += 1
                if check_order:
                    checks[conn] = _OrderCheck(line_bytes)
                sel.register(conn, selectors.EVENT_READ, "conn")
            elif key.data == "stdin":
                if not os.read(sys.stdin.fileno(), 4096):
                    _emit({**counts(), "final": True})
                    return
            else:
                peer = key.fileobj
                assert isinstance(peer, socket.socket)
                try:
                    data = peer.recv(4 << 20)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionError:
                    data = b""
                if not data:
                    sel.unregister(peer)
                    peer.close()
                    continue
                got_bytes += len(data)
                got_lines += data.count(b"\n")
                if check_order:
                    checks[peer].feed(data)
        if not reported and got_lines >= lines:
            reported = True
            _emit({**counts(), "done": True})


# -- a minimal Elasticsearch: the `bulk` role ------------------------------------------------------

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
    """HTTP/1.1 keep-alive requests with a Content-Length or chunked body, answered in order."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle  # (method, target, headers, body) -> (status, body)
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
        while True:
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
            status, payload, extra = self._handle(method, target, headers, body)
            head = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nX-Elastic-Product: Elasticsearch\r\n"
                    b"Content-Length: %d\r\n%s\r\n" % (status, _REASONS.get(status, b"Error"), len(payload), extra))
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
    """The minimal Elasticsearch: see the module docstring and :class:`BulkCounter` (uvloop when installed)."""
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


# -- parent side ---------------------------------------------------------------------------------


class PeerError(Exception):
    """A peer process exited, failed or did not report in time."""


class _Peer:
    """A child process speaking JSON lines; always terminated and reaped by :meth:`close`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def _spawn(cls, *args: str, wait_s: float) -> Any:
        """Start the child and hand its first report to :meth:`_on_first_report`; on failure, reap it."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.bench.peers", *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self = cls(proc)
        try:
            self._on_first_report(await self.read(wait_s=wait_s))
        except BaseException:
            await self.close()
            raise
        return self

    def _on_first_report(self, report: dict[str, Any]) -> None:
        """What the child says once it is up (a port, or that it is ready)."""

    async def read(self, wait_s: float | None) -> dict[str, Any]:
        """The next JSON line from the child; PeerError if it exits first or takes over ``wait_s``."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(wait_s):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            raise PeerError(f"bench peer {self.proc.pid} did not report within {wait_s}s") from None
        if not line:
            code = await self.proc.wait()
            raise PeerError(f"bench peer {self.proc.pid} exited with code {code} without reporting")
        message: dict[str, Any] = json.loads(line)
        return message

    def write(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)

    async def final(self) -> dict[str, Any]:
        """Close its stdin and return the final report of a receiving peer (skipping an earlier "done" report)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        while True:
            report = await self.read(wait_s=10.0)
            if report.get("final"):
                return report

    async def close(self) -> None:
        """Terminate (then kill) the child if it is still running, and reap it."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        if self.proc.returncode is None:
            try:
                async with asyncio.timeout(2.0):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.terminate()
                try:
                    async with asyncio.timeout(2.0):
                        await self.proc.wait()
                except TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()
        if self.proc.stdin is not None:
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.wait_closed()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Listening(_Peer):
    """A peer that listens: its first report is the port."""

    port: int

    def _on_first_report(self, report: dict[str, Any]) -> None:
        self.port = int(report["port"])


class _Triggered(_Peer):
    """A peer that gets ready, then waits for :meth:`go`."""

    def _on_first_report(self, report: dict[str, Any]) -> None:
        if not report.get("ready"):
            raise PeerError(f"bench peer failed: {report}")

    def go(self) -> None:
        """Start (sending or writing)."""
        self.write(b"go\n")


class Receiver(_Listening):
    """Handle on a ``receive`` child: its port, its "all lines arrived" report and its final count."""

    @classmethod
    async def start(cls, lines: int, check_order: bool = False) -> Receiver:
        """Start a receiver expecting ``lines`` lines (numbered ones if ``check_order``); returns once it listens."""
        return await cls._spawn("receive", "--lines", str(lines), *(["--check-order"] if check_order else []),
                                wait_s=10.0)


class LoadGenerator(_Triggered):
    """Handle on a ``send`` child: connected and waiting until :meth:`go`."""

    @classmethod
    async def start(cls, port: int, lines: int, connections: int) -> LoadGenerator:
        """Start a load generator and wait until all its connections are open."""
        return await cls._spawn("send", "--port", str(port), "--lines", str(lines),
                                "--connections", str(connections), wait_s=15.0)


class FileWriter(_Triggered):
    """Handle on a ``write`` child: ready to append numbered lines to a file on :meth:`go`."""

    @classmethod
    async def start(cls, path: str, lines: int) -> FileWriter:
        """Start a file writer and wait until it is ready."""
        return await cls._spawn("write", "--path", path, "--lines", str(lines), wait_s=15.0)


class BulkReceiver(_Listening):
    """Handle on a ``bulk`` child (the minimal Elasticsearch): its port, its "done" report and final count."""

    @classmethod
    async def start(cls, documents: int) -> BulkReceiver:
        """Start it expecting ``documents`` documents; returns once it listens."""
        return await cls._spawn("bulk", "--documents", str(documents), wait_s=10.0)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agent.bench.peers")
    sub = parser.add_subparsers(dest="role", required=True)
    snd = sub.add_parser("send")
    snd.add_argument("--port", type=int, required=True)
    snd.add_argument("--lines", type=int, required=True)
    snd.add_argument("--connections", type=int, default=4)
    snd.add_argument("--line-bytes", type=int, default=LINE_BYTES)
    rcv = sub.add_parser("receive")
    rcv.add_argument("--lines", type=int, required=True)
    rcv.add_argument("--check-order", action="store_true")
    rcv.add_argument("--line-bytes", type=int, default=LINE_BYTES)
    wrt = sub.add_parser("write")
    wrt.add_argument("--path", required=True)
    wrt.add_argument("--lines", type=int, required=True)
    wrt.add_argument("--line-bytes", type=int, default=LINE_BYTES)
    blk = sub.add_parser("bulk")
    blk.add_argument("--documents", type=int, required=True)
    args = parser.parse_args(argv)
    if args.role == "bulk":
        bulk(args.documents)
    elif args.role == "send":
        send(args.port, args.lines, args.connections, args.line_bytes)
    elif args.role == "write":
        write(args.path, args.lines, args.line_bytes)
    else:
        receive(args.lines, args.check_order, args.line_bytes)


if __name__ == "__main__":
    try:
        _main()
    except (KeyboardInterrupt, BrokenPipeError):
        raise SystemExit(1) from None
