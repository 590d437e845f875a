"""The ``remote_write`` role: a remote-write 1.0 receiver that decodes every request and counts its samples.

Also the small WriteRequest reader (:func:`iter_series`) the metrics scenarios check the agent's requests
with. Standard library only, but for cramjam (snappy), imported when the role starts.
"""

from __future__ import annotations

import asyncio
import math
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from agent.bench.peers.elasticsearch import _HttpConnection
from agent.bench.peers.lines import HOST, _emit

WRITE_PATH = "/api/v1/write"
STALE_BITS = 0x7FF0000000000002
_DOUBLE = struct.Struct("<d")
_BITS = struct.Struct("<Q")

Labels = list[tuple[str, str]]
Points = list[tuple[float, int]]


class DecodeError(ValueError):
    """Bytes that are not a WriteRequest."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; DecodeError if it is cut short or too long."""
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _messages(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of every length-delimited field between ``start`` and ``end``; a double
    (wire type 1) gives its 8 bytes, a varint (0) its value as ``start`` and -1 as ``end``."""
    pos, end = start, len(data) if end is None else end
    while pos < end:
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            size, pos = read_varint(data, pos)
            if pos + size > end:
                raise DecodeError("truncated field")
            yield number, pos, pos + size
            pos += size
        elif wire == 1:
            if pos + 8 > end:
                raise DecodeError("truncated double")
            yield number, pos, pos + 8
            pos += 8
        elif wire == 0:
            value, pos = read_varint(data, pos)
            yield number, value, -1
        else:
            raise DecodeError(f"unexpected wire type {wire}")


def iter_series(body: bytes) -> Iterator[tuple[Labels, Points]]:
    """The (labels, samples) of each TimeSeries of an uncompressed WriteRequest (timestamps as int64)."""
    for number, start, end in _messages(body):
        if number != 1:
            continue
        labels: Labels = []
        points: Points = []
        for field, s, e in _messages(body, start, end):
            if field == 1:
                pair = ["", ""]
                for which, ls, le in _messages(body, s, e):
                    pair[which - 1] = body[ls:le].decode()
                labels.append((pair[0], pair[1]))
            elif field == 2:
                value, stamp = math.nan, 0
                for which, ps, _ in _messages(body, s, e):
                    if which == 1:
                        value = _DOUBLE.unpack_from(body, ps)[0]
                    else:
                        stamp = ps - (1 << 64) if ps >= 1 << 63 else ps
                points.append((value, stamp))
        yield labels, points


class WriteCounter:
    """What the ``remote_write`` role counted: requests, series, samples, ``up`` samples (and those not 1),
    stale markers, and requests it refused (bad headers or a body that does not decode)."""

    def __init__(self) -> None:
        self.requests = self.series = self.samples = self.up = self.up_not_one = self.stale = 0
        self.refused = self.wire_bytes = self.body_bytes = 0
        self.errors: list[str] = []

    def write(self, headers: dict[str, str], body: bytes, decompress: Any) -> tuple[int, bytes]:
        self.wire_bytes += len(body)
        if headers.get("content-encoding") != "snappy" or headers.get("content-type") != "application/x-protobuf":
            return self._refuse("missing remote-write headers")
        try:
            raw = bytes(decompress(body))
            counts = [0, 0, 0, 0, 0]  # series, samples, up, up not 1, stale
            for labels, points in iter_series(raw):
                counts[0] += 1
                counts[1] += len(points)
                if ("__name__", "up") in labels:
                    counts[2] += len(points)
                    counts[3] += sum(1 for value, _ in points if value != 1.0)
                counts[4] += sum(1 for value, _ in points if _BITS.unpack(_DOUBLE.pack(value))[0] == STALE_BITS)
        except Exception as exc:  # DecodeError, UnicodeDecodeError, cramjam.DecompressionError (not a ValueError)
            return self._refuse(f"cannot decode: {exc}")
        self.requests += 1
        self.body_bytes += len(raw)
        self.series += counts[0]
        self.samples += counts[1]
        self.up += counts[2]
        self.up_not_one += counts[3]
        self.stale += counts[4]
        return 200, b""

    def _refuse(self, why: str) -> tuple[int, bytes]:
        self.refused += 1
        if len(self.errors) < 5:
            self.errors.append(why)
        return 400, why.encode()

    def counts(self) -> dict[str, Any]:
        return {"requests": self.requests, "series": self.series, "samples": self.samples, "up": self.up,
                "up_not_one": self.up_not_one, "stale": self.stale, "refused": self.refused,
                "wire_bytes": self.wire_bytes, "body_bytes": self.body_bytes, "errors": self.errors}


def remote_write() -> None:
    """The receiver: listens on 127.0.0.1, prints ``{"port": P}``; each line on stdin gets the counts so far,
    end of stdin the final counts (``"final": true``); both carry its CPU seconds. uvloop when installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve())
    else:
        uvloop.run(_serve())


async def _serve() -> None:
    import cramjam

    counter = WriteCounter()
    decompress = cramjam.snappy.decompress_raw
    cpu0 = time.process_time()

    def handle(method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, bytes]:
        if method != "POST" or target.split("?", 1)[0] != WRITE_PATH:
            return 404, b"not found", b""
        status, answer = counter.write(headers, body, decompress)
        return status, answer, b""

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _HttpConnection(handle, b"Content-Type: text/plain\r\n"), HOST, 0)
    _emit({"port": server.sockets[0].getsockname()[1]})

    def report(_command: bytes = b"", **flags: bool) -> None:
        _emit({**counter.counts(), "cpu_s": round(time.process_time() - cpu0, 3), **flags})

    async with server:
        await watch_stdin(report)
    report(final=True)


async def watch_stdin(on_line: Callable[[bytes], None]) -> None:
    """Call ``on_line`` with each line (a command) the parent writes to stdin; return when stdin ends."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    stdin = sys.stdin.fileno()
    pending = b""

    def readable() -> None:
        nonlocal pending
        data = os.read(stdin, 4096)
        if not data:
            loop.remove_reader(stdin)
            finished.set()
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            on_line(line.strip())

    loop.add_reader(stdin, readable)
    await finished.wait()
