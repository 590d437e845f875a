from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.codecs.parsers import timestamps
from agent.codecs.parsers.timestamps import rfc3339, time_reader, time_stamper


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
@given(st.one_of(st.text(max_size=40), st.floats(), st.integers(),
                 st.datetimes().map(lambda d: d.isoformat() + "+01:00")))
def test_any_value_gives_a_time_or_none(value: object) -> None:
    for time_format in ("iso8601", "unix", "unix_ms", "%Y-%m-%dT%H:%M:%S.%L", "%b %d %H:%M:%S",
                        "%d/%b/%Y:%H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%Z"):
        stamp = time_stamper(time_format)(value)
        assert stamp is None or stamp.endswith("Z")


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00", "9999-12-31T23:59:60Z"])
def test_a_time_whose_utc_falls_outside_years_1_to_9999_is_none(value: str) -> None:
    assert time_stamper("iso8601")(value) is None  # rfc3339's astimezone raised OverflowError
    assert time_stamper("%Y-%m-%dT%H:%M:%S%z")(value) is None


@pytest.mark.parametrize(("time_format", "value", "expected"), [
    # Fluent Bit 4.2.8 reads all of these with the same Time_Format (its docker parser's, the first).
    ("%Y-%m-%dT%H:%M:%S.%L", "2024-05-01T12:00:00.123456789Z", "2024-05-01T12:00:00.123456Z"),
    ("%Y-%m-%dT%H:%M:%S.%L", "2024-05-01T12:00:00.5Z", "2024-05-01T12:00:00.500Z"),
    ("%Y-%m-%dT%H:%M:%S.%L", "2024-05-01T14:00:00.5+02:00", "2024-05-01T12:00:00.500Z"),  # Fluent Bit: 14:00
    ("%Y-%m-%dT%H:%M:%S.%L%z", "2024-05-01T12:00:00.123456789Z", "2024-05-01T12:00:00.123456Z"),
    ("%Y-%m-%dT%H:%M:%S.%L", "2016-12-31T23:59:60.5Z", "2017-01-01T00:00:00.500Z"),  # a leap second
    ("iso8601", "2016-12-31T23:59:60Z", "2017-01-01T00:00:00.000Z"),
    ("iso8601", "2016-12-31T23:59:60.250+00:00", "2017-01-01T00:00:00.250Z"),
    ("%d/%b/%Y:%H:%M:%S %z", "31/Dec/2016:23:59:60 +0000", "2017-01-01T00:00:00.000Z"),
])
def test_what_fluent_bits_strptime_reads_and_pythons_refuses(time_format: str, value: str, expected: str) -> None:
    assert time_stamper(time_format)(value) == expected


def test_trailing_text_that_is_no_zone_still_does_not_read() -> None:
    assert time_reader("%d/%b/%Y:%H:%M:%S %z")("bogus") is None  # no second %z tried: re.error
    assert time_reader("%Y-%m-%dT%H:%M:%S")("2024-05-01T12:00:00 and more") is None
    assert time_reader("%H:%M:%S")("12:60:00") is None  # minute 60 is no leap second


def test_feb_29_without_a_year_reads_in_a_leap_year(monkeypatch: pytest.MonkeyPatch) -> None:
    # strptime's default year 1900 has no Feb 29: every syslog line of a leap day failed to read.
    monkeypatch.setattr(timestamps, "utc_now", lambda: datetime(2028, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert time_stamper("%b %d %H:%M:%S")("Feb 29 06:25:43") == "2028-02-29T06:25:43.000Z"
    assert time_stamper("%b %d %H:%M:%S")("Dec 31 23:59:60") == "2029-01-01T00:00:00.000Z"  # as Fluent Bit
    monkeypatch.setattr(timestamps, "utc_now", lambda: datetime(2027, 6, 1, tzinfo=UTC))
    assert time_stamper("%b %d %H:%M:%S")("Feb 29 06:25:43") is None


def test_a_yearless_time_over_a_day_ahead_of_now_is_last_years(monkeypatch: pytest.MonkeyPatch) -> None:
    # A December line read just after New Year belongs to the year that ended, as Logstash's date filter has it.
    monkeypatch.setattr(timestamps, "utc_now", lambda: datetime(2027, 1, 1, 0, 10, tzinfo=UTC))
    stamp = time_stamper("%b %d %H:%M:%S")
    assert stamp("Dec 31 23:59:58") == "2026-12-31T23:59:58.000Z"
    assert stamp("Jan  1 00:09:00") == "2027-01-01T00:09:00.000Z"
    assert stamp("Jan  2 00:05:00") == "2027-01-02T00:05:00.000Z"  # a clock a little ahead: still this year
    assert stamp("Jan  3 00:00:00") == "2026-01-03T00:00:00.000Z"  # two days ahead: a year ago
    assert time_stamper("%b %d %H:%M:%S %z")("Jan  1 03:00:00 +0500") == "2026-12-31T22:00:00.000Z"
    monkeypatch.setattr(timestamps, "utc_now", lambda: datetime(2029, 1, 1, tzinfo=UTC))
    assert stamp("Feb 29 06:25:43") is None  # no Feb 29 in 2029; only a time ahead of now is looked for a year back


def test_formats_whose_codes_carry_the_year_are_not_given_another() -> None:
    # %c and %x read a year: prefixing %Y for a yearless format made strptime raise re.error on every line.
    assert time_stamper("%c")("Mon Jan  2 03:04:05 2024") == "2024-01-02T03:04:05.000Z"
    assert time_stamper("%x %X")("01/02/24 03:04:05") == "2024-01-02T03:04:05.000Z"
    assert time_stamper("%c")("no time") is None


def test_a_format_with_a_code_twice_is_a_config_error_not_an_re_error() -> None:
    with pytest.raises(ValueError, match="not a strptime format"):
        time_reader("%Y %Y")
