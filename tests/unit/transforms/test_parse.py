from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.registry import BuildContext
from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.observe.stats import ComponentStats
from agent.transforms.parse import ParseConfig, ParseTransform


def transform(**kw: object) -> ParseTransform:
    stats = ComponentStats("p", "transform", "parse")
    return ParseTransform(ParseConfig(inputs=["x"], **kw), BuildContext("p", Path("."), Path("."), stats))  # type: ignore[arg-type]


def test_raw_lines_become_dicts_and_bad_ones_are_kept_marked() -> None:
    t = transform()
    seen: list[AckStatus] = []
    out = t.process(Batch([b'{"a":1}', b"not json", b"[1,2]", b'{"b":"\xff"}'], Kind.LINES, 40, [Ack(seen.append)]))
    assert out is not None and out.kind is Kind.LOGS
    assert out.events[0] == {"a": 1}
    assert out.events[1] == {"message": "not json", "parse_error": "not a JSON object"}
    assert out.events[2]["message"] == "[1,2]"
    assert out.events[3]["message"].startswith('{"b":"')  # invalid UTF-8 is kept, replaced
    assert t.stats.errors[("parse_failed", "processing")] == 3
    assert len(out.acks) == 1 and seen == []


def test_on_error_drop_counts_the_drop() -> None:
    t = transform(on_error="drop")
    out = t.process(Batch([b'{"a":1}', b"oops"], Kind.LINES, 12))
    assert out is not None and out.events == [{"a": 1}]
    assert t.stats.discarded["parse_failed"] == 1


def test_a_field_of_dict_events_is_merged_or_nested() -> None:
    merged = transform().process(Batch([{"message": '{"level":"info"}', "stream": "stdout"}], Kind.LOGS, 10))
    assert merged is not None and merged.events == [{"stream": "stdout", "level": "info"}]
    nested = transform(field="log", target="app").process(Batch([{"log": '{"x":1}'}], Kind.LOGS, 10))
    assert nested is not None and nested.events == [{"log": '{"x":1}', "app": {"x": 1}}]


def test_a_missing_or_bad_field_is_marked_not_lost() -> None:
    out = transform().process(Batch([{"other": 1}, {"message": "{"}], Kind.LOGS, 10))
    assert out is not None
    assert out.events == [{"other": 1, "parse_error": "not a JSON object"},
                          {"message": "{", "parse_error": "not a JSON object"}]


class _Breaks:
    """A parser with a defect: it raises on lines that contain "boom" and parses the others."""

    error = "no match"

    def parse_bytes(self, data: bytes) -> dict[str, str] | None:
        if b"boom" in data:
            raise IndexError("a defect")
        return {"line": data.decode()}

    def parse(self, text: str) -> dict[str, str] | None:
        return self.parse_bytes(text.encode())


def test_a_parser_that_raises_costs_its_line_not_the_rest_of_the_batch(caplog: pytest.LogCaptureFixture) -> None:
    t = transform(codec="logfmt")
    t.parser = _Breaks()
    out = t.process(Batch([b"a", b"boom 1", b"b", b"boom 2"], Kind.LINES, 20))
    assert out is not None and out.events == [
        {"line": "a"}, {"message": "boom 1", "parse_error": "the logfmt parser failed (IndexError)"},
        {"line": "b"}, {"message": "boom 2", "parse_error": "the logfmt parser failed (IndexError)"}]
    assert t.stats.errors[("parser_raised", "processing")] == 2
    assert t.stats.errors[("parse_failed", "processing")] == 2
    fields = t.process(Batch([{"message": "boom"}, {"message": "c"}], Kind.LOGS, 20))
    assert fields is not None and fields.events == [
        {"message": "boom", "parse_error": "the logfmt parser failed (IndexError)"}, {"line": "c"}]
    raised = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(raised) == 1 and "a defect" not in caplog.text  # logged once, without the message (it may quote)


def test_a_parser_that_raises_with_on_error_drop_drops_only_that_line() -> None:
    t = transform(codec="logfmt", on_error="drop")
    t.parser = _Breaks()
    out = t.process(Batch([b"boom", b"a"], Kind.LINES, 10))
    assert out is not None and out.events == [{"line": "a"}]
    assert t.stats.discarded["parse_failed"] == 1


def test_a_time_reader_that_raises_costs_the_event_its_time_not_the_batch() -> None:
    t = transform(codec="logfmt", time_key="t")
    t.stamp_time = lambda value: 1 / 0  # type: ignore[assignment,misc,return-value]
    out = t.process(Batch([b"t=1 a=1", b"t=2 a=2"], Kind.LINES, 20))
    assert out is not None and [e["a"] for e in out.events] == ["1", "2"]
    assert all("@timestamp" not in e for e in out.events)
    assert t.stats.errors[("time_parse_failed", "processing")] == 2
