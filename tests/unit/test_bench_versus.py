"""The side-by-side benchmark against Fluent Bit: its data, its arithmetic, its configs, its refusal without Fluent Bit.

One small real run at the end, only where Fluent Bit is installed (``../shared/tools/fluent-bit`` or
``FLUENT_BIT_BIN``). No timing thresholds: only that the runs deliver everything and report figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from agent.bench.versus import cli, measure, report, sides
from agent.bench.versus.data import write_logs
from agent.bench.versus.measure import Sample, Window, delivered_window, steady_window
from agent.bench.versus.run import RunResult
from agent.config.pipeline import load_texts

REPO = Path(__file__).resolve().parents[2]


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def test_the_data_is_the_same_bytes_every_time_and_docker_lines_with_app_json(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths_a, bytes_a = write_logs(tmp_path / "a", 5_001)
    paths_b, bytes_b = write_logs(tmp_path / "b", 5_001)
    assert bytes_a == bytes_b == sum(p.stat().st_size for p in paths_a)
    assert _digest(paths_a) == _digest(paths_b)
    lines = [line for p in paths_a for line in p.read_bytes().splitlines()]
    assert len(lines) == 5_001
    assert 360 <= bytes_a / len(lines) <= 410  # ~380 B a line, newline included
    seqs = []
    for line in lines:
        wrapper = orjson.loads(line)
        assert set(wrapper) == {"log", "stream", "time"} and wrapper["log"].endswith("\n")
        app = orjson.loads(wrapper["log"])
        assert {"timestamp", "level", "service", "message", "seq"} <= set(app)
        seqs.append(app["seq"])
    assert sorted(seqs) == list(range(5_001))  # every line differs


def _samples(*rows: tuple[float, float, int, int]) -> list[Sample]:
    return [Sample(*row) for row in rows]


def test_the_steady_window_starts_at_five_percent_read_and_ends_when_all_is_delivered() -> None:
    samples = _samples((0.0, 0.0, 0, 0), (0.5, 0.6, 30, 0), (1.0, 0.9, 100, 0), (2.0, 2.0, 600, 0),
                       (3.0, 3.0, 1000, 500), (4.0, 3.6, 1000, 1000), (5.0, 3.7, 1000, 1000))
    window = steady_window(samples, 1000)
    # first sample with >= 50 read is t=1.0 (100 read): 900 events, 2.7 CPU s, 3 s wall, until t=4.0
    assert window == Window(events=900, wall_s=3.0, cpu_s=pytest.approx(2.7))
    assert window.cpu_s_per_million == pytest.approx(3000.0)
    assert window.events_per_s == pytest.approx(300.0)


def test_the_delivered_window_starts_at_five_percent_delivered() -> None:
    samples = _samples((0.0, 0.0, 0, 0), (1.0, 0.9, 100, 0), (2.0, 2.0, 1000, 40), (3.0, 3.0, 1000, 500),
                       (3.5, 3.3, 1000, 750), (4.0, 3.6, 1000, 1000))
    # first sample with >= 50 delivered is t=3.0 (500): 500 events, 0.6 CPU s, 1 s wall
    assert delivered_window(samples, 1000) == Window(events=500, wall_s=1.0, cpu_s=pytest.approx(0.6))
    with pytest.raises(ValueError, match="no window"):
        delivered_window(samples[:2], 1000)
    with pytest.raises(ValueError, match="no window"):  # the count moved in two jumps: no rate to measure
        delivered_window(_samples((0.0, 0.0, 1000, 0), (1.0, 2.0, 1000, 60), (1.5, 2.0, 1000, 60),
                                  (2.0, 2.01, 1000, 1000)), 1000)


def test_a_run_read_in_one_burst_or_never_finished_has_no_steady_window() -> None:
    with pytest.raises(ValueError, match="no steady window"):
        steady_window(_samples((0.0, 0.0, 0, 0), (1.0, 0.5, 1000, 0), (2.0, 0.6, 1000, 1000)), 1000)
    with pytest.raises(ValueError, match="never reach"):
        steady_window(_samples((0.0, 0.0, 0, 0), (1.0, 0.5, 600, 500)), 1000)


def test_cpu_is_utime_stime_and_the_childrens_of_a_stat_line() -> None:
    # fields 14-17 of proc(5) are 100, 20, 3 and 4 ticks; the name holds a space and a parenthesis
    stat = b"4242 (fluent) bit) S 1 4242 4242 0 -1 4194560 900 0 7 0 100 20 3 4 20 0 9 0 100 1000 50"
    assert measure.stat_cpu_seconds(stat) == pytest.approx(127 / os.sysconf("SC_CLK_TCK"))


def test_process_figures_are_read_from_proc() -> None:
    busy = subprocess.run([sys.executable, "-c", "sum(range(3_000_000))"], check=True)  # children's CPU counts too
    assert busy.returncode == 0
    t = os.times()
    assert measure.cpu_seconds(os.getpid()) == pytest.approx(
        t.user + t.system + t.children_user + t.children_system, abs=0.05)
    assert measure.peak_rss_mib(os.getpid()) > 10
    before = measure.bytes_read(os.getpid())
    (REPO / "pyproject.toml").read_bytes()
    assert measure.bytes_read(os.getpid()) - before >= (REPO / "pyproject.toml").stat().st_size


@pytest.mark.parametrize("name", list(sides.SCENARIOS))
def test_each_agent_pipeline_is_yaml_the_config_loader_accepts(name: str, tmp_path: Path) -> None:
    scenario = sides.SCENARIOS[name]
    text = scenario.agent_config(tmp_path / "logs", tmp_path / "data", 2999, 3001)
    doc = yaml.safe_load(text)
    assert doc["sources"]["in"] == {"type": "tail", "include": [str(tmp_path / "logs" / "*.log")],
                                    "format": "docker", "read_from": "beginning"}
    pipeline = load_texts([(text, f"{name}.yaml")])
    assert pipeline.root.api.address == "127.0.0.1:2999"
    expected = {"tail_null": "blackhole", "tail_parse_http": "http", "tail_parse_es": "elasticsearch",
                "tail_parse_modify_http": "http"}[name]
    assert pipeline.components["out"].type == expected
    if scenario.receiver:
        assert pipeline.components["parse"].type == "parse"
        assert "127.0.0.1:3001" in text


def test_without_fluent_bit_it_says_where_it_looked_and_exits_69(tmp_path: Path) -> None:
    with pytest.raises(sides.FluentBitMissing) as missing:
        sides.find_fluent_bit({}, shared=tmp_path)
    assert "FLUENT_BIT_BIN is not set" in str(missing.value)
    assert str(tmp_path / "fluent-bit") in str(missing.value)
    env = {**os.environ, "FLUENT_BIT_BIN": str(tmp_path / "nope")}
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "vs_fluent_bit.py"), "--lines", "1000"],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == cli.EXIT_NO_FLUENT_BIT == 69
    assert f"FLUENT_BIT_BIN={tmp_path / 'nope'} is not an executable file" in out.stderr
    assert out.stdout == ""


def test_fluent_bit_and_its_configs_are_found_from_the_environment(tmp_path: Path) -> None:
    binary = tmp_path / "bin" / "fluent-bit"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    configs = tmp_path / "configs"
    configs.mkdir()
    env = {"FLUENT_BIT_BIN": str(binary), "FLUENT_BIT_CONFIGS": str(configs)}
    with pytest.raises(sides.FluentBitMissing, match="no Fluent Bit configs"):
        sides.find_fluent_bit(env, shared=tmp_path / "none")
    for s in sides.SCENARIOS.values():
        (configs / s.fb_config).write_text("")
    assert sides.find_fluent_bit(env, shared=tmp_path / "none") == (binary, configs)


def _result(side: str, cpu_per_million: float, repeat: int = 0) -> RunResult:
    window = Window(events=950_000, wall_s=10.0, cpu_s=cpu_per_million * 0.95)
    return RunResult(side, "tail_parse_es", repeat, 1_000_000, window, cpu_per_million + 0.5, 11.0, 100.0,
                     delivered=window)


def test_the_summary_gives_medians_and_the_ratio_agent_over_fluent_bit() -> None:
    results = [_result("fluent-bit", 10.0), _result("agent", 15.0), _result("agent", 13.0, 1),
               _result("fluent-bit", 9.0, 1)]
    (row,) = report.summary(results)
    assert row["steady_cpu_s_per_million"] == {"fluent-bit": 9.5, "agent": 14.0, "ratio": 1.47}
    assert row["cpu_ratio_per_repeat"] == [1.5, 1.44]
    text = report.table(results, [row])
    assert "1.47x" in text and " n/a " not in text


def test_the_command_line_is_printed_as_typed() -> None:
    line = report.command_line([str(REPO / "agent" / "bench" / "versus" / "__main__.py"), "--lines", "5"])
    assert line.endswith("-m agent.bench.versus --lines 5")


@pytest.mark.slow
def test_a_small_real_run_against_fluent_bit(tmp_path: Path) -> None:
    try:
        sides.find_fluent_bit()
    except sides.FluentBitMissing as exc:
        pytest.skip(str(exc))
    out = subprocess.run([sys.executable, "-m", "agent.bench.versus", "--lines", "20000", "--scenarios",
                          "tail_parse_es", "--json"], capture_output=True, text=True, timeout=100, check=False,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["nproc"] == os.cpu_count() and doc["kernel"] and doc["cpu_model"] and doc["date"]
    assert "--lines 20000" in doc["command"] and doc["fluent_bit"].startswith("Fluent Bit v")
    assert doc["failures"] == []
    assert sorted(r["side"] for r in doc["runs"]) == ["agent", "fluent-bit"]
    for run in doc["runs"]:
        assert run["events"] == 20_000 and run["exit_code"] == 0
        assert run["whole_cpu_s"] > 0 and run["peak_rss_mib"] > 0 and run["receiver_cpu_s"] > 0
    (row,) = doc["summary"]
    assert row["whole_cpu_s"]["ratio"] > 0


# -- the metrics side by side (agent.bench.versus.metrics) --------------------------------------------------------


def test_the_fluent_bit_scrape_config_repeats_input_and_output_per_target(tmp_path: Path) -> None:
    from agent.bench.versus import metrics

    template = Path(__file__).resolve().parents[2].parent / "shared" / "tools" / "fluent-bit-configs" / \
        "scrape-remote-write.conf"
    if not template.is_file():
        template = tmp_path / "scrape-remote-write.conf"  # its shape, as ../shared/tools has it
        template.write_text("# [INPUT] per target\n[SERVICE]\n    HTTP_Server  On\n    HTTP_Port    ${FB_API_PORT}\n\n"
                            "[INPUT]\n    Name prometheus_scrape\n    Port ${EXPORTER_PORT}\n    Tag node.t0\n\n"
                            "[OUTPUT]\n    Name prometheus_remote_write\n    Match node.t0\n    Port ${PROM_PORT}\n"
                            "    Add_Label   instance fake-0\n")
    text = metrics.fluent_bit_config(template, [9101, 9102, 9103], 9090)
    assert text.count("[INPUT]") - text.count("# [INPUT]") == 3 and text.count("\n[OUTPUT]") == 3
    assert "${" not in text and "HTTP_Server  Off" in text
    for index, port in enumerate((9101, 9102, 9103)):
        assert f"node.t{index}" in text and f"fake-{index}" in text and str(port) in text


def test_the_agent_scrape_pipeline_validates_and_flushes_like_fluent_bit(tmp_path: Path) -> None:
    from agent.bench.versus import metrics

    text = metrics.agent_config([9101, 9102], 9090, tmp_path)
    doc = yaml.safe_load(text)
    job = doc["sources"]["node"]["scrape_configs"][0]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9101", "127.0.0.1:9102"]
    assert job["scrape_interval"] == "1s" and doc["sinks"]["prom"]["queue_config"]["batch_send_deadline"] == "1s"
    load_texts([(text, "x.yaml")])
