"""`agent validate` and `agent schema` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AGENT = [sys.executable, "-m", "agent"]


def validate(tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "pipeline.yaml"
    config.write_text(text)
    return subprocess.run([*AGENT, "validate", "-c", str(config), *extra], capture_output=True, text=True,
                          cwd=tmp_path, timeout=30)


def error_lines(tmp_path: Path, text: str) -> list[str]:
    """What validate prints for ``text``, which must be invalid, with each "error: FILE:" cut to "LINE:"."""
    result = validate(tmp_path, text)
    assert result.returncode == 78
    return [line.removeprefix(f"error: {tmp_path}/pipeline.yaml:") for line in result.stderr.splitlines()]


GOOD = """\
data_dir: /tmp/agent-test
sources:
  gen: {type: generate, format: docker}
transforms:
  parsed: {type: parse, inputs: [gen]}
sinks:
  out: {type: blackhole, inputs: [parsed]}
"""


def test_a_valid_config_exits_0(tmp_path: Path) -> None:
    result = validate(tmp_path, GOOD)
    assert result.returncode == 0, result.stderr
    assert "3 components" in result.stdout


def test_a_bad_size_names_file_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace("out: {type: blackhole, inputs: [parsed]}",
                        "out:\n    type: blackhole\n    inputs: [parsed]\n    buffer:\n      max_bytes: lots")
    result = validate(tmp_path, text)
    assert result.returncode == 78
    assert result.stderr.strip() == (
        f'error: {tmp_path}/pipeline.yaml:11: sinks.out.buffer.max_bytes: expected a size like "5MiB", got "lots"')


def test_every_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    text = GOOD.replace("format: docker", "format: docker, speed: 3").replace(
        "type: blackhole", "type: blackhol")
    result = validate(tmp_path, text)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f'error: {tmp_path}/pipeline.yaml:3: sources.gen: unknown key "speed"'
    assert lines[1].startswith(f'error: {tmp_path}/pipeline.yaml:7: sinks.out.type: unknown sink type "blackhol"')


def test_unknown_input_is_named_with_its_line(tmp_path: Path) -> None:
    result = validate(tmp_path, GOOD.replace("inputs: [parsed]", "inputs: [parsd]"))
    assert result.returncode == 78
    assert 'pipeline.yaml:7: sinks.out.inputs[0]: unknown input "parsd"' in result.stderr


def test_a_cycle_is_rejected(tmp_path: Path) -> None:
    text = GOOD.replace("parsed: {type: parse, inputs: [gen]}",
                        "parsed: {type: parse, inputs: [gen, again]}\n  again: {type: parse, inputs: [parsed]}")
    result = validate(tmp_path, text)
    assert result.returncode == 78
    assert "inputs form a cycle: again -> parsed -> again" in result.stderr or \
        "inputs form a cycle: parsed -> again -> parsed" in result.stderr


def test_a_logs_only_sink_fed_metrics_is_rejected(tmp_path: Path) -> None:
    text = GOOD + "  disk: {type: file, inputs: [numbers], path: /tmp/x}\n" + \
        "sources2: null\n".replace("sources2: null\n", "")
    text = text.replace("sources:\n", "sources:\n  numbers: {type: generate, format: metrics}\n")
    result = validate(tmp_path, text)
    assert result.returncode == 78
    assert 'sinks.disk.inputs[0]: sink type "file" accepts logs, but input "numbers" emits metrics' in result.stderr


def test_an_unused_source_is_a_warning_and_fails_with_deny_warnings(tmp_path: Path) -> None:
    text = GOOD.replace("sources:\n", "sources:\n  spare: {type: stdin}\n")
    result = validate(tmp_path, text)
    assert result.returncode == 0
    assert f'{tmp_path}/pipeline.yaml:3: source "spare" has no consumers' in result.stderr
    assert validate(tmp_path, text, "--deny-warnings").returncode == 78


def test_a_missing_environment_variable_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace("data_dir: /tmp/agent-test", "data_dir: ${AGENT_TEST_UNSET_VAR}")
    result = validate(tmp_path, text)
    assert result.returncode == 78
    assert 'pipeline.yaml:1: data_dir: environment variable "AGENT_TEST_UNSET_VAR" is not set' in result.stderr


def test_every_unset_variable_of_a_shipped_pipeline_is_reported_in_one_run() -> None:
    pipeline = Path(__file__).resolve().parents[2] / "pipelines" / "containers-to-elasticsearch-and-datadog.yaml"
    env = {name: value for name, value in os.environ.items() if name not in ("AGENT_API_TOKEN", "DD_API_KEY")}
    result = subprocess.run([*AGENT, "validate", "-c", str(pipeline)], capture_output=True, text=True,
                            env=env, timeout=30)
    assert result.returncode == 78
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [line.partition(".yaml:")[2] for line in errors] == [
        '8: api.auth_token: environment variable "AGENT_API_TOKEN" is not set',
        '38: sinks.datadog.api_key: environment variable "DD_API_KEY" is not set']


def test_peers_are_contacted_only_with_check_peers(tmp_path: Path, free_port: int) -> None:
    text = GOOD.replace("out: {type: blackhole, inputs: [parsed]}",
                        f'out: {{type: socket, inputs: [parsed], address: "127.0.0.1:{free_port}"}}')
    result = validate(tmp_path, text, "--check-peers")
    assert result.returncode == 0
    assert 'sink "out" healthcheck failed' in result.stderr
    assert validate(tmp_path, text).stderr == ""
    assert validate(tmp_path, text, "--no-environment").stderr == ""  # still accepted; the default now


def test_validate_creates_nothing_the_config_names(tmp_path: Path) -> None:
    text = f"""\
data_dir: {tmp_path}/data
sources:
  logs: {{type: tail, include: ["{tmp_path}/logs/*.log"]}}
sinks:
  files: {{type: file, inputs: [logs], path: "{tmp_path}/out/%Y/app.log.gz", compression: gzip}}
  es:
    type: elasticsearch
    inputs: [logs]
    endpoints: [http://127.0.0.1:9]
    dead_letter: {{path: {tmp_path}/dead/rejected.ndjson}}
"""
    result = validate(tmp_path, text, "--deny-warnings")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline.yaml"]


def test_every_error_is_reported_in_one_pass_sorted_with_suggestions(tmp_path: Path) -> None:
    text = """\
sources:
  gen: {type: generate, format: docker, rat: 5}
  gen: {type: generate, format: json}
transforms:
  parsed: {type: parse, inputs: [gen, again]}
  again: {type: parse, inputs: [parsed]}
sinks:
  out: {type: file, inputs: [parsed], path: ""}
  other: {type: blackhol, inputs: [parsd]}
"""
    lines = error_lines(tmp_path, text)
    assert lines == [
        '3: sources.gen: "gen" is defined twice, at lines 2 and 3 (YAML would keep only the last)',
        "5: transforms.parsed.inputs: inputs form a cycle: parsed -> again -> parsed",
        "8: sinks.out: path must not be empty",
        '9: sinks.other.type: unknown sink type "blackhol"; did you mean "blackhole"? (known: '
        + lines[3].partition("(known: ")[2],
        '9: sinks.other.inputs[0]: unknown input "parsd"; did you mean "parsed"?',
    ]


def test_schema_describes_components_and_units(tmp_path: Path) -> None:
    result = subprocess.run([*AGENT, "schema"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    defs = schema["$defs"]
    assert {"GenerateConfig", "FileConfig", "ParseConfig", "SocketSinkConfig"} <= set(defs)
    assert defs["FileConfig"]["properties"]["type"]["enum"] == ["file"]
    assert defs["FileConfig"]["properties"]["path"]["description"]  # every property is described
    assert "integer" in json.dumps(defs["BufferConfig"]["properties"]["max_bytes"])


def test_a_misspelt_key_does_not_hide_an_unknown_input_nor_an_empty_component(tmp_path: Path) -> None:
    text = GOOD.replace("out: {type: blackhole, inputs: [parsed]}",
                        "out:\n    type: console\n    encodng: text\n    inputs: [nosuch]\n  empty:\n")
    assert error_lines(tmp_path, text) == ['9: sinks.out: unknown key "encodng"; did you mean "encoding"?',
                                           '10: sinks.out.inputs[0]: unknown input "nosuch"',
                                           '11: sinks.empty: a component needs at least "type:"']
