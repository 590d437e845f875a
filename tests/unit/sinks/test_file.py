from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import orjson
import pytest
import zstandard
from helpers import pipeline

from agent.observe.stats import StatsRegistry
from agent.sinks.file import PathTemplate
from agent.topology.running import Topology


async def run_to_end(text: str, tmp_path: Path) -> Topology:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 20) == 0
    return topo


def test_path_template_uses_time_and_fields() -> None:
    template = PathTemplate("/logs/%Y/{{ kubernetes.namespace }}-{{app}}.log")
    path = template.render({"kubernetes": {"namespace": "prod"}, "app": "a/b"}, now=0)
    assert path == "/logs/1970/prod-a_b.log"
    assert template.render({}, now=0) == "/logs/1970/unknown-unknown.log"


async def test_events_are_split_by_field_template(tmp_path: Path) -> None:
    await run_to_end(f"""
sources:
  gen: {{type: generate, format: json, count: 3000}}
transforms:
  parsed: {{type: parse, inputs: [gen]}}
sinks:
  out: {{type: file, inputs: [parsed], path: "{tmp_path}/by-service/{{{{ service }}}}.ndjson"}}
""", tmp_path)
    files = sorted((tmp_path / "by-service").iterdir())
    assert {f.stem for f in files} == {"checkout", "payments", "cart", "search", "auth"}
    total = 0
    for f in files:
        events = [orjson.loads(line) for line in f.read_bytes().splitlines()]
        assert {e["service"] for e in events} == {f.stem}
        total += len(events)
    assert total == 3000


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
async def test_compressed_output_decodes_to_every_event(tmp_path: Path, compression: str) -> None:
    out = tmp_path / f"out.{compression}"
    await run_to_end(f"""
sources:
  gen: {{type: generate, format: docker, count: 5000, batch_size: 700}}
sinks:
  out: {{type: file, inputs: [gen], path: "{out}", compression: {compression}}}
""", tmp_path)
    data = out.read_bytes()
    if compression == "gzip":
        raw = gzip.decompress(data)
    else:
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    lines = raw.splitlines()
    assert len(lines) == 5000
    assert orjson.loads(lines[0])["stream"] in ("stdout", "stderr")


async def test_files_rotate_by_size_and_keep_every_line(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    await run_to_end(f"""
sources:
  gen: {{type: generate, format: text, count: 4000, batch_size: 100}}
sinks:
  out: {{type: file, inputs: [gen], encoding: text, path: "{out}", max_bytes: 64KiB}}
""", tmp_path)
    rotated = sorted(tmp_path.glob("out.log.*"), key=lambda p: int(p.suffix[1:]))
    assert len(rotated) >= 3
    for path in rotated:
        assert 64 * 1024 <= path.stat().st_size < 64 * 1024 + 100 * 200
    lines = sum(len(p.read_bytes().splitlines()) for p in [*rotated, out] if p.exists())
    assert lines == 4000
