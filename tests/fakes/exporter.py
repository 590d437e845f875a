"""A fake Prometheus exporter on loopback: each path answers a scripted page (a body and its Content-Type,
gzipped or not, a status), or misbehaves (hangs until released, resets the connection); requests are
recorded with their headers."""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiohttp import web

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass
class Page:
    """What one path answers."""

    body: bytes = b""
    content_type: str = TEXT
    status: int = 200
    gzip: bool = False
    hang: bool = False  # answer only once released (or the exporter stops)
    reset: bool = False  # close the connection without an answer


@dataclass
class FakeExporter:
    """``async with FakeExporter() as exporter``: serves ``exporter.pages[path]`` on 127.0.0.1."""

    pages: dict[str, Page] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, lower-cased headers)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    base: str = ""
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/metrics") -> str:
        return self.base + path

    def serve(self, path: str, body: bytes | str, **page: object) -> None:
        self.pages[path] = Page(body.encode() if isinstance(body, str) else body, **page)  # type: ignore[arg-type]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, {k.lower(): v for k, v in request.headers.items()}))
        page = self.pages.get(request.path)
        if page is None:
            return web.Response(status=404)
        if page.hang:
            await self.release.wait()
        if page.reset:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        body = gzip.compress(page.body) if page.gzip else page.body
        headers = {"Content-Type": page.content_type}
        if page.gzip:
            headers["Content-Encoding"] = "gzip"
        return web.Response(status=page.status, body=body, headers=headers)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release.set()
        assert self._runner is not None
        await self._runner.cleanup()
