"""/api/v1/* wants the bearer token, or a loopback address; the probes and /metrics stay open."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from agent.app import Agent
from agent.config.pipeline import load_texts
from agent.observe.server import ApiServer

BODY = "sources:\n  gen: {type: generate, rate: 10}\nsinks:\n  out: {type: blackhole, inputs: [gen]}\n"
TOKEN = "s3cret-token-value"


async def answers(tmp_path: Path, port: int, api: str, headers: dict[str, str] | None = None) -> dict[str, int]:
    """The status of each endpoint, asked with ``headers``, of an agent whose config has ``api``."""
    agent = Agent([], load_texts([(f"data_dir: {tmp_path}/data\napi: {api}\n{BODY}", "p.yaml")]))
    server = ApiServer(agent)
    await server.start(f"127.0.0.1:{port}")  # bound on loopback whatever the config says
    out = {}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            for method, path in (("GET", "/health"), ("GET", "/metrics"), ("GET", "/api/v1/components"),
                                 ("GET", "/api/v1/tap/gen?seconds=0"), ("POST", "/api/v1/reload")):
                async with http.request(method, f"http://127.0.0.1:{port}{path}") as response:
                    out[path.partition("?")[0]] = response.status
                    text = await response.text()
                    assert TOKEN not in text
                    if response.status in (401, 403):
                        assert "api.auth_token" in text
    finally:
        await server.stop()
    return out


OPEN = {"/health": 200, "/metrics": 200}


async def test_a_token_is_required_for_the_api_when_one_is_set(tmp_path: Path, free_port: int) -> None:
    api = f"{{address: '127.0.0.1:{free_port}', auth_token: {TOKEN}}}"
    closed = {"/api/v1/components": 401, "/api/v1/tap/gen": 401, "/api/v1/reload": 401}
    assert await answers(tmp_path, free_port, api) == OPEN | closed
    assert await answers(tmp_path, free_port, api, {"Authorization": "Bearer wrong"}) == OPEN | closed
    granted = await answers(tmp_path, free_port, api, {"Authorization": f"Bearer {TOKEN}"})
    # let through: the topology is not running (no "gen" to tap yet) and there is no file to reload
    assert granted == OPEN | {"/api/v1/components": 200, "/api/v1/tap/gen": 404, "/api/v1/reload": 400}


@pytest.mark.parametrize("address", ["0.0.0.0:2020", "[::]:2020", "10.1.2.3:2020", "agent.internal:2020"])
async def test_without_a_token_the_api_answers_only_on_loopback(tmp_path: Path, free_port: int,
                                                                 address: str) -> None:
    closed = {"/api/v1/components": 403, "/api/v1/tap/gen": 403, "/api/v1/reload": 403}
    assert await answers(tmp_path, free_port, f"{{address: '{address}'}}") == OPEN | closed


async def test_without_a_token_a_loopback_api_is_open(tmp_path: Path, free_port: int) -> None:
    assert (await answers(tmp_path, free_port, f"{{address: '127.0.0.1:{free_port}'}}"))["/api/v1/components"] == 200


async def test_the_token_is_the_one_of_start_up_until_a_restart(tmp_path: Path, free_port: int) -> None:
    """A reload that changes api.auth_token is logged as taking effect after a restart, and so it does."""
    agent = Agent([], load_texts([(f"data_dir: {tmp_path}/data\napi: {{auth_token: {TOKEN}}}\n{BODY}", "p.yaml")]))
    server = ApiServer(agent)
    await server.start(f"127.0.0.1:{free_port}")
    try:
        agent.pipeline = load_texts([(f"data_dir: {tmp_path}/data\napi: {{auth_token: other-token}}\n{BODY}",
                                      "p.yaml")])  # what a reload leaves in place
        async with aiohttp.ClientSession() as http:
            for token, status in ((TOKEN, 200), ("other-token", 401)):
                async with http.get(f"http://127.0.0.1:{free_port}/api/v1/components",
                                    headers={"Authorization": f"Bearer {token}"}) as response:
                    assert response.status == status
    finally:
        await server.stop()


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
async def test_the_scheme_of_the_token_is_case_insensitive(tmp_path: Path, free_port: int, scheme: str) -> None:
    """RFC 7235: the auth-scheme is case-insensitive; the token itself is not."""
    api = f"{{address: '127.0.0.1:{free_port}', auth_token: {TOKEN}}}"
    granted = await answers(tmp_path, free_port, api, {"Authorization": f"{scheme} {TOKEN}"})
    assert granted["/api/v1/components"] == 200
    refused = await answers(tmp_path, free_port, api, {"Authorization": f"{scheme} {TOKEN.upper()}"})
    assert refused["/api/v1/components"] == 401
    assert (await answers(tmp_path, free_port, api, {"Authorization": f"Basic {TOKEN}"}))["/api/v1/components"] == 401
