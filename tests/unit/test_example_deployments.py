"""The example deployments of ../shared/examples as agent pipelines (pipelines/examples/*.yaml), run on sample input.

Each pipeline runs in-process as written, with only its edges swapped for the test: a tail's globs point into a
copy of tests/data/examples/<name>/ (which mirrors the absolute paths the pipeline reads) and read from the
beginning; a socket source listens on a free port of 127.0.0.1; every sink becomes a `file` sink keeping its
inputs, whose path is the Elasticsearch index template when the sink had one (the `file` sink names files by
the event's time, as Elasticsearch picks indices). The records each output received are compared field by field
with tests/data/examples/<name>.expected.json, written by hand from what the original deployment would produce.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from helpers import wait_for

from agent.config.pipeline import load_texts
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = sorted((ROOT / "pipelines" / "examples").glob("*.yaml"))
DATA = ROOT / "tests" / "data" / "examples"
SECRETS = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # variables without a default: a user must set them
NODE_NAME = "vm-insights-01"


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_example_deployment_validates(path: Path) -> None:
    env = {**os.environ, **dict.fromkeys(SECRETS.findall(path.read_text()), "placeholder")}
    result = subprocess.run([sys.executable, "-m", "agent", "validate", "--no-environment", "--deny-warnings",
                             "-c", str(path)], capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr


def for_test(path: Path, root: Path, port: int) -> tuple[str, list[str]]:
    """The pipeline's text with its edges swapped as the module docstring says, and the ids of its sinks."""
    config = yaml.safe_load(path.read_text())
    config.update(data_dir=str(root / "data"), api={"enabled": False}, shutdown_timeout="5s")
    for source in config["sources"].values():
        if source["type"] == "tail":
            source["include"] = [f"{root}/in{glob}" for glob in source["include"]]
            source["exclude"] = [f"{root}/in{glob}" for glob in source.get("exclude", [])]
            source.update(read_from="beginning", glob_interval="50ms", poll_interval="20ms")
            if "multiline" in source:
                source["multiline"]["timeout"] = "200ms"  # the last group of a file waits this long
        elif source["type"] == "socket":
            source["address"] = f"127.0.0.1:{port}"
    for sink_id, sink in list(config["sinks"].items()):
        name = sink.get("index", "events")
        config["sinks"][sink_id] = {"type": "file", "inputs": sink["inputs"], "path": f"{root}/out/{sink_id}/{name}"}
    return yaml.safe_dump(config), list(config["sinks"])


def outputs(root: Path) -> dict[str, list[dict[str, Any]]]:
    """What each output file holds, by its path under out/, with the test's directory taken out of values."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((root / "out").rglob("*")):
        if path.is_file():
            text = path.read_text().replace(f"{root}/in", "")
            found[str(path.relative_to(root / "out"))] = [orjson.loads(line) for line in text.splitlines()]
    return found


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """A record with what differs between hosts and runs checked here and taken out: the inode, and the host."""
    record = dict(record)
    if "inode" in record:
        assert isinstance(record.pop("inode"), int)
    if "host" in record:
        host = record.pop("host")
        assert host["name"] == NODE_NAME and host["hostname"] == socket.gethostname()
        assert host["architecture"] == platform.machine()
    return record


def read_expected(path: Path) -> dict[str, list[Any]]:
    """The expected records by output; an output given as "every record of <prefix>" holds what the outputs
    under that prefix hold (two sinks fed by one stage)."""
    expected = orjson.loads(path.read_bytes())
    for output, records in expected.items():
        if isinstance(records, str):
            prefix = records.removeprefix("every record of ")
            expected[output] = [r for name, rs in expected.items() if name.startswith(prefix) for r in rs]
    return expected


async def run_deployment(name: str, tmp_path: Path, port: int, beats: bytes = b"") -> dict[str, list[Any]]:
    """Runs pipelines/examples/<name>.yaml on its sample input until every expected record is out."""
    expected = read_expected(DATA / f"{name}.expected.json")
    shutil.copytree(DATA / name, tmp_path / "in")
    text, _ = for_test(ROOT / "pipelines" / "examples" / f"{name}.yaml", tmp_path, port)
    topo = Topology(load_texts([(text, f"{name}.yaml")]), StatsRegistry())
    task = asyncio.create_task(topo.run())
    try:
        await asyncio.wait_for(topo.ready.wait(), 10)
        if beats:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(beats)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        total = sum(len(records) for records in expected.values())
        await wait_for(lambda: sum(len(r) for r in outputs(tmp_path).values()) >= total, timeout=15)
        await asyncio.sleep(0.3)  # anything more than expected would show up now
    finally:
        topo.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
    return expected


def assert_outputs(expected: dict[str, list[Any]], root: Path) -> None:
    got = outputs(root)
    assert sorted(got) == sorted(expected)
    for output, records in expected.items():
        key = lambda record: orjson.dumps(record, option=orjson.OPT_SORT_KEYS)  # noqa: E731
        assert sorted((stable(r) for r in got[output]), key=key) == sorted(records, key=key), output


async def test_fluent_bit_daemonset(tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_API_TOKEN", "secret")
    monkeypatch.setenv("DD_API_KEY", "secret")
    expected = await run_deployment("fluent-bit", tmp_path, free_port)
    assert_outputs(expected, tmp_path)


async def test_filebeat_vm_shipper(tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", NODE_NAME)
    expected = await run_deployment("filebeat", tmp_path, free_port)
    assert all("host" in record for record in outputs(tmp_path)["logstash/events"])  # add_host_metadata
    assert_outputs(expected, tmp_path)


async def test_logstash_insights_tier(tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVIRONMENT", raising=False)  # ${ENVIRONMENT:production}: its default
    beats = (DATA / "logstash-insights.beats.ndjson").read_bytes()  # what filebeat.yaml's shippers send
    expected = await run_deployment("logstash-insights", tmp_path, free_port, beats)
    assert_outputs(expected, tmp_path)


async def test_logstash_universal_tier(tmp_path: Path, free_port: int) -> None:
    beats = (DATA / "logstash-universal" / "beats.ndjson").read_bytes()  # what the shippers send
    expected = await run_deployment("logstash-universal", tmp_path, free_port, beats)
    assert_outputs(expected, tmp_path)
