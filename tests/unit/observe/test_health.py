"""/health names a component that crashed and was restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from components import CrashSink
from helpers import pipeline, wait_for

from agent.app import Agent
from agent.observe.server import ApiServer


async def test_health_reports_a_crashed_component_as_degraded(tmp_path: Path, free_port: int) -> None:
    CrashSink.forget("flaky")
    agent = Agent([], pipeline("""
sources:
  gen: {type: generate, rate: 1000, batch_size: 10}
sinks:
  flaky: {type: test_crash, inputs: [gen], crash_on: [3]}
""", tmp_path))
    api = ApiServer(agent)
    await api.start(f"127.0.0.1:{free_port}")
    run = asyncio.create_task(agent.topology.run())
    try:
        async with aiohttp.ClientSession() as http:
            await agent.topology.ready.wait()
            async with http.get(f"http://127.0.0.1:{free_port}/health") as response:
                assert (response.status, (await response.json())["status"]) == (200, "ok")
            await wait_for(lambda: agent.topology.nodes["flaky"].crashes == 1)
            async with http.get(f"http://127.0.0.1:{free_port}/health") as response:
                body = await response.json()
            assert response.status == 200  # liveness: the supervisor restarts it, the pod need not go
            assert body["status"] == "degraded"
            assert [(d["id"], d["crashes"]) for d in body["degraded"]] == [("flaky", 1)]
            assert "boom on batch 3" in body["degraded"][0]["last_error"]
            await wait_for(lambda: len(CrashSink.delivered["flaky"]) > 50)  # restarted and delivering
    finally:
        agent.topology.request_stop()
        await asyncio.wait_for(run, 10)
        await api.stop()
