from __future__ import annotations

import json
from pathlib import Path

import orjson

from agent.codecs.encoding import encode_batch
from agent.core.batch import Batch, Kind
from agent.core.metric import Sample


def test_raw_json_lines_are_written_verbatim_by_both_codecs() -> None:
    lines = [b'{"a":  1}', b'{"b":2}']
    batch = Batch(lines, Kind.JSON_LINES, 16)
    assert encode_batch(batch, "json") == b'{"a":  1}\n{"b":2}\n'
    assert encode_batch(batch, "text") == b'{"a":  1}\n{"b":2}\n'


def test_plain_lines_are_wrapped_for_json_and_verbatim_for_text() -> None:
    batch = Batch([b"hello", b"caf\xc3\xa9 \xff"], Kind.LINES, 12)
    assert encode_batch(batch, "text") == b"hello\ncaf\xc3\xa9 \xff\n"
    decoded = [orjson.loads(line) for line in encode_batch(batch, "json").splitlines()]
    assert decoded == [{"message": "hello"}, {"message": "café \ufffd"}]


def test_dict_events_encode_as_json_or_by_message() -> None:
    batch = Batch([{"message": "hi", "n": 1}, {"n": 2}, {"message": b"raw", "x": {1, 2}}], Kind.LOGS, 30)
    lines = encode_batch(batch, "json").splitlines()
    assert orjson.loads(lines[0]) == {"message": "hi", "n": 1}
    assert orjson.loads(lines[2])["message"] == "raw"  # bytes and sets take the slow path, not a crash
    assert encode_batch(batch, "text").splitlines() == [b"hi", b'{"n":2}', b"raw"]


def test_metrics_encode_as_json_and_text() -> None:
    sample = Sample.of("up", (("job", "node"),), 1.0, 1700000000000, "gauge")
    batch = Batch([sample], Kind.METRICS, 64)
    assert orjson.loads(encode_batch(batch, "json"))["labels"] == {"job": "node"}
    assert encode_batch(batch, "text") == b'up{job="node"} 1.0 1700000000000\n'


def test_values_no_encoder_knows_still_encode_everywhere(tmp_path: Path) -> None:
    """An integer past 64 bits (orjson refuses it), bytes, a set and a non-text key: encoded, never raised."""
    from agent.delivery.dead_letter import DeadLetterFile
    from agent.sinks.datadog_logs import dumps_entry
    from agent.sinks.elasticsearch.encoder import bulk_body

    event = {"message": "m", "big": 2**70, "raw": b"\xff", "tags": {"a"}, 7: "seven", "time": "2026-01-01T00:00:00Z"}
    expected = {"message": "m", "big": 2**70, "raw": "\ufffd", "tags": "{'a'}", "7": "seven"}
    line = encode_batch(Batch([dict(event)], Kind.LOGS, 10), "json")
    assert line.endswith(b"\n") and json.loads(line).items() >= expected.items()
    body = bulk_body(Kind.LOGS, [dict(event)], "i", op="index", id_mode="none", routing=None, type_name=None)
    assert json.loads(body.splitlines()[1]).items() >= {**expected, "@timestamp": "2026-01-01T00:00:00Z"}.items()
    assert json.loads(dumps_entry(dict(event)))["big"] == 2**70
    letters = DeadLetterFile(str(tmp_path / "dead.ndjson"), "es")
    letters.write([(dict(event), "mapping", {"type": "x"})])
    letters.close()
    assert json.loads((tmp_path / "dead.ndjson").read_bytes())["event"]["big"] == 2**70


def test_dumps_lenient_outlines_a_value_nested_past_every_encoder_and_a_circular_one() -> None:
    from agent.codecs.encoding import dumps_lenient

    deep: dict = {}
    node = deep
    for _ in range(1200):  # orjson parses 1,024 levels, encodes 255; json recurses until Python's limit
        node["a"] = {}
        node = node["a"]
    text = orjson.loads(dumps_lenient(deep))
    assert isinstance(text, str) and text.startswith("{'a': {")
    loop: list = []
    loop.append(loop)
    assert "[...]" in orjson.loads(dumps_lenient(loop))
