"""``parse`` on hostile input: one bad line never costs the rest of its batch their parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.observe.stats import ComponentStats
from agent.transforms.parse import ParseConfig, ParseTransform


def transform(**kw: Any) -> ParseTransform:
    stats = ComponentStats("p", "transform", "parse")
    return ParseTransform(ParseConfig(inputs=["x"], **kw), BuildContext("p", Path("."), Path("."), stats))


def run(t: ParseTransform, events: list[Any]) -> list[dict[str, Any]]:
    out = t.process(Batch(events, Kind.LINES, 100))
    assert out is not None
    return out.events


def test_a_time_whose_utc_is_past_year_one_or_9999_is_a_counted_time_failure_not_a_crash() -> None:
    # astimezone(UTC) of these raised OverflowError, which failed the whole batch (passed on unparsed).
    t = transform(codec="logfmt", time_key="t")
    events = run(t, [b"t=2024-05-01T12:00:00Z n=1", b"t=0001-01-01T00:00:00+01:00 n=2",
                     b"t=9999-12-31T23:30:00-01:00 n=3", b"t=9999-12-31T23:59:60Z n=4"])
    assert events[0] == {"n": "1", "@timestamp": "2024-05-01T12:00:00.000Z"}
    assert [e["n"] for e in events] == ["1", "2", "3", "4"] and all("@timestamp" not in e for e in events[1:])
    assert events[1]["t"] == "0001-01-01T00:00:00+01:00"  # kept, as any time that does not read
    assert t.stats.errors[("time_parse_failed", "processing")] == 3


def test_fluent_bits_docker_parser_time_format_reads_dockers_nanoseconds_and_zone() -> None:
    # Fluent Bit's parsers.conf: Time_Format %Y-%m-%dT%H:%M:%S.%L on Docker's time; Fluent Bit 4.2.8 reads
    # these lines (date 1714564800.123457, and the leap second as 2017-01-01T00:00:00.5).
    t = transform(time_key="time", time_format="%Y-%m-%dT%H:%M:%S.%L")
    events = run(t, [b'{"time": "2024-05-01T12:00:00.123456789Z"}', b'{"time": "2024-05-01T14:00:00.5+02:00"}',
                     b'{"time": "2016-12-31T23:59:60.5Z"}'])
    assert [e["@timestamp"] for e in events] == [
        "2024-05-01T12:00:00.123456Z", "2024-05-01T12:00:00.500Z", "2017-01-01T00:00:00.500Z"]
    assert not t.stats.errors
