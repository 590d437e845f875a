"""The shared Prometheus HTTP client settings: the Authorization header of every auth form, secret files picked
up when they change and never quoted in an error, and tls_config (CA, client certificate, server_name,
insecure_skip_verify) against a loopback HTTPS server with a throwaway CA, on asyncio's loop and uvloop's."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trustme
import uvloop
from aiohttp import web
from helpers import wait_for

from agent.config.registry import BuildContext
from agent.config.units import dec_hook
from agent.core.errors import BuildError
from agent.delivery.http import HttpClient
from agent.observe.stats import ComponentStats
from agent.prometheus.client import Credentials, CredentialsError, ssl_context
from agent.prometheus.config import HttpClientSettings, ScrapeConfig, TLSConfig
from agent.prometheus.discovery import HttpDiscoverer, discoverers_for
from agent.prometheus.scrape import ScrapeClient
from agent.sinks.prometheus_remote_write import PrometheusRemoteWriteConfig, PrometheusRemoteWriteSink

JSON = "application/json"
GROUPS = b'[{"targets": ["a:1"]}]'


def credentials(tmp_path: Path, **settings: Any) -> Credentials:
    return Credentials(msgspec.convert(settings, HttpClientSettings), tmp_path)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(("settings", "expected"), [
    ({}, {}),
    ({"basic_auth": {"username": "u", "password": "p"}}, basic("u", "p")),
    ({"basic_auth": {"username": "u"}}, basic("u", "")),
    ({"basic_auth": {"username": "u", "password_file": "secret"}}, basic("u", "from-file")),
    ({"authorization": {"credentials": "tok"}}, {"Authorization": "Bearer tok"}),
    ({"authorization": {"type": " Token ", "credentials_file": "secret"}}, {"Authorization": "Token from-file"}),
    ({"bearer_token": "tok"}, {"Authorization": "Bearer tok"}),
    ({"bearer_token_file": "secret"}, {"Authorization": "Bearer from-file"}),
])
def test_each_auth_form_gives_its_header(tmp_path: Path, settings: dict[str, Any], expected: dict[str, str]) -> None:
    (tmp_path / "secret").write_text("  from-file \n")
    assert credentials(tmp_path, **settings).header() == expected


def test_a_secret_file_replaced_or_rewritten_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one")
    creds = credentials(tmp_path, bearer_token_file="token")
    assert creds.header() == {"Authorization": "Bearer one"}
    new = tmp_path / "token.new"
    new.write_text("two, longer")
    os.replace(new, path)  # the kubelet's way: a new file
    assert creds.header() == {"Authorization": "Bearer two, longer"}
    # rewritten in place, same length, within one tick of the file system's clock: the stat looks unchanged
    stamp = path.stat().st_mtime_ns
    path.write_text("six, longer")
    os.utime(path, ns=(stamp, stamp))
    assert creds.header() == {"Authorization": "Bearer six, longer"}


def test_a_settled_secret_file_is_read_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old")
    an_hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(an_hour_ago, an_hour_ago))
    creds = credentials(tmp_path, bearer_token_file="token")
    assert creds.header() == {"Authorization": "Bearer old"}
    path.write_text("new")  # same inode and size: only the mtime tells
    os.utime(path, ns=(an_hour_ago, an_hour_ago))
    assert creds.header() == {"Authorization": "Bearer old"}  # the stat is unchanged: not read again
    os.utime(path)
    assert creds.header() == {"Authorization": "Bearer new"}


def test_an_unreadable_secret_file_is_a_clear_error_without_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("hunter2-secret")
    creds = credentials(tmp_path, basic_auth={"username": "u", "password_file": "password"})
    assert creds.header() == basic("u", "hunter2-secret")
    path.unlink()
    with pytest.raises(CredentialsError, match=f"cannot read a credentials file: {path}: No such file") as raised:
        creds.header()
    assert "hunter2" not in str(raised.value)
    assert raised.value.error_type == "credentials_unreadable"
    path.write_bytes(b"hunter2-\xff")
    with pytest.raises(CredentialsError, match="not UTF-8 text") as raised:
        creds.header()
    assert "hunter2" not in str(raised.value)


# -- TLS ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pki(tmp_path: Path, ca: trustme.CA) -> Path:
    """ca.pem, and a client certificate (client.pem, client.key) of that CA, in tmp_path."""
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("agent.client")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    return tmp_path


async def https_server(ca: trustme.CA, name: str, *, client_cert: bool = False) -> tuple[web.AppRunner, str]:
    """An HTTPS server on 127.0.0.1 whose certificate is for ``name`` only; ``client_cert``: one of the CA's
    client certificates is required. Answers :data:`GROUPS` on every path."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    if client_cert:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=GROUPS, content_type=JSON)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, f"https://127.0.0.1:{runner.addresses[0][1]}"


LOOPS: dict[str, Callable[[Awaitable[None]], None]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(("tls", "client_cert", "fails"), [
    ({"ca_file": "ca.pem", "server_name": "metrics.example"}, False, None),
    ({"ca_file": "ca.pem"}, False, "match"),  # the certificate is not for 127.0.0.1
    ({"server_name": "metrics.example"}, False, "verify failed"),  # the system's CAs do not know this one
    ({"insecure_skip_verify": True}, False, None),
    ({"ca_file": "ca.pem", "server_name": "metrics.example", "cert_file": "client.pem", "key_file": "client.key"},
     True, None),
])
def test_tls_config(pki: Path, ca: trustme.CA, loop: str, tls: dict[str, Any], client_cert: bool,
                    fails: str | None) -> None:
    async def main() -> None:
        runner, url = await https_server(ca, "metrics.example", client_cert=client_cert)
        client = HttpClient(ssl_context(msgspec.convert(tls, TLSConfig), pki), None, {}, 5.0)
        try:
            if fails is None:
                assert (await client.request("GET", url + "/x")).status == 200
            else:
                with pytest.raises(Exception, match=fails):
                    await client.request("GET", url + "/x")
        finally:
            await client.close()
            await runner.cleanup()

    LOOPS[loop](main())


def test_a_tls_file_that_cannot_be_loaded_is_a_build_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=f"ca_file {tmp_path / 'absent.pem'}"):
        ssl_context(TLSConfig(ca_file="absent.pem"), tmp_path)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(BuildError, match=f"cert_file {tmp_path / 'junk.pem'}"):
        ssl_context(TLSConfig(cert_file="junk.pem", key_file="junk.pem"), tmp_path)


async def test_http_sd_honours_server_name(pki: Path, ca: trustme.CA) -> None:
    runner, url = await https_server(ca, "sd.example")
    job = msgspec.convert({"job_name": "j", "http_sd_configs": [
        {"url": url + "/sd", "refresh_interval": "50ms", "tls_config": {"ca_file": "ca.pem",
                                                                        "server_name": "sd.example"}}]},
        ScrapeConfig, dec_hook=dec_hook)
    [discoverer] = discoverers_for(job, pki)
    assert isinstance(discoverer, HttpDiscoverer)
    updates: list[list[dict[str, str]]] = []
    task = asyncio.create_task(discoverer.run(lambda name, label_sets: updates.append(label_sets)))
    try:
        await wait_for(lambda: bool(updates) and bool(updates[-1]))
        assert updates[-1][0]["__address__"] == "a:1"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()


async def test_a_scrape_honours_server_name(pki: Path, ca: trustme.CA) -> None:
    runner, url = await https_server(ca, "node.example")
    job = msgspec.convert({"job_name": "j", "tls_config": {"ca_file": "ca.pem", "server_name": "node.example"}}, ScrapeConfig)
    client = ScrapeClient(job, pki)
    try:
        body, _ = await client.fetch(url + "/metrics", 5.0)
        assert body == GROUPS
    finally:
        await client.close()
        await runner.cleanup()


async def test_the_remote_write_sink_honours_server_name(pki: Path, ca: trustme.CA) -> None:
    runner, url = await https_server(ca, "receiver.example")
    config = msgspec.convert({"type": "prometheus_remote_write", "inputs": ["x"], "url": url + "/api/v1/write",
                              "tls_config": {"ca_file": "ca.pem", "server_name": "receiver.example"}},
                             PrometheusRemoteWriteConfig)
    stats = ComponentStats("rw", "sink", "prometheus_remote_write")
    sink = PrometheusRemoteWriteSink(config, BuildContext("rw", pki, pki, stats))
    try:
        assert (await sink.driver.client.request("GET", url + "/")).status == 200
    finally:
        await sink.driver.client.close()
        await runner.cleanup()
