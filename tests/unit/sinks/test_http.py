"""The shared HTTP delivery machinery through the `http` sink, against a scripted loopback peer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from helpers import pipeline, wait_for

from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology


class Peer:
    """An HTTP endpoint that records bodies and answers from a script, then 200."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.wire_sizes: list[int] = []
        self.delay = 0.0
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            status, headers = self.script.pop(0)
            return web.Response(status=status, headers=headers, text="scripted failure")
        self.headers.append(dict(request.headers))
        self.wire_sizes.append(request.content_length or 0)
        self.bodies.append(raw)  # aiohttp has already undone Content-Encoding
        return web.Response(status=200)

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def lines(self) -> list[Any]:
        return [orjson.loads(line) for body in self.bodies for line in body.splitlines()]


def http_pipeline(tmp_path: Path, port: int, count: int, sink: str) -> str:
    return f"""
sources:
  gen: {{type: generate, format: json, count: {count}, batch_size: 100}}
sinks:
  out: {{type: http, inputs: [gen], uri: "http://127.0.0.1:{port}/ingest", {sink}}}
"""


async def run_until_done(text: str, tmp_path: Path) -> Topology:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 30) == 0
    return topo


async def test_batches_by_events_and_compresses(tmp_path: Path, free_port: int) -> None:
    peer = Peer()
    await peer.start(free_port)
    try:
        topo = await run_until_done(http_pipeline(tmp_path, free_port, 1000, """
      compression: gzip, batch: {max_events: 300, timeout: 50ms}, request: {headers: {X-Tenant: blue}}"""), tmp_path)
    finally:
        await peer.stop()
    assert [len(body.splitlines()) for body in peer.bodies] == [300, 300, 300, 100]
    assert all(h["Content-Type"] == "application/x-ndjson" and h["X-Tenant"] == "blue" for h in peer.headers)
    assert all(h["Content-Encoding"] == "gzip" for h in peer.headers)
    assert peer.wire_sizes[0] < len(peer.bodies[0]) / 2
    assert len(peer.lines()) == 1000
    assert topo.nodes["gen"].stats.gauges["committed_events"] == 1000


async def test_retries_429_and_5xx_honouring_retry_after(tmp_path: Path, free_port: int) -> None:
    peer = Peer()
    peer.script = [(429, {"Retry-After": "0.3"}), (503, {}), (500, {})]
    await peer.start(free_port)
    try:
        topo = await run_until_done(http_pipeline(tmp_path, free_port, 100, """
      batch: {max_events: 100}, request: {retry_initial_backoff: 10ms, retry_max_backoff: 50ms}"""), tmp_path)
    finally:
        await peer.stop()
    assert len(peer.lines()) == 100
    stats = topo.nodes["out"].stats
    assert stats.retries == 3 and stats.errors[("throttled", "sending")] == 2
    assert topo.nodes["gen"].stats.gauges["committed_events"] == 100


async def test_a_permanent_4xx_goes_to_the_dead_letter_with_the_reason(tmp_path: Path, free_port: int) -> None:
    peer = Peer()
    peer.script = [(400, {})]
    await peer.start(free_port)
    dead = tmp_path / "dead.ndjson"
    try:
        topo = await run_until_done(http_pipeline(tmp_path, free_port, 50, f"""
      batch: {{max_events: 50}}, dead_letter: {{path: "{dead}"}}"""), tmp_path)
    finally:
        await peer.stop()
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(letters) == 50 and peer.bodies == []
    assert letters[0]["reason"] == "rejected" and "HTTP 400" in letters[0]["error"]
    assert "service" in letters[0]["event"]
    assert topo.nodes["out"].stats.discarded["rejected"] == 50
    assert topo.nodes["gen"].stats.gauges["committed_events"] == 50  # rejected for good: the source moves on


async def test_a_peer_that_is_down_then_back_gets_everything(tmp_path: Path, free_port: int) -> None:
    text = f"""
sources:
  gen: {{type: generate, format: json, rate: 2000, batch_size: 50}}
sinks:
  out: {{type: http, inputs: [gen], uri: "http://127.0.0.1:{free_port}/x", batch: {{max_events: 200, timeout: 50ms}},
         request: {{retry_initial_backoff: 20ms, retry_max_backoff: 200ms, timeout: 1s}}}}
"""
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: topo.nodes["out"].stats.retries >= 3)  # refused connections, retried
    peer = Peer()
    await peer.start(free_port)
    try:
        await wait_for(lambda: len(peer.lines()) > 1000, timeout=10)
        topo.request_stop()
        assert await asyncio.wait_for(run, 10) == 0
    finally:
        await peer.stop()
    assert len(peer.lines()) == topo.nodes["gen"].stats.sent_events


async def test_retry_max_duration_gives_up_without_committing(tmp_path: Path, free_port: int) -> None:
    text = f"""
sources:
  gen: {{type: generate, format: json, count: 100, batch_size: 100}}
sinks:
  out: {{type: http, inputs: [gen], uri: "http://127.0.0.1:{free_port}/x", batch: {{max_events: 100}},
         request: {{retry_initial_backoff: 20ms, retry_max_backoff: 50ms, retry_max_duration: 300ms}}}}
"""
    topo = await run_until_done(text, tmp_path)
    assert topo.nodes["out"].stats.discarded["retries_exhausted"] == 100
    assert "committed_events" not in topo.nodes["gen"].stats.gauges


async def test_a_slow_peer_times_out_and_is_retried(tmp_path: Path, free_port: int) -> None:
    peer = Peer()
    peer.delay = 0.5
    await peer.start(free_port)
    try:
        text = http_pipeline(tmp_path, free_port, 100, """
      batch: {max_events: 100}, request: {timeout: 200ms, retry_initial_backoff: 10ms}""")
        topo = Topology(pipeline(text, tmp_path), StatsRegistry())
        run = asyncio.create_task(topo.run())
        await asyncio.sleep(0)
        await wait_for(lambda: topo.nodes["out"].stats.retries >= 2)
        peer.delay = 0
        assert await asyncio.wait_for(run, 10) == 0
    finally:
        await peer.stop()
    assert topo.nodes["out"].stats.errors[("request_failed", "sending")] >= 2
    assert len({e["trace_id"] for e in peer.lines()}) == 100  # may repeat: the slow attempts did arrive


async def test_a_reload_during_an_outage_hands_held_requests_to_the_new_sink(tmp_path: Path, free_port: int) -> None:
    # 500 distinct fixed lines: a pool rendered from the clock would change if the run crossed a second
    lines = ", ".join(f"'{{{{\"trace_id\": \"t{i:03d}\"}}}}'" for i in range(500))
    text = f"""
sources:
  gen: {{{{type: generate, format: json, count: 500, batch_size: 50, lines: [{lines}]}}}}
sinks:
  out: {{{{type: http, inputs: [gen], uri: "http://127.0.0.1:{{port}}/x", batch: {{{{max_events: 100, timeout: 50ms}}}},
         request: {{{{retry_initial_backoff: 50ms, retry_max_backoff: 100ms}}}}}}}}
"""
    topo = Topology(pipeline(text.format(port=1), tmp_path), StatsRegistry())  # port 1: refused
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: topo.nodes["gen"].stats.sent_events == 500 and topo.nodes["out"].stats.retries >= 5)
    peer = Peer()
    await peer.start(free_port)
    try:
        changed = await asyncio.wait_for(topo.reload(pipeline(text.format(port=free_port), tmp_path)), 5)
        assert changed == ["out"]
        assert await asyncio.wait_for(run, 20) == 0
    finally:
        await peer.stop()
    assert sorted(e["trace_id"] for e in peer.lines()) == [f"t{i:03d}" for i in range(500)]
    assert topo.nodes["gen"].stats.gauges["committed_events"] == 500
