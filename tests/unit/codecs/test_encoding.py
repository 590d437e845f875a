from __future__ import annotations

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
    sample = Sample("up", (("job", "node"),), 1.0, 1700000000000, "gauge")
    batch = Batch([sample], Kind.METRICS, 64)
    assert orjson.loads(encode_batch(batch, "json"))["labels"] == {"job": "node"}
    assert encode_batch(batch, "text") == b'up{job="node"} 1.0 1700000000000\n'
