"""SIGKILL the agent while it ships a growing container log to Elasticsearch: no document twice.

The sink's `_id` comes from each line's file and offset, so what a restart
reads again overwrites the same documents instead of adding new ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from fakes.elasticsearch import FakeElasticsearch

LINES = 20_000


async def start_agent(config: Path, cwd: Path) -> asyncio.subprocess.Process:
    with (cwd / "agent.stderr").open("ab") as stderr:
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "agent", "run", "-c", str(config),
                                                    cwd=cwd, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
                                                    start_new_session=True)


async def write_lines(path: Path) -> None:
    with path.open("ab") as f:
        for start in range(0, LINES, 500):
            f.write(b"".join(json.dumps({"log": json.dumps({"seq": i}) + "\n", "stream": "stdout",
                                         "time": "2026-11-22T12:00:00.000000001Z"}).encode() + b"\n"
                             for i in range(start, start + 500)))
            f.flush()
            await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_sigkill_mid_stream_leaves_no_duplicate_documents(tmp_path: Path, free_port: int) -> None:
    log = tmp_path / f"api-1_prod_api-{'cd' * 32}.log"
    log.touch()
    async with FakeElasticsearch() as es:
        es.slow(0.02)  # a busy cluster: requests are in flight when the agent dies
        config = tmp_path / "p.yaml"
        config.write_text(f"""
data_dir: {tmp_path}/data
api: {{address: "127.0.0.1:{free_port}"}}
sources:
  pods: {{type: tail, include: ["{log}"], read_from: beginning, glob_interval: 50ms, poll_interval: 20ms,
          read_bytes: 16KiB}}
transforms:
  app: {{type: parse, inputs: [pods], field: message}}
sinks:
  es: {{type: elasticsearch, inputs: [app], endpoints: ["{es.url}"], index: "logs-%Y.%m.%d",
        batch: {{max_events: 100, timeout: 50ms}}, request: {{concurrency: 4, retry_initial_backoff: 50ms}}}}
""")
        writer = asyncio.create_task(write_lines(log))
        agent = await start_agent(config, tmp_path)
        kills = 0
        try:
            for _ in range(3):
                for _ in range(200):  # bounded: wait for documents to flow since the (re)start
                    before = es.count()
                    await asyncio.sleep(0.05)
                    if es.count() > before:
                        break
                os.killpg(agent.pid, signal.SIGKILL)
                await agent.wait()
                kills += 1
                agent = await start_agent(config, tmp_path)
            await writer
            for _ in range(600):  # bounded: 60 s
                if es.count() >= LINES:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            os.killpg(agent.pid, signal.SIGTERM)
            assert await asyncio.wait_for(agent.wait(), 30) == 0
        finally:
            if agent.returncode is None:
                os.killpg(agent.pid, signal.SIGKILL)
                await agent.wait()
        seqs = sorted(doc["seq"] for doc in es.sources())
        replayed = sum(1 for doc in es.documents() if doc["_version"] > 1)
    assert kills == 3
    assert seqs == list(range(LINES)), "every line exactly once"
    assert es.count() == LINES
    print(f"documents written again after a kill (same _id): {replayed}")
