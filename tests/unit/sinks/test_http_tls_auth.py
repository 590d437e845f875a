"""TLS and auth of the shared HTTP client, against a loopback HTTPS peer with a throwaway CA."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from helpers import pipeline, wait_for

from agent.core.errors import ConfigErrors
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def https_peer(ca: trustme.CA, port: int, seen: list[dict[str, str]]) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        seen.append(dict(request.headers))
        return web.Response(status=200)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    app = web.Application()
    app.router.add_post("/in", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    return runner


def http_sink(port: int, extra: str) -> str:
    return f"""
sources:
  gen: {{type: generate, format: json, count: 50, batch_size: 50}}
sinks:
  out: {{type: http, inputs: [gen], uri: "https://127.0.0.1:{port}/in", batch: {{max_events: 50}},
         request: {{retry_initial_backoff: 20ms, retry_max_backoff: 50ms}}, {extra}}}
"""


@pytest.fixture
async def peer(ca: trustme.CA, free_port: int) -> AsyncIterator[list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    runner = await https_peer(ca, free_port, seen)
    yield seen
    await runner.cleanup()


async def test_tls_with_the_ca_and_basic_auth(tmp_path: Path, ca: trustme.CA, free_port: int,
                                              peer: list[dict[str, str]]) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    text = http_sink(free_port, f'tls: {{ca_file: "{ca_file}"}}, auth: {{strategy: basic, user: u, password: p}}')
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 20) == 0
    assert len(peer) == 1
    assert peer[0]["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


async def test_an_unknown_ca_is_refused_until_verification_is_turned_off(
        tmp_path: Path, free_port: int, peer: list[dict[str, str]]) -> None:
    topo = Topology(pipeline(http_sink(free_port, "auth: {strategy: bearer, token: t0k}"), tmp_path),
                    StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: topo.nodes["out"].stats.retries >= 2)
    assert peer == []  # the certificate is not trusted: nothing was sent
    topo.request_stop()
    await asyncio.wait_for(run, 20)
    insecure = http_sink(free_port, "tls: {verify_certificate: false}, auth: {strategy: api_key, header: X-Key, key: k}")
    topo = Topology(pipeline(insecure, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 20) == 0
    assert peer[-1]["X-Key"] == "k"


def test_auth_needs_its_credentials(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match=r"sinks\.out\.auth: auth strategy basic needs password"):
        pipeline(http_sink(1, "auth: {strategy: basic, user: u}"), tmp_path)


async def test_a_client_certificate_is_presented_when_the_peer_demands_one(
        tmp_path: Path, ca: trustme.CA, free_port: int) -> None:
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        peer_cert = request.transport.get_extra_info("peercert") if request.transport else None
        seen.append({"subject": str(peer_cert)})
        return web.Response(status=200)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    app = web.Application()
    app.router.add_post("/in", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", free_port, ssl_context=context).start()
    try:
        ca_file, client = tmp_path / "ca.pem", tmp_path / "client.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        ca.issue_cert("agent.example").private_key_and_cert_chain_pem.write_to_path(str(client))
        text = http_sink(free_port, f'tls: {{ca_file: "{ca_file}", cert_file: "{client}"}}')
        topo = Topology(pipeline(text, tmp_path), StatsRegistry())
        assert await asyncio.wait_for(topo.run(), 20) == 0
    finally:
        await runner.cleanup()
    assert len(seen) == 1 and "agent.example" in seen[0]["subject"]
