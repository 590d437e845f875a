"""A hostile HTTP peer for every HTTP sink: the first answers misbehave on cue, then it behaves.

It serves `/_bulk` (Elasticsearch), `/ingest` (the `http` sink), `/api/v2/logs` and `/api/v2/series`
(Datadog) on 127.0.0.1. Each event carries a number ``n`` (a field, or a series tag ``n:<n>``); the peer
records which numbers it *accepted*, so a test can check that nothing the sink acknowledged is missing.
A misbehaving answer accepts nothing, unless it is a 2xx that the sink's protocol treats as acceptance
(any 2xx for `http` and Datadog) or a bulk answer that itself reports some items as stored.

    async with HostilePeer("reset_mid_response", times=2) as peer: ...
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections import Counter
from types import TracebackType
from typing import Any, Self

import orjson
import zstandard
from aiohttp import web

# misbehaviours any HTTP sink can meet, and those only a bulk or Datadog peer answers
GENERIC = ("non_json_200", "wrong_content_type", "truncated_json", "truncated_body", "reset_mid_response",
           "never_ends", "huge_error_body")
ACCEPTING_2XX = ("non_json_200", "wrong_content_type", "truncated_json")  # acceptance for `http` and Datadog
BULK_ONLY = ("items_short", "items_long", "unknown_item_status", "errors_false_with_failed_items")
DATADOG_ONLY = ("rate_limit_reset",)
HUGE = 10 * 1024 * 1024


class HostilePeer:
    """See the module docstring; ``accepted`` counts how often each ``n`` was accepted."""

    def __init__(self, misbehaviour: str, times: int = 2, reset_after: float = 1.0) -> None:
        self.misbehaviour = misbehaviour
        self.bad_left = times
        self.reset_after = reset_after
        self.accepted: Counter[int] = Counter()
        self.answers: list[tuple[str, float]] = []  # (what was answered, loop time) per ingest request
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._hanging: set[asyncio.Event] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=2**30)
        app.router.add_get("/", self._banner)
        app.router.add_get("/api/v1/validate", self._banner)
        for path, kind in (("/_bulk", "bulk"), ("/ingest", "http"), ("/api/v2/logs", "logs"),
                           ("/api/v2/series", "series")):
            app.router.add_route("*", path, self._handler(kind))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.05, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for hanging in self._hanging:
            hanging.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _banner(self, request: web.Request) -> web.Response:
        return web.json_response({"version": {"number": "8.15.0"}, "valid": True})

    def _handler(self, kind: str):  # type: ignore[no-untyped-def]
        async def handle(request: web.Request) -> web.StreamResponse:
            body = _decode(await request.read(), request.headers.get("Content-Encoding"))
            numbers = _numbers(kind, body)
            what = "ok"
            if self.bad_left > 0:
                self.bad_left -= 1
                what = self.misbehaviour
            self.answers.append((what, asyncio.get_running_loop().time()))
            if what == "ok":
                self.accepted.update(numbers)
                return _ok(kind, numbers)
            return await self._misbehave(what, kind, numbers, request)
        return handle

    async def _misbehave(self, what: str, kind: str, numbers: list[int],
                         request: web.Request) -> web.StreamResponse:
        bulk = kind == "bulk"
        if what == "non_json_200":
            self._accept_unless_bulk(kind, numbers)
            return web.Response(status=200, body=b"<html>proxy ok</html>", content_type="text/html")
        if what == "wrong_content_type":
            self._accept_unless_bulk(kind, numbers)
            return _ok(kind, numbers, content_type="text/plain")
        if what == "truncated_json":
            self._accept_unless_bulk(kind, numbers)
            full = _ok(kind, numbers).body
            assert isinstance(full, bytes)
            return web.Response(status=200, body=full[: len(full) // 2], content_type="application/json")
        if what in ("truncated_body", "reset_mid_response", "never_ends"):
            return await self._cut(what, request)
        if what == "huge_error_body":
            return web.Response(status=500, body=b"E" * HUGE, content_type="text/plain")
        if what == "rate_limit_reset":
            return web.json_response({"errors": ["Too many requests"]}, status=429,
                                     headers={"X-RateLimit-Reset": str(self.reset_after)})
        assert bulk, what
        items = [_item(n) for n in numbers]
        if what == "items_short":  # a proxy or a buggy node: the last document is not reported
            items = items[:-1]
        elif what == "items_long":
            items.append(_item(-1))
        elif what == "unknown_item_status":
            items[-1] = {"index": {"_index": "x", "_id": str(numbers[-1]), "status": 600}}
        elif what == "errors_false_with_failed_items":
            items[-1] = {"index": {"_index": "x", "status": 429,
                                   "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}}
        stored = [int(i["index"]["_id"]) for i in items if i["index"].get("status") == 201 and i["index"]["_id"] != "-1"]
        self.accepted.update(stored)
        return web.json_response({"took": 1, "errors": False, "items": items})

    def _accept_unless_bulk(self, kind: str, numbers: list[int]) -> None:
        if kind != "bulk":  # any 2xx is acceptance for `http` and Datadog; a bulk answer must say so per item
            self.accepted.update(numbers)

    async def _cut(self, what: str, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        if what == "truncated_body":
            response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"took":1,"errors":false,"items":[')
        transport = request.transport
        assert transport is not None
        if what == "truncated_body":
            transport.close()  # a clean close, 965 bytes short
        elif what == "reset_mid_response":
            transport.abort()
        else:  # never ends: the client's request timeout must fire
            hanging = asyncio.Event()
            self._hanging.add(hanging)
            await hanging.wait()
        return response


def _decode(raw: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding in ("zstd", "zstd1"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    return raw


def _numbers(kind: str, body: bytes) -> list[int]:
    if kind == "bulk":
        lines = [orjson.loads(line) for line in body.splitlines() if line]
        return [int(doc["n"]) for doc in lines[1::2]]
    if kind == "http":
        return [int(orjson.loads(line)["n"]) for line in body.splitlines() if line]
    if kind == "logs":
        return [int(entry["n"]) for entry in orjson.loads(body)]
    series: list[dict[str, Any]] = orjson.loads(body)["series"]
    return [int(tag[2:]) for s in series for tag in s["tags"] if tag.startswith("n:")]


def _item(n: int) -> dict[str, Any]:
    return {"index": {"_index": "x", "_id": str(n), "status": 201, "result": "created"}}


def _ok(kind: str, numbers: list[int], content_type: str = "application/json") -> web.Response:
    if kind == "bulk":
        body: Any = {"took": 1, "errors": False, "items": [_item(n) for n in numbers]}
    elif kind == "series":
        body = {"errors": []}
    else:
        body = {}
    return web.Response(status=200 if kind != "logs" else 202, body=orjson.dumps(body), content_type=content_type)
