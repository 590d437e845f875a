"""`agent migrate fluent-bit` against the real Fluent Bit 4.2.8: the same config and the same container log files
through both, every record compared field by field.

Fluent Bit runs the config as written (stdout, json_lines); the agent runs its translation (console). The known
differences are normalized here, each by name and nothing else:

- the line's key: Fluent Bit's ``log`` (with Docker's trailing newline) is the agent's ``message`` (without it);
- the tail's own metadata the agent adds: ``file``, ``inode``, ``offset``, ``kubernetes`` (from the file name);
- ``parse_error``: the agent marks a value that did not parse, Fluent Bit passes it unchanged;
- ``_p``: Fluent Bit's CRI partial flag;
- the record's time: Fluent Bit's record timestamp (``date``) is the agent's ``@timestamp`` when a parser read a
  time, else the runtime's ``time`` field (compared to the millisecond).

Skipped when ../shared/tools/fluent-bit is absent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.migrate.fluent_bit import migrate

FLUENT_BIT = Path(os.environ.get("FLUENT_BIT_BIN", Path(__file__).resolve().parents[3] / "shared/tools/fluent-bit"))
pytestmark = pytest.mark.skipif(not FLUENT_BIT.is_file(), reason=f"no Fluent Bit binary at {FLUENT_BIT}")
DEADLINE = 20.0
AGENT_ONLY = ("file", "inode", "offset", "kubernetes")
APP = "app-7d9f_mobius-production_app-" + "a" * 64 + ".log"
WEB = "web-1_mobius-production_web-" + "b" * 64 + ".log"

PARSERS = """\
[PARSER]
    Name         docker
    Format       json
    Time_Key     time
    Time_Format  %Y-%m-%dT%H:%M:%S.%L
    Time_Keep    On

[PARSER]
    Name json_parser
    Format json
    Time_Key timestamp
    Time_Format %Y-%m-%dT%H:%M:%S.%LZ

[PARSER]
    Name mobius_app_parser
    Format regex
    Regex ^(?<timestamp>[^ ]+) (?<level>[^ ]+) \\[(?<service>[^\\]]+)\\] (?<message_text>.*)$
    Time_Key timestamp
    Time_Format %Y-%m-%dT%H:%M:%S.%LZ
    Types pid:integer
"""

HEAD = """\
[SERVICE]
    Flush 1
    Log_Level warn
    Parsers_File parsers.conf
[INPUT]
    Name tail
    Path {logs}/{glob}
    {format}
    Tag kube.*
    Read_from_Head On
"""
TAIL = """\
[OUTPUT]
    Name stdout
    Match kube.*
    Format json_lines
"""

# name, input glob, the tail's format line, filters, how many records Fluent Bit prints
SCENARIOS = [
    ("parser_grep_modify_nest_record_modifier", "*.log", "multiline.parser docker, cri", """\
[FILTER]
    Name parser
    Match kube.*
    Key_Name log
    Parser json_parser
    Reserve_Data On
[FILTER]
    Name grep
    Match kube.*
    Exclude log ^GET /health
    Exclude level ^debug$
[FILTER]
    Name modify
    Match kube.*
    Add cluster_name production
    Rename msg message_text
    Copy level severity
    Set env prod
[FILTER]
    Name nest
    Match kube.*
    Operation lift
    Nested_under user
    Add_prefix user_
[FILTER]
    Name record_modifier
    Match kube.*
    Record hostname node-1
    Remove_key stream
""", 8),
    ("grep_legacy_rules_in_order", "*.log", "multiline.parser docker, cri", """\
[FILTER]
    Name parser
    Match kube.*
    Key_Name log
    Parser json_parser
    Reserve_Data On
[FILTER]
    Name record_modifier
    Match kube.*
    Record stream x
[FILTER]
    Name grep
    Match kube.*
    Exclude log ^GET
    Regex level ^(info|error)$
    Exclude msg boom
""", 2),
    ("regex_parser_with_types_and_nest", APP, "Parser docker", """\
[FILTER]
    Name parser
    Match kube.*
    Key_Name log
    Parser mobius_app_parser
    Reserve_Data On
    Preserve_Key On
[FILTER]
    Name grep
    Match kube.*
    Regex service .
[FILTER]
    Name nest
    Match kube.*
    Operation nest
    Wildcard service
    Wildcard level
    Nest_under app
[FILTER]
    Name modify
    Match kube.*
    Hard_copy message_text original
    Remove stream
""", 2),
]


def _docker(log: str, time_: str, stream: str = "stdout") -> str:
    return json.dumps({"log": log, "stream": stream, "time": time_})


def write_logs(directory: Path) -> None:
    app = [
        _docker(json.dumps({"timestamp": "2024-05-01T12:00:00.123Z", "level": "info", "msg": "hello",
                            "user": {"id": 7, "name": "a"}}) + "\n", "2024-05-01T12:00:00.500000000Z"),
        _docker("GET /health 200\n", "2024-05-01T12:00:01.250000000Z", "stderr"),
        _docker(json.dumps({"timestamp": "2024-05-01T12:00:02.000Z", "level": "debug", "msg": "noisy"}) + "\n",
                "2024-05-01T12:00:02.100000000Z"),
        _docker(json.dumps({"timestamp": "2024-05-01T12:00:03.999Z", "level": "error", "msg": "boom",
                            "cluster_name": "mine"}) + "\n", "2024-05-01T12:00:04.000000000Z"),
        _docker("plain text line\n", "2024-05-01T12:00:05.000000000Z"),
        _docker("2024-05-01T12:00:06.250Z INFO [billing] charged 3 EUR\n", "2024-05-01T12:00:06.300000000Z"),
        _docker("2024-05-01T12:00:07.500Z WARN [billing] card declined\n", "2024-05-01T12:00:07.600000000Z", "stderr"),
    ]
    (directory / APP).write_text("\n".join(app) + "\n")
    web = [
        '2024-05-01T12:00:08.123456789Z stdout F {"level":"warn","msg":"cri json","timestamp":"2024-05-01T12:00:08.100Z"}',
        "2024-05-01T12:00:09.500000000Z stderr F plain cri text",
        "2024-05-01T12:00:10.000000000Z stdout P cri part one ",
        "2024-05-01T12:00:10.100000000Z stdout F cri part two",
        "2024-05-01T12:00:11.000000000Z stdout F GET /health 200",
    ]
    (directory / WEB).write_text("\n".join(web) + "\n")


def _run_until(args: list[str], out: Path, count: int, cwd: Path, stop: int) -> list[dict[str, Any]]:
    """Run ``args`` with stdout in ``out`` until it printed ``count`` JSON lines (and a moment more), then stop it."""
    with open(out, "wb") as stdout, open(cwd / (out.name + ".stderr"), "wb") as stderr:
        proc = subprocess.Popen(args, cwd=cwd, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and len(_records(out)) < count and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(1.5)  # anything past the expected count shows up, and fails the comparison
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    return _records(out)


def _records(path: Path) -> list[dict[str, Any]]:
    lines = path.read_bytes().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.startswith(b"{")]


def _epoch_ms(value: Any) -> int:
    if isinstance(value, int | float):
        return round(value * 1000)
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(value)).replace("Z", "+00:00")
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def fluent_bit_view(record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    record = dict(record)
    stamp = _epoch_ms(record.pop("date"))
    record.pop("_p", None)
    if isinstance(record.get("log"), str):
        record["log"] = record["log"].removesuffix("\n")
    return stamp, record


def agent_view(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    event = {k: v for k, v in event.items() if k not in AGENT_ONLY}
    event.pop("parse_error", None)
    stamp = _epoch_ms(event.pop("@timestamp", None) or event["time"])
    if "message" in event:
        event["log"] = event.pop("message")
    return stamp, event


def _sorted(views: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    return sorted(views, key=lambda view: (view[0], json.dumps(view[1], sort_keys=True)))


@pytest.mark.parametrize(("name", "glob", "fmt", "filters", "count"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_the_translation_turns_the_logs_into_fluent_bits_records(tmp_path: Path, name: str, glob: str, fmt: str,
                                                                  filters: str, count: int) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write_logs(logs)
    (tmp_path / "parsers.conf").write_text(PARSERS)
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(HEAD.format(logs=logs, glob=glob, format=fmt) + filters + TAIL)

    expected = _run_until([str(FLUENT_BIT), "-q", "-c", str(conf)], tmp_path / "fluent-bit.out", count, tmp_path,
                          signal.SIGTERM)
    assert len(expected) == count, expected

    migration = migrate(str(conf))
    pipeline = yaml.safe_load(migration.text)
    pipeline.update(data_dir=str(tmp_path / "data"), api={"enabled": False})
    (tmp_path / "data").mkdir()
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(pipeline))
    got = _run_until([sys.executable, "-m", "agent", "run", "-c", str(tmp_path / "agent.yaml")],
                     tmp_path / "agent.out", count, tmp_path, signal.SIGINT)

    assert _sorted([agent_view(e) for e in got]) == _sorted([fluent_bit_view(r) for r in expected])
