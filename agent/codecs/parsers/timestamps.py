"""Time extraction for ``parse``: a field's time read by ``time_format``, written as RFC 3339 UTC text.

Formats: ``iso8601`` (RFC 3339 and the ISO 8601 forms ``datetime.fromisoformat`` reads on Python 3.11, which is
C code; nanoseconds are cut to microseconds), ``unix`` (seconds, an int, float or numeric text), ``unix_ms``
(milliseconds), or a ``strptime`` format where ``%L`` is the fraction of a second (Fluent Bit's code). A time
without a zone is UTC; a format without a year (syslog's ``%b %d %H:%M:%S``) takes the current one (Feb 29
included, in a leap year), or the last one where the current would put the time over a day ahead (December's
lines read in January). The result is the text sinks pick an event's time from (``@timestamp``):
``2024-05-01T12:00:00.123Z``.

What Fluent Bit's own ``strptime`` reads and Python's refuses is read on a second try, so only a time that
fails the first pays for it: a fraction of more than 6 digits (Docker's nanoseconds: cut to microseconds), a
leap second (``23:59:60`` is the next minute's first second, as Fluent Bit and ``timegm`` make it), and a zone
(``Z``, ``+02:00``) after a format that has none (Fluent Bit's docker parser ``%Y-%m-%dT%H:%M:%S.%L`` meets
Docker's ``...Z``; the zone is applied, where Fluent Bit ignores it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

NAMED = ("iso8601", "unix", "unix_ms")
_LONG_FRACTION = re.compile(r"([.,]\d{6})\d+")
_LEAP_SECOND = re.compile(r"(\d:[0-5]\d:)60(?!\d)")
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_YEAR_CODES = ("%Y", "%y", "%G", "%s", "%c", "%x")  # strptime codes that read a year
_PROBE = datetime(2024, 1, 2, 3, 4, 5, 678000, UTC)  # a time each format must read back from its own text


def time_reader(time_format: str) -> Callable[[Any], datetime | None]:
    """The function that reads a field's value as ``time_format`` says (None: it is not such a time)."""
    if time_format == "iso8601":
        return _iso8601
    if time_format == "unix":
        return lambda value: _epoch(value, 1.0)
    if time_format == "unix_ms":
        return lambda value: _epoch(value, 1000.0)
    if "%" not in time_format:
        raise ValueError(f"time_format {time_format!r} is none of {', '.join(NAMED)} and has no strptime code")
    pattern = time_format.replace("%L", "%f")
    yearless = not any(code in pattern for code in _YEAR_CODES)
    if yearless:  # the year is read with the rest, so Feb 29 is a day in a leap year (strptime's 1900 has none)
        pattern = "%Y " + pattern
    retries = (pattern,) if "%z" in pattern else (pattern, pattern + "%z")  # strptime refuses a second %z
    for attempt in retries:  # each format as it will be read (strptime raises re.error for a code given twice)
        try:
            datetime.strptime(_PROBE.strftime(attempt), attempt)
        except (ValueError, re.error) as exc:
            if attempt is not pattern:
                retries = (pattern,)  # no zone can follow this format: not tried
                break
            raise ValueError(f"time_format {time_format!r} is not a strptime format: {exc}") from None

    def parse(value: str) -> datetime | None:
        try:
            return datetime.strptime(value, pattern)
        except ValueError:
            return _strptime_again(value, retries)

    def read(value: Any) -> datetime | None:
        if not isinstance(value, str):
            return None
        return _in_latest_year(value, parse) if yearless else parse(value)

    return read


def _in_latest_year(value: str, parse: Callable[[str], datetime | None]) -> datetime | None:
    """A time written without its year, in this year, or in the last one where this year would put it more than a
    day ahead of now (a December line read in January), as Logstash's date filter and rsyslog take it."""
    now = utc_now()
    moment = parse(f"{now.year} {value}")
    if moment is not None and (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) > now + _DAY:
        return parse(f"{now.year - 1} {value}") or moment  # Feb 29 a year ago did not exist: keep this year's
    return moment


def time_stamper(time_format: str) -> Callable[[Any], str | None]:
    """``time_reader`` and ``rfc3339`` in one: a value's ``@timestamp`` text, or None when it is no such time
    or one whose UTC is outside the years 1 to 9999 (``0001-01-01T00:00:00+01:00``)."""
    read = time_reader(time_format)

    def stamp(value: Any) -> str | None:
        moment = read(value)
        if moment is None:
            return None
        try:
            return rfc3339(moment)
        except OverflowError:
            return None

    return stamp


def utc_now() -> datetime:
    """Now, in UTC: what a time written without its year is placed near."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC text with a ``Z`` (milliseconds, or microseconds when it has them)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    spec = "microseconds" if moment.microsecond % 1000 else "milliseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _iso8601(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        fixed, leap = _LEAP_SECOND.subn(r"\g<1>59", value, 1)
        if not leap:
            return None
        try:
            return datetime.fromisoformat(fixed) + _SECOND
        except (ValueError, OverflowError):
            return None


def _strptime_again(value: str, patterns: tuple[str, ...]) -> datetime | None:
    """``value`` read once more by ``patterns`` (the format, and the format with a zone if it has none), with
    what Fluent Bit reads and ``strptime`` refuses: a fraction past microseconds (cut), a leap second (the next
    minute's first), a zone the format does not have."""
    fixed = _LONG_FRACTION.sub(r"\1", value, 1)
    fixed, leap = _LEAP_SECOND.subn(r"\g<1>59", fixed, 1)
    for attempt in patterns:
        try:
            moment = datetime.strptime(fixed, attempt)
        except ValueError:
            continue
        try:
            return moment + _SECOND if leap else moment
        except OverflowError:
            return None
    return None


def _epoch(value: Any, per_second: float) -> datetime | None:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    elif not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value / per_second, UTC)
    except (ValueError, OverflowError, OSError):  # NaN, infinities, years past 9999
        return None
