"""``parse`` with codecs other than JSON and with its options (types, time, keep_original, when)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config.pipeline import check_texts
from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.observe.stats import ComponentStats
from agent.transforms.parse import ParseConfig, ParseTransform

ACCESS = b'127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'


def transform(**kw: Any) -> ParseTransform:
    stats = ComponentStats("p", "transform", "parse")
    return ParseTransform(ParseConfig(inputs=["x"], **kw), BuildContext("p", Path("."), Path("."), stats))


def run(t: ParseTransform, events: list[Any], kind: Kind = Kind.LINES) -> list[dict[str, Any]]:
    out = t.process(Batch(events, kind, 100))
    assert out is not None and out.kind is Kind.LOGS
    return out.events


def test_grok_from_raw_lines_with_types_and_time() -> None:
    t = transform(codec="grok", pattern="%{COMMONAPACHELOG}", types={"response": "int", "bytes": "int"},
                  time_key="timestamp", time_format="%d/%b/%Y:%H:%M:%S %z")
    [event] = run(t, [ACCESS])
    assert event["response"] == 200 and event["bytes"] == 2326 and event["verb"] == "GET"
    assert event["@timestamp"] == "2000-10-10T20:55:36.000Z" and "timestamp" not in event


def test_a_line_that_does_not_parse_passes_on_marked_by_its_codec_and_counted() -> None:
    t = transform(codec="syslog")
    events = run(t, [b"<34>Oct 11 22:14:15 mymachine su: hi", b"not syslog \xff"])
    assert events[0]["appname"] == "su"
    assert events[1] == {"message": "not syslog \ufffd", "parse_error": "not syslog (RFC 5424 or RFC 3164)"}
    assert t.stats.errors[("parse_failed", "processing")] == 1
    dropped = transform(codec="logfmt", on_error="drop")
    assert run(dropped, [b"a=1", b""]) == [{"a": "1"}]
    assert dropped.stats.discarded["parse_failed"] == 1


@pytest.mark.parametrize(("config", "line", "expected"), [
    ({"codec": "regex", "pattern": r"^(?<level>\w+) (?<msg>.*)$"}, b"INFO ok", {"level": "INFO", "msg": "ok"}),
    ({"codec": "logfmt"}, b'level=info msg="a b"', {"level": "info", "msg": "a b"}),
    ({"codec": "key_value", "field_split": ",", "value_split": ":"}, b"a:1,b:2", {"a": "1", "b": "2"}),
    ({"codec": "nginx"}, ACCESS, {"status": 200, "size": 2326}),
    ({"codec": "apache"}, ACCESS, {"method": "GET", "path": "/apache_pb.gif"}),
    ({"codec": "csv", "columns": ["a", "b"], "delimiter": ";"}, b"1;2", {"a": "1", "b": "2"}),
    ({"codec": "json", "types": {"n": "float"}}, b'{"n": "1.5"}', {"n": 1.5}),
])
def test_every_codec_from_a_raw_line(config: dict[str, Any], line: bytes, expected: dict[str, Any]) -> None:
    [event] = run(transform(**config), [line])
    assert expected.items() <= event.items()


def test_a_field_of_dict_events_with_target_and_keep_original() -> None:
    t = transform(codec="logfmt", field="log", target="app", keep_original=True)
    assert run(t, [{"log": "a=1", "stream": "stdout"}], Kind.LOGS) == [
        {"log": "a=1", "stream": "stdout", "app": {"a": "1"}}]
    merged = transform(codec="logfmt", field="log")
    assert run(merged, [{"log": "a=1"}, {"log": 5}], Kind.LOGS) == [
        {"a": "1"}, {"log": 5, "parse_error": "not logfmt"}]


def test_keep_original_on_raw_lines_keeps_the_line_as_message() -> None:
    for codec in ("json", "logfmt"):
        line = b'{"a": 1}' if codec == "json" else b"a=1"
        [event] = run(transform(codec=codec, keep_original=True), [line])
        assert event["message"] == line.decode() and len(event) == 2


GROK_MESSAGE = {"codec": "grok", "pattern": "%{WORD:level} %{GREEDYDATA:message}"}
REGEX_MESSAGE = {"codec": "regex", "pattern": r"^(?<level>\w+) (?<message>.*)$"}


@pytest.mark.parametrize(("config", "line"), [
    (GROK_MESSAGE, b"INFO hello world"), (REGEX_MESSAGE, b"INFO hello world"),
    ({"codec": "json"}, b'{"level": "INFO", "message": "hello world"}'),
])
def test_keep_original_puts_the_line_under_event_original_when_a_parsed_field_is_named_message(
        config: dict[str, Any], line: bytes) -> None:
    [event] = run(transform(keep_original=True, **config), [line])
    assert event == {"level": "INFO", "message": "hello world", "event": {"original": line.decode()}}
    [under_target] = run(transform(keep_original=True, target="message", **config), [line])
    assert under_target == {"message": {"level": "INFO", "message": "hello world"},
                            "event": {"original": line.decode()}}


@pytest.mark.parametrize("config", [GROK_MESSAGE, REGEX_MESSAGE, {"codec": "json"},
                                    {"codec": "json", "types": {"level": "string"}}])  # the fast and general loops
def test_keep_original_puts_the_field_under_event_original_when_a_parsed_field_takes_its_name(
        config: dict[str, Any]) -> None:
    text = '{"level": "INFO", "message": "hi"}' if config["codec"] == "json" else "INFO hi"
    shared = {"dataset": "app"}
    events = [{"message": text, "host": "a", "event": shared}, {"message": text.encode()}]
    t = transform(keep_original=True, **config)
    assert run(t, events, Kind.LOGS) == [
        {"host": "a", "message": "hi", "level": "INFO", "event": {"dataset": "app", "original": text}},
        {"message": "hi", "level": "INFO", "event": {"original": text}}]
    assert shared == {"dataset": "app"}  # another consumer's event.event (fan-out) is left as it was
    [under_target] = run(transform(keep_original=True, target="message", **config), [{"message": text}], Kind.LOGS)
    assert under_target == {"message": {"level": "INFO", "message": "hi"}, "event": {"original": text}}


def test_keep_original_leaves_an_event_original_that_is_set_and_counts_an_event_that_is_not_an_object() -> None:
    t = transform(keep_original=True)
    events = [{"message": '{"message": "hi"}', "event": {"original": "the line"}},
              {"message": '{"message": "hi", "event": "login"}'}]
    assert run(t, events, Kind.LOGS) == [{"message": "hi", "event": {"original": "the line"}},
                                         {"message": "hi", "event": "login"}]
    assert t.stats.errors[("field_conflict", "processing")] == 1


def test_when_looks_like_json_passes_other_lines_on_untouched_and_uncounted() -> None:
    t = transform(when="looks_like_json")
    events = run(t, [b' {"a": 1} ', b"plain text", b"{not json}"])
    assert events == [{"a": 1}, {"message": "plain text"},
                      {"message": "{not json}", "parse_error": "not a JSON object"}]
    assert t.stats.errors[("parse_failed", "processing")] == 1
    fields = transform(when="looks_like_json", field="log")
    assert run(fields, [{"log": "text"}, {"log": '{"b":2}'}], Kind.LOGS) == [{"log": "text"}, {"b": 2}]


def test_time_formats_time_keep_and_a_time_that_does_not_parse() -> None:
    t = transform(time_key="ts", time_format="unix_ms", time_keep=True)
    assert run(t, [b'{"ts": 1714564800123}'])[0] == {"ts": 1714564800123, "@timestamp": "2024-05-01T12:00:00.123Z"}
    iso = transform(time_key="time", target="app")
    [event] = run(iso, [b'{"time": "2024-05-01T14:00:00+02:00", "x": 1}'])
    assert event == {"app": {"x": 1}, "@timestamp": "2024-05-01T12:00:00.000Z"}
    bad = transform(time_key="time")
    assert run(bad, [b'{"time": "yesterday"}']) == [{"time": "yesterday"}]
    assert bad.stats.errors[("time_parse_failed", "processing")] == 1


def test_a_time_repeated_line_after_line_is_read_once_and_gives_each_line_its_stamp(
        monkeypatch: pytest.MonkeyPatch) -> None:
    t = transform(time_key="ts", time_format="%d/%b/%Y:%H:%M:%S %z")
    reads: list[Any] = []
    read = t.stamp_time
    monkeypatch.setattr(t, "stamp_time", lambda value: reads.append(value) or read(value))
    lines = [b'{"ts": "06/Nov/2014:19:10:38 +0600", "n": 1}', b'{"ts": "06/Nov/2014:19:10:38 +0600", "n": 2}',
             b'{"ts": "06/Nov/2014:19:10:39 +0600", "n": 3}', b'{"ts": 1415279438, "n": 4}',
             b'{"ts": "06/Nov/2014:19:10:39 +0600", "n": 5}']
    events = run(t, lines)
    assert [e.get("@timestamp") for e in events] == ["2014-11-06T13:10:38.000Z", "2014-11-06T13:10:38.000Z",
                                                     "2014-11-06T13:10:39.000Z", None, "2014-11-06T13:10:39.000Z"]
    assert "ts" not in events[0] and "ts" not in events[1] and events[3]["ts"] == 1415279438  # not a text time
    assert reads == ["06/Nov/2014:19:10:38 +0600", "06/Nov/2014:19:10:39 +0600", 1415279438]  # the last good one kept
    assert t.stats.errors[("time_parse_failed", "processing")] == 1


def test_a_value_that_does_not_convert_stays_and_is_counted() -> None:
    t = transform(types={"status": "int", "ok": "bool"})
    assert run(t, [b'{"status": "n/a", "ok": "yes"}']) == [{"status": "n/a", "ok": True}]
    assert t.stats.errors[("type_conversion_failed", "processing")] == 1


def test_plain_json_takes_the_fast_loops() -> None:
    assert transform().fast_json
    assert not transform(types={"a": "int"}).fast_json and not transform(when="looks_like_json").fast_json


PIPELINE = """\
sources:
  s: {type: stdin}
transforms:
  p:
    type: parse
    inputs: [s]
%s
sinks:
  o: {type: blackhole, inputs: [p]}
"""


@pytest.mark.parametrize(("options", "message"), [
    ("    codec: grok\n    pattern: '%{WORD:x} (?=y)'", "lookahead"),
    ("    codec: grok\n    pattern: '%{NOPE:x}'", "not defined"),
    ("    codec: regex\n    pattern: '(?P<a>x)\\1'", "backreference"),
    ("    codec: regex", "needs a pattern"),
    ("    codec: csv", "needs columns"),
    ("    codec: logfmt\n    pattern: x", "pattern is for codec regex or grok"),
    ("    codec: logfmt\n    when: looks_like_json", "looks_like_json is for codec json"),
    ("    time_key: t\n    time_format: rfc3339", "time_format"),
    ("    types: {a: date}", "types"),
])
def test_config_errors_name_the_file_and_line(options: str, message: str) -> None:
    _, errors = check_texts([(PIPELINE % options, "pipe.yaml")])
    assert len(errors) == 1, errors
    text = str(errors[0])
    assert message in text and "pipe.yaml:" in text and "transforms.p" in text


@pytest.mark.parametrize("options", [
    "    codec: grok\n    pattern: '%{WORD:x} (?=y)'",
    "    codec: grok\n    pattern: '%{NOPE:x}'",
    "    codec: regex\n    pattern: '(?P<a>x)\\1'",
    "    codec: regex\n    pattern: '(x)'",
])
def test_a_pattern_that_does_not_compile_is_reported_on_the_patterns_line(options: str) -> None:
    _, errors = check_texts([(PIPELINE % options, "pipe.yaml")])
    assert len(errors) == 1, errors
    assert str(errors[0]).startswith("pipe.yaml:8: transforms.p.pattern: "), errors  # not the component's line 4


def test_types_string_writes_objects_lists_and_null_as_json_and_int_stays_in_64_bits() -> None:
    t = transform(types={"a": "string", "b": "string", "c": "string", "d": "string", "n": "int", "m": "int"})
    line = b'{"a": {"x": [1, "y"]}, "b": null, "c": true, "d": 1.5, "n": 1e300, "m": "9223372036854775808"}'
    assert run(t, [line]) == [{"a": '{"x":[1,"y"]}', "b": "null", "c": "true", "d": "1.5", "n": 1e300,
                               "m": "9223372036854775808"}]  # past 64 bits: no integer a sink could carry
    assert t.stats.errors[("type_conversion_failed", "processing")] == 1  # one event, two values
    assert run(transform(types={"n": "int"}), [b'{"n": "-9223372036854775808"}']) == [{"n": -(2**63)}]


GROK_CUSTOM = """\
sources:
  in: {type: stdin}
transforms:
  p:
    type: parse
    inputs: [in]
    codec: grok
    pattern: '%%{MYID:id} %%{GREEDYDATA:rest}'
    patterns:
      OTHER: '[a-z]+'
      MYID: '%s'
sinks:
  out: {type: console, inputs: [p]}
"""


@pytest.mark.parametrize(("custom", "why"), [(r"(a)\1", "backreference"), ("%%{NOPE}", "not defined")])
def test_a_custom_grok_pattern_that_fails_is_reported_on_its_own_line(custom: str, why: str) -> None:
    _, errors = check_texts([(GROK_CUSTOM % custom, "pipe.yaml")])
    assert len(errors) == 1, errors
    assert str(errors[0]).startswith("pipe.yaml:11: transforms.p.patterns.MYID: "), errors
    assert why in str(errors[0])
