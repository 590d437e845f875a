"""`agent bench`: every scenario runs end to end on a small count and reports sane figures.

No timing thresholds here: only that all events arrive and the rates are positive.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from agent.bench import run_scenario
from agent.bench import scenarios as bench_scenarios
from agent.bench.peers import LINE_BYTES, build_lines
from agent.bench.scenarios import SCENARIOS, BenchError

EVENTS = 20_000
FIELDS = {"scenario", "events", "bytes", "wall_s", "events_per_s", "mib_per_s", "cpu_s", "cpu_user_s",
          "cpu_sys_s", "cpu_s_per_million_events", "peak_rss_mib"}


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "bench", *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_delivers_every_event(name: str) -> None:
    seen: list[int] = []
    result = run_scenario(name, EVENTS, seen.append)
    assert result.scenario == name
    assert result.events == EVENTS
    assert result.bytes > EVENTS
    assert result.wall_s > 0 and result.events_per_s > 0 and result.mib_per_s > 0
    assert result.cpu_s >= 0 and result.peak_rss_mib > 0
    assert seen and seen[-1] == EVENTS  # progress ends on the sink's final count
    if name.startswith("tcp_"):
        assert result.bytes == EVENTS * LINE_BYTES


def test_cli_json_runs_all_scenarios() -> None:
    proc = _agent("--events", str(EVENTS), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["scenario"] for row in rows] == list(SCENARIOS)
    for row in rows:
        assert set(row) == FIELDS
        assert row["events"] == EVENTS
        assert row["events_per_s"] > 0 and row["mib_per_s"] > 0 and row["wall_s"] > 0


def test_cli_list_and_unknown_scenario() -> None:
    listed = _agent("--list")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list(SCENARIOS)
    unknown = _agent("no_such_scenario")
    assert unknown.returncode == 2
    assert "unknown scenario" in unknown.stderr and unknown.stdout == ""


def test_load_generator_lines_are_exact() -> None:
    data = build_lines(1000)
    lines = data.split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == 1000 and all(len(line) == LINE_BYTES - 1 for line in lines)


async def test_stalled_scenario_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_scenarios, "STALL_TIMEOUT", 0.05)
    agent = asyncio.create_task(asyncio.sleep(10, result=0))
    try:
        with pytest.raises(BenchError, match=r"no progress.*source received 7"):
            await bench_scenarios._wait_until(lambda: False, lambda: 7, agent, lambda: "source received 7")
    finally:
        agent.cancel()
