from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.codecs.parsers.timestamps import rfc3339, time_reader


@pytest.mark.parametrize(("time_format", "value", "expected"), [
    ("iso8601", "2024-05-01T14:00:00.123+02:00", "2024-05-01T12:00:00.123Z"),
    ("iso8601", "2024-05-01T12:00:00.123456789Z", "2024-05-01T12:00:00.123456Z"),  # Go's nanoseconds, cut
    ("iso8601", "2024-05-01 12:00:00", "2024-05-01T12:00:00.000Z"),  # no zone: UTC
    ("unix", 1714564800, "2024-05-01T12:00:00.000Z"),
    ("unix", "1714564800.5", "2024-05-01T12:00:00.500Z"),
    ("unix_ms", 1714564800123, "2024-05-01T12:00:00.123Z"),
    ("%d/%b/%Y:%H:%M:%S %z", "10/Oct/2000:13:55:36 -0700", "2000-10-10T20:55:36.000Z"),
    ("%Y-%m-%d %H:%M:%S.%L", "2024-05-01 12:00:00.042", "2024-05-01T12:00:00.042Z"),  # Fluent Bit's %L
])
def test_formats(time_format: str, value: object, expected: str) -> None:
    moment = time_reader(time_format)(value)
    assert moment is not None and rfc3339(moment) == expected


def test_a_format_without_a_year_takes_the_current_one() -> None:
    moment = time_reader("%b %d %H:%M:%S")("Jan  1 06:25:43")
    assert moment is not None and moment.year == datetime.now(UTC).year


@pytest.mark.parametrize("value", [None, True, "soon", math.nan, math.inf, 1e30, [1]])
def test_what_is_not_a_time_is_none(value: object) -> None:
    for time_format in ("iso8601", "unix", "unix_ms", "%Y"):
        assert time_reader(time_format)(value) is None


def test_a_format_that_is_not_one_is_refused() -> None:
    for bad in ("rfc3339", "%Q"):
        with pytest.raises(ValueError, match="time_format"):
            time_reader(bad)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.floats(), st.integers()))
def test_any_value_gives_a_time_or_none(value: object) -> None:
    for time_format in ("iso8601", "unix", "unix_ms", "%Y-%m-%dT%H:%M:%S.%L"):
        moment = time_reader(time_format)(value)
        assert moment is None or rfc3339(moment).endswith("Z")
