"""The pure parts of the regex_parsing harness (agent/bench/versus/regex.py) and the modify scenario's config."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from agent.bench.versus import regex, sides
from agent.codecs.parsers.regex import RegexParser
from agent.config.pipeline import load_texts
from agent.core.regex import compile_user_regex


def test_apache_lines_are_the_same_bytes_each_time_and_all_match_the_regex() -> None:
    data = regex.apache_lines(2000)
    assert data == regex.apache_lines(2000) != regex.apache_lines(2000, seed=1)
    lines = data.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2001
    pattern = compile_user_regex(regex.APACHE_REGEX)
    for line in lines[:-1]:
        match = pattern.match(line.decode())
        assert match is not None, line
        assert match["code"].isdigit() and match["method"] in {"GET", "POST", "PUT", "DELETE", "HEAD"}
        assert match["size"] == "-" or match["size"].isdigit()


def test_the_agent_side_parses_with_the_regex_and_the_time_format_and_sends_json(tmp_path: Path) -> None:
    text = regex.agent_config(4001, 4002, 4003, tmp_path / "data")
    doc = yaml.safe_load(text)
    assert doc["sources"]["in"] == {"type": "socket", "address": "127.0.0.1:4001", "mode": "tcp"}
    assert doc["transforms"]["parse"]["pattern"] == regex.APACHE_REGEX
    assert doc["transforms"]["parse"]["time_format"] == regex.TIME_FORMAT
    assert doc["sinks"]["out"] == {"type": "socket", "inputs": ["parse"], "address": "127.0.0.1:4002",
                                   "encoding": "json"}
    assert load_texts([(text, "r.yaml")]).components["parse"].type == "parse"
    untimed = yaml.safe_load(regex.agent_config(4001, 4002, 4003, tmp_path / "data", with_time=False))
    assert "time_key" not in untimed["transforms"]["parse"]


def test_the_regex_parses_a_generated_line_into_its_fields() -> None:
    parser = RegexParser(regex.APACHE_REGEX)
    line = regex.apache_lines(1).rstrip(b"\n")
    fields = parser.parse_bytes(line)
    assert set(fields) == {"host", "user", "time", "method", "path", "code", "size"}
    assert fields["time"].endswith(" +0000")


def test_fluent_bit_side_uses_the_same_regex_and_its_tcp_plugins(tmp_path: Path) -> None:
    parsers = regex.fluent_bit_parsers()
    assert f"Regex       {regex.APACHE_REGEX}\n" in parsers and f"Time_Format {regex.TIME_FORMAT}" in parsers
    assert "Time_Key" not in regex.fluent_bit_parsers(with_time=False)
    config = regex.fluent_bit_config(4001, 4002, 4003, tmp_path / "p.conf")
    assert "Name    tcp\n    Listen  127.0.0.1\n    Port    4001\n    Format  none" in config
    assert "Key_Name  log\n    Parser    apache_common" in config
    assert "Host    127.0.0.1\n    Port    4002\n    Format  json_lines" in config
    assert f"Parsers_File  {tmp_path / 'p.conf'}" in config and "HTTP_Port     4003" in config


def test_the_counter_counts_lines_of_connections_held_open_at_once() -> None:
    # Fluent Bit's tcp output keeps a connection per worker open; one read after the other never ended
    counter = regex.LineCounter(expected=5)
    try:
        with socket.create_connection(("127.0.0.1", counter.port)) as first, \
                socket.create_connection(("127.0.0.1", counter.port)) as second:
            first.sendall(b'{"a":1}\n{"a":2}\n')
            second.sendall(b'{"b":1}\n{"b":2}\n{"b":3}\n')
            assert counter.done.wait(5.0)
        assert counter.lines == 5 and counter.end is not None
        assert counter.first.startswith(b'{"')
    finally:
        counter.close()


def test_the_summary_takes_each_sides_best_run_and_the_ratios() -> None:
    runs = [regex.RegexRun("fluent-bit", 0, 100, 20.0, 1.0, 2.0, 30.0),
            regex.RegexRun("agent", 0, 100, 20.0, 4.0, 4.0, 80.0),
            regex.RegexRun("agent", 1, 100, 20.0, 2.0, 2.5, 80.0)]
    out = regex.summary(runs)
    assert out["agent"]["mib_per_cpu_s"] == 10.0 and out["fluent-bit"]["mib_per_cpu_s"] == 20.0
    assert out["ratio_mib_per_cpu_s"] == 0.5 and out["ratio_mib_per_s"] == 0.8


def test_the_modify_scenario_adds_fluent_bits_two_fields_between_parse_and_the_sink(tmp_path: Path) -> None:
    scenario = sides.SCENARIOS["tail_parse_modify_http"]
    fb = (sides.SHARED_TOOLS / "fluent-bit-configs" / scenario.fb_config)
    if fb.is_file():  # the agent adds what Fluent Bit's modify filter adds
        assert all(f"Add    {k} {v}" in fb.read_text() for k, v in scenario.add)
    doc = yaml.safe_load(scenario.agent_config(tmp_path / "logs", tmp_path / "data", 2999, 3001))
    assert doc["transforms"]["modify"] == {"type": "modify", "inputs": ["parse"],
                                           "add": {"cluster": "bench-cluster", "env": "perf"}}
    assert doc["sinks"]["out"]["inputs"] == ["modify"]
    assert "modify" not in yaml.safe_load(sides.SCENARIOS["tail_parse_http"].agent_config(
        tmp_path / "logs", tmp_path / "data", 2999, 3001))["transforms"]


def test_the_floor_shapes_pass_lines_on_unparsed_or_as_one_field(tmp_path: Path) -> None:
    through = yaml.safe_load(regex.agent_config(4001, 4002, 4003, tmp_path / "data", shape="passthrough"))
    assert "transforms" not in through and through["sinks"]["out"]["inputs"] == ["in"]
    one = yaml.safe_load(regex.agent_config(4001, 4002, 4003, tmp_path / "data", shape="one_group"))
    parse = one["transforms"]["parse"]
    assert RegexParser(parse["pattern"]).parse("a b c") == {"message": "a b c"} and "time_key" not in parse
    runs = [regex.RegexRun("agent passthrough", 0, 100, 20.0, 1.0, 1.0, 30.0),
            regex.RegexRun("agent", 0, 100, 20.0, 4.0, 4.0, 80.0)]
    out = regex.summary(runs)
    assert out["agent passthrough"]["cpu_us_per_line"] == 10_000.0 and "ratio_mib_per_cpu_s" not in out
