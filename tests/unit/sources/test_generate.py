from __future__ import annotations

import random
import re

import orjson

from agent.sources.generate import render_line

CRI = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) F \{.*\}$")


def test_docker_lines_are_json_file_records_with_an_inner_app_log() -> None:
    line = render_line("docker", random.Random(1), 1_700_000_000.0, 7)
    record = orjson.loads(line)
    assert set(record) == {"log", "stream", "time"}
    assert record["log"].endswith("\n")
    assert orjson.loads(record["log"])["service"]
    assert 300 <= len(line) <= 500  # the ~390 B line of the speed budget


def test_cri_json_and_text_shapes() -> None:
    rng = random.Random(2)
    assert CRI.match(render_line("cri", rng, 1_700_000_000.0, 3))
    app = orjson.loads(render_line("json", rng, 1_700_000_000.0, 3))
    assert {"timestamp", "level", "service", "trace_id", "message", "metadata"} <= set(app)
    assert render_line("text", rng, 1_700_000_000.0, 3).startswith(b"2023-11-14T22:13:20.003Z ")
