"""Plumbing shared by the fake peers: an aiohttp server on loopback that records requests,
can be slowed down, fail on cue, go down (port closed) and come back on the same port."""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import zstandard
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RecordedRequest:
    """One request as the fake saw it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_size: int = 0
    decoded_size: int = 0
    content_encoding: str | None = None
    status: int = 0
    lines: list[Any] = field(default_factory=list)  # ES: decoded NDJSON lines (str when not JSON)
    body: Any = None  # Datadog: decoded JSON body
    entries: int = 0  # ES: bulk actions; Datadog: logs or series in the payload
    at: float = field(default_factory=time.time)

    @property
    def compressed(self) -> bool:
        return self.content_encoding not in (None, "", "identity")


RECORD = web.RequestKey("record", RecordedRequest)


@dataclass
class ScriptedFailure:
    """A whole-request failure to answer instead of processing the request."""

    status: int
    retry_after: float | None = None
    drop: bool = False  # close the connection without any response


class ConnectionDropped(Exception):
    """Raised by a handler after it closed the connection on purpose."""


class BodyError(Exception):
    """A request body that could not be read or decoded."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind  # "too_large", "unsupported_encoding" or "corrupt"
        self.detail = detail


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The raw body, or BodyError("too_large") as soon as it exceeds `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyError("too_large", f"{request.content_length} > {limit}")
    buf = bytearray()
    while chunk := await request.content.readany():
        buf += chunk
        if len(buf) > limit:
            raise BodyError("too_large", f"more than {limit}")
    return bytes(buf)


def decode_body(raw: bytes, encoding: str | None, limit: int, accepted: frozenset[str]) -> bytes:
    """Decompress `raw` per Content-Encoding, never producing more than `limit` bytes."""
    enc = (encoding or "identity").strip().lower()
    if enc not in accepted:
        raise BodyError("unsupported_encoding", enc)
    if enc == "identity":
        return raw
    if enc in ("gzip", "x-gzip"):
        return _inflate(raw, 16 + zlib.MAX_WBITS, limit)
    if enc in ("deflate", "x-deflate"):
        try:
            return _inflate(raw, zlib.MAX_WBITS, limit)
        except BodyError as e:
            if e.kind != "corrupt":
                raise
            return _inflate(raw, -zlib.MAX_WBITS, limit)  # raw deflate, as some clients send
    if enc in ("zstd", "zstd1"):
        return _unzstd(raw, limit)
    raise BodyError("unsupported_encoding", enc)


def _inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    out = bytearray()
    data = raw
    try:
        while data:
            d = zlib.decompressobj(wbits)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise BodyError("too_large", f"decompressed size over {limit}")
            if not d.eof:
                raise BodyError("corrupt", "truncated compressed stream")
            data = d.unused_data if wbits > 16 else b""  # gzip may hold several members
    except zlib.error as e:
        raise BodyError("corrupt", str(e)) from None
    return bytes(out)


def _unzstd(raw: bytes, limit: int) -> bytes:
    out = bytearray()
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True)
        while chunk := reader.read(65536):
            out += chunk
            if len(out) > limit:
                raise BodyError("too_large", f"decompressed size over {limit}")
    except zstandard.ZstdError as e:
        raise BodyError("corrupt", str(e)) from None
    return bytes(out)


class FakeHTTPServer:
    """Base of the fakes: serves `routes()` on 127.0.0.1 (a free port unless given).

    `async with Fake() as f:` starts and stops it; `f.url` is its address. `requests` records
    every request; `slow()`, `fail_next_requests()`, `drop_next_requests()`, `go_down()` and
    `come_back()` script trouble.
    """

    #: paths (exact, or a suffix starting with "/") that scripted failures apply to
    ingest_suffixes: tuple[str, ...] = ()

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.latency = latency_ms / 1000
        self.requests: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._failures: deque[ScriptedFailure] = deque()
        self._slow = 0.0
        self._slow_left: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._runner is not None

    async def start(self) -> Self:
        """Listen on host:port (a free port the first time if port is 0)."""
        app = web.Application(client_max_size=2**40, middlewares=[self._record_middleware])
        self.routes(app)
        app.on_response_prepare.append(self._on_prepare)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.05, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        return self

    async def stop(self) -> None:
        """Close the listening socket and every open connection (in-flight requests are cut)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def go_down(self) -> None:
        """Become unreachable: connections are refused until `come_back()`."""
        await self.stop()

    async def come_back(self) -> None:
        """Listen again on the same port, with the same data and configuration."""
        if self._runner is None:
            await self.start()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- scripted trouble ------------------------------------------------------------------------

    def fail_next_requests(self, n: int, status: int = 503, retry_after: float | None = None) -> None:
        """Answer the next `n` ingest requests with `status` (vendor-shaped body), storing nothing."""
        self._failures.extend(ScriptedFailure(status, retry_after) for _ in range(n))

    def drop_next_requests(self, n: int = 1) -> None:
        """Read the next `n` ingest requests, then close the connection without answering."""
        self._failures.extend(ScriptedFailure(0, drop=True) for _ in range(n))

    def slow(self, seconds: float, requests: int | None = None) -> None:
        """Delay every response by `seconds` (only the next `requests` ones if given); 0 undoes it.

        The request is processed first and the answer held back, as a busy server would: a client
        that times out may still have had its data stored."""
        self._slow = seconds
        self._slow_left = requests

    def clear_failures(self) -> None:
        self._failures.clear()
        self._slow, self._slow_left = 0.0, None

    def take_failure(self, request: web.Request) -> ScriptedFailure | None:
        """The scripted failure for this ingest request, if any (drops are carried out here)."""
        if not (self._failures and self._is_ingest(request.path)):
            return None
        failure = self._failures.popleft()
        if failure.drop:
            request[RECORD].status = 0
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionDropped
        return failure

    def _is_ingest(self, path: str) -> bool:
        return any(path == s or path.endswith(s) for s in self.ingest_suffixes)

    def _delay(self) -> float:
        delay = self.latency
        if self._slow and (self._slow_left is None or self._slow_left > 0):
            delay += self._slow
            if self._slow_left is not None:
                self._slow_left -= 1
        return delay

    # -- hooks for subclasses ------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def response_headers(self) -> dict[str, str]:
        return {}

    def not_found(self, request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
        return exc

    # -- middleware ----------------------------------------------------------------------------

    @web.middleware
    async def _record_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            content_encoding=request.headers.get("Content-Encoding"),
        )
        self.requests.append(rec)
        request[RECORD] = rec
        try:
            response = await handler(request)
        except ConnectionDropped:
            return web.Response(status=499)  # the connection is gone: nothing reaches the client
        except web.HTTPException as exc:
            response = self.not_found(request, exc) if exc.status in (404, 405) else exc
        rec.status = response.status
        if delay := self._delay():
            await asyncio.sleep(delay)
        return response

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        for k, v in self.response_headers().items():
            response.headers.setdefault(k, v)


def serve_main(build: Callable[[argparse.Namespace], FakeHTTPServer], parser: argparse.ArgumentParser) -> None:
    """Run a fake as a process: print `ready <port>` once listening, stop on SIGTERM or SIGINT."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    fake = build(args)

    async def run() -> None:
        await fake.start()
        print(f"ready {fake.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await fake.stop()

    asyncio.run(run())
