"""The HTTP API: probes, /metrics, component stats, taps and reload.

Nothing here echoes config values, so secrets interpolated into a config
never leave the process through the API. /health, /ready and /metrics are
open; /api/v1/* (log contents, stats, reload) want ``api.auth_token`` as a
bearer token when one is set, and answer only on a loopback address when not.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.core.errors import StartupError
from agent.observe.metrics import AgentCollector, build_registry
from agent.observe.tap import Taps
from agent.sources.socket import split_address

if TYPE_CHECKING:
    from agent.app import Agent


class ApiServer:
    """Serves the agent's API on one address."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.config = agent.pipeline.root.api  # as at start-up: api changes take effect after a restart
        gate = agent.topology.memory
        self.registry = build_registry(AgentCollector(agent.stats, self._buffers, agent.reloads,
                                                      None if gate is None else gate.usage))
        self.started = time.time()
        app = web.Application(middlewares=[self._guard])
        app.add_routes([
            web.get("/health", self.health),
            web.get("/ready", self.ready),
            web.get("/metrics", self.metrics),
            web.get("/api/v1/components", self.components),
            web.get("/api/v1/tap/{component_id}", self.tap),
            web.post("/api/v1/reload", self.reload),
        ])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self, address: str) -> None:
        """Listen on ``address``; a port in use or an address not on this host is a StartupError."""
        host, port = split_address(address)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port, reuse_address=True).start()
        except OSError as exc:
            await self._runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"api.address {address} is in use (is Fluent Bit or another agent running?); "
                                   "set api.address to a free port") from None
            raise StartupError(f"api.address {address}: cannot listen: {exc.strerror or exc}; "
                               "set api.address") from None

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Bearer-token check for /api/v1/*; the probes and /metrics are always open."""
        if not request.path.startswith("/api/"):
            return await handler(request)
        api = self.config
        if api.auth_token:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            right_token = hmac.compare_digest(given.lstrip(" ").encode(), api.auth_token.encode())
            if not right_token or scheme.lower() != "bearer":  # the scheme is case-insensitive (RFC 7235)
                return web.json_response({"error": "this API wants the bearer token set in api.auth_token "
                                                   "(agent tap/top: -c CONFIG or --token)"}, status=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        elif not api.is_loopback():
            return web.json_response({"error": f"api.address {api.address} is not loopback: set api.auth_token "
                                               "to use /api/v1/* (/health, /ready and /metrics stay open)"},
                                     status=403)
        return await handler(request)

    async def stop(self) -> None:
        await self._runner.cleanup()

    def _buffers(self) -> dict[str, Any]:
        out = {}
        for node in self.agent.topology.nodes.values():
            if node.inbox is not None:
                out[node.id] = ([node.id, node.kind, node.decl.type], node.inbox.usage())
        return out

    async def health(self, request: web.Request) -> web.Response:
        """Liveness: 200 while the process serves; ``degraded`` names components that crashed lately."""
        body: dict[str, Any] = {"status": "ok", "uptime_s": round(time.time() - self.started, 3)}
        degraded = self.agent.topology.degraded()
        if degraded:
            body["status"] = "degraded"
            body["degraded"] = degraded
        return web.json_response(body)

    async def ready(self, request: web.Request) -> web.Response:
        if self.agent.topology.ready.is_set():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def components(self, request: web.Request) -> web.Response:
        out = []
        for node in self.agent.topology.nodes.values():
            s = node.stats
            item: dict[str, Any] = {
                "id": node.id, "kind": node.kind, "type": node.decl.type,
                "inputs": node.decl.inputs,
                "received_events": s.received_events, "received_bytes": s.received_bytes,
                "sent_events": s.sent_events, "sent_bytes": s.sent_bytes,
                "errors": sum(s.errors.values()), "discarded_events": sum(s.discarded.values()),
                "retries": s.retries, "state": s.gauge_values(),
                "running": node.task is not None and not node.task.done(),
            }
            if node.inbox is not None:
                u = node.inbox.usage()
                item["buffer"] = {"events": u.events, "bytes": u.bytes, "max_events": u.max_events,
                                  "max_bytes": u.max_bytes, "full_waits": u.full_waits,
                                  "blocked_seconds": round(u.blocked_seconds, 3)}
            out.append(item)
        return web.Response(body=orjson.dumps({"components": out}), content_type="application/json")

    def _taps_of(self, component_id: str) -> Taps | None:
        node = self.agent.topology.nodes.get(component_id)
        if node is None:
            return None
        if node.output is not None:
            return node.output.taps
        return node.inbox.taps if node.inbox is not None else None

    async def tap(self, request: web.Request) -> web.StreamResponse:
        """NDJSON stream of sampled events; ``limit`` events or ``seconds`` of streaming, whichever first."""
        component_id = request.match_info["component_id"]
        taps = self._taps_of(component_id)
        if taps is None:
            return web.json_response({"error": f'no component "{component_id}"'}, status=404)
        try:
            limit = int(request.query.get("limit", "100"))
            seconds = float(request.query.get("seconds", "30"))
        except ValueError:
            return web.json_response({"error": "limit and seconds must be numbers"}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        queue = taps.open()
        sent = 0
        try:
            async with asyncio.timeout(seconds):
                while sent < limit:
                    event = await queue.get()
                    await response.write(orjson.dumps(event, default=str) + b"\n")
                    sent += 1
        except TimeoutError:
            pass
        except (ConnectionResetError, asyncio.CancelledError):
            taps.close(queue)
            raise
        finally:
            taps.close(queue)
        await response.write_eof()
        return response

    async def reload(self, request: web.Request) -> web.Response:
        ok, message = await self.agent.reload("api")
        return web.json_response({"reloaded": ok, "message": message}, status=200 if ok else 400)
