"""The elasticsearch sink against osmem-server, an OpenSearch emulator written by others.

Our own fake (tests/fakes/elasticsearch.py) is written from Elastic's docs;
this checks that the sink is not only tuned to it: the happy path and the
mapping-error path against an independent implementation of `_bulk`.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import pipeline

from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology

pytestmark = pytest.mark.integration


def call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


async def run_to_end(text: str, tmp_path: Path) -> Topology:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 60) == 0
    return topo


async def test_documents_land_in_osmem_once_even_when_replayed(tmp_path: Path, osmem_url: str) -> None:
    log = tmp_path / f"web-1_prod_app-{'ab' * 32}.log"
    log.write_text("".join(json.dumps({"log": json.dumps({"n": i, "msg": f"hello {i}"}) + "\n",
                                       "stream": "stdout", "time": "2026-11-22T10:00:00.000000001Z"}) + "\n"
                           for i in range(300)))
    text = f"""
sources:
  files: {{type: tail, include: ["{log}"], read_from: beginning, glob_interval: 50ms, poll_interval: 20ms}}
transforms:
  parsed: {{type: parse, inputs: [files], field: message}}
sinks:
  es: {{type: elasticsearch, inputs: [parsed], endpoints: ["{osmem_url}"], index: "app-{{{{ kubernetes.namespace }}}}-%Y.%m.%d",
        compression: gzip, batch: {{max_events: 100, timeout: 50ms}}}}
"""
    await run_until_sent(text, tmp_path, 300)
    (tmp_path / "data").rename(tmp_path / "forgotten")  # lose the checkpoint: everything is sent again
    await run_until_sent(text, tmp_path, 300)
    call("POST", f"{osmem_url}/app-prod-2026.11.22/_refresh")
    assert call("GET", f"{osmem_url}/app-prod-2026.11.22/_count")["count"] == 300  # same _ids: no duplicates


async def run_until_sent(text: str, tmp_path: Path, events: int) -> None:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    for _ in range(400):  # bounded: 20 s
        if topo.nodes["es"].stats.sent_events >= events:
            break
        await asyncio.sleep(0.05)
    topo.request_stop()
    assert await asyncio.wait_for(run, 30) == 0
    assert topo.nodes["es"].stats.sent_events == events


async def test_mapping_errors_from_osmem_go_to_the_dead_letter(tmp_path: Path, osmem_url: str) -> None:
    call("PUT", f"{osmem_url}/typed", {"mappings": {"properties": {"n": {"type": "long"}}}})
    dead = tmp_path / "dead.ndjson"
    lines = ['{"n": 1}', '{"n": "not a number"}']
    await run_to_end(f"""
sources:
  gen: {{type: generate, format: json, count: 40, batch_size: 40, lines: {json.dumps(lines)}}}
transforms:
  parsed: {{type: parse, inputs: [gen]}}
sinks:
  es: {{type: elasticsearch, inputs: [parsed], endpoints: ["{osmem_url}"], index: typed, id: none,
        batch: {{max_events: 40}}, dead_letter: {{path: "{dead}"}}}}
""", tmp_path)
    call("POST", f"{osmem_url}/typed/_refresh")
    assert call("GET", f"{osmem_url}/typed/_count")["count"] == 20
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(letters) == 20
    assert {entry["reason"] for entry in letters} <= {"mapper_parsing_exception", "document_parsing_exception"}
    assert all(entry["event"]["n"] == "not a number" for entry in letters)
