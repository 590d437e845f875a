"""A fake Prometheus remote-write 1.0 receiver, and a WriteRequest decoder written from the .proto.

In-process: `async with FakeRemoteWrite() as rw:` then POST to `rw.write_url`.
As a process: `python tests/fakes/remote_write.py --port N` prints `ready <port>`.

It checks what a real receiver checks and more: the protocol headers, snappy's *block* format (a framed
stream is refused with 400 "snappy: corrupt input", as Prometheus answers), a body that decodes, and it
records every spec violation (labels unsorted, repeated or empty, samples of a series out of time order,
within a request or across requests) in `violations`, whatever it answers. Accepted writes are kept as
`writes` (a list of decoded requests) and answered 204. Script trouble with `fail_next_requests(status,
retry_after=..., message=...)` (the message is the answer's body), `slow()` (a hang), `go_down()`.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections import deque
from pathlib import Path
from typing import Any

import cramjam
from aiohttp import web

if __package__ in (None, ""):  # run as a script: make `fakes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fakes.base import RECORD, BodyError, FakeHTTPServer, read_limited, serve_main

from agent.bench.peers.remote_write import DecodeError, read_varint  # the varint reader; the rest is this fake's own

WRITE_PATH = "/api/v1/write"
REQUIRED_HEADERS = {
    "content-encoding": "snappy",
    "content-type": "application/x-protobuf",
    "x-prometheus-remote-write-version": "0.1.0",
}

Labels = list[tuple[str, str]]
Samples = list[tuple[float, int]]
Series = tuple[Labels, Samples]


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of every field of one message; bytes for length-delimited ones."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 1:
            if pos + 8 > len(data):
                raise DecodeError("truncated fixed64")
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = read_varint(data, pos)
            if pos + size > len(data):
                raise DecodeError("truncated length-delimited field")
            value, pos = data[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise DecodeError(f"wire type {wire}")
        out.append((number, wire, value))
    return out


def _int64(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def decode_write_request(body: bytes) -> list[Series]:
    """The (labels, samples) of every TimeSeries of an uncompressed WriteRequest, in the order sent.

    Values are floats unpacked from their eight bytes, so a NaN keeps its payload: compare stale
    markers with `struct.pack("<d", v)`.
    """
    series: list[Series] = []
    for number, wire, timeseries in _fields(body):
        if (number, wire) != (1, 2):
            raise DecodeError(f"WriteRequest field {number} (wire type {wire})")
        labels: Labels = []
        samples: Samples = []
        for field_number, field_wire, payload in _fields(timeseries):
            if (field_number, field_wire) == (1, 2):
                parts = {n: v for n, w, v in _fields(payload) if w == 2}
                labels.append((parts.get(1, b"").decode(), parts.get(2, b"").decode()))
            elif (field_number, field_wire) == (2, 2):
                value, timestamp = float("nan"), 0
                for n, w, v in _fields(payload):
                    if (n, w) == (1, 1):
                        value = struct.unpack("<d", v)[0]
                    elif (n, w) == (2, 0):
                        timestamp = _int64(v)
                samples.append((value, timestamp))
            else:
                raise DecodeError(f"TimeSeries field {field_number} (wire type {field_wire})")
        series.append((labels, samples))
    return series


def spec_violations(series: list[Series]) -> list[str]:
    """What remote-write 1.0 forbids in one request (sorted, unique, non-empty labels; samples in time order)."""
    problems = []
    for labels, samples in series:
        names = [name for name, _ in labels]
        if names != sorted(names):
            problems.append(f"labels not sorted: {names}")
        if len(set(names)) != len(names):
            problems.append(f"a label repeated: {names}")
        if any(not name or not value for name, value in labels):
            problems.append(f"an empty label name or value: {labels}")
        if "__name__" not in names:
            problems.append(f"no __name__: {labels}")
        stamps = [t for _, t in samples]
        if stamps != sorted(stamps):
            problems.append(f"samples out of time order: {labels}")
    return problems


class FakeRemoteWrite(FakeHTTPServer):
    """A remote-write 1.0 receiver on 127.0.0.1 (see the module docstring)."""

    ingest_suffixes = (WRITE_PATH,)
    MAX_BODY = 64 * 1024 * 1024

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0.0) -> None:
        super().__init__(host=host, port=port, latency_ms=latency_ms)
        self.writes: list[list[Series]] = []
        self.violations: list[str] = []
        self._messages: deque[str] = deque()
        self._newest: dict[tuple[tuple[str, str], ...], int] = {}  # series -> its newest timestamp accepted

    @property
    def write_url(self) -> str:
        return self.url + WRITE_PATH

    def fail_next_requests(self, n: int, status: int = 503, retry_after: float | None = None,
                           message: str = "") -> None:
        """Answer the next `n` writes with `status` and `message` as the body, storing nothing."""
        super().fail_next_requests(n, status, retry_after)
        self._messages.extend([message or f"fake failure {status}"] * n)

    @property
    def series(self) -> list[Series]:
        """Every accepted series, in the order received."""
        return [s for write in self.writes for s in write]

    def samples_of(self, name: str) -> list[tuple[dict[str, str], float, int]]:
        """(labels, value, timestamp) of every accepted sample of metric `name`, in the order received."""
        return [(dict(labels), value, t) for labels, samples in self.series if ("__name__", name) in labels
                for value, t in samples]

    def routes(self, app: web.Application) -> None:
        app.router.add_post(WRITE_PATH, self._write)

    async def _write(self, request: web.Request) -> web.StreamResponse:
        record = request[RECORD]
        failure = self.take_failure(request)
        if failure is not None:
            message = self._messages.popleft() if self._messages else "fake failure"
            headers = {} if failure.retry_after is None else {"Retry-After": f"{failure.retry_after:g}"}
            return web.Response(status=failure.status, text=message, headers=headers)
        for name, value in REQUIRED_HEADERS.items():
            if record.headers.get(name) != value:
                self.violations.append(f"header {name}: {record.headers.get(name)!r}")
        if not record.headers.get("user-agent"):
            self.violations.append("no User-Agent")
        try:
            raw = await read_limited(request, self.MAX_BODY)
        except BodyError as exc:
            return web.Response(status=413, text=str(exc))
        record.raw_size = len(raw)
        try:
            body = bytes(cramjam.snappy.decompress_raw(raw))
        except Exception:
            return web.Response(status=400, text="snappy: corrupt input")
        record.decoded_size = len(body)
        try:
            series = decode_write_request(body)
        except (DecodeError, UnicodeDecodeError) as exc:
            return web.Response(status=400, text=f"cannot decode: {exc}")
        self.violations.extend(spec_violations(series))
        self._check_order(series)
        record.body = series
        record.entries = sum(len(samples) for _, samples in series)
        self.writes.append(series)
        return web.Response(status=204)

    def _check_order(self, series: list[Series]) -> None:
        """A sample older than one already accepted for its series: 'out of order sample' in Prometheus."""
        for labels, samples in series:
            key = tuple(labels)
            for _, t in samples:
                newest = self._newest.get(key)
                if newest is not None and t < newest:
                    self.violations.append(f"out of order sample: {dict(labels)} at {t} after {newest}")
                self._newest[key] = t if newest is None else max(newest, t)


def main() -> None:
    serve_main(lambda args: FakeRemoteWrite(host=args.host, port=args.port, latency_ms=args.latency_ms),
               argparse.ArgumentParser(description=__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
