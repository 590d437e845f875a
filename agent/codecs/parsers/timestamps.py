"""Time extraction for ``parse``: a field's time read by ``time_format``, written as RFC 3339 UTC text.

Formats: ``iso8601`` (RFC 3339 and the ISO 8601 forms ``datetime.fromisoformat`` reads on Python 3.11, which is
C code; nanoseconds are cut to microseconds), ``unix`` (seconds, an int, float or numeric text), ``unix_ms``
(milliseconds), or a ``strptime`` format where ``%L`` is milliseconds (Fluent Bit's code). A time without a zone
is UTC; a format without a year (syslog's ``%b %d %H:%M:%S``) takes the current one. The result is the
text sinks pick an event's time from (``@timestamp``): ``2024-05-01T12:00:00.123Z``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

NAMED = ("iso8601", "unix", "unix_ms")


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
    try:
        datetime.strptime(datetime(2024, 1, 2, 3, 4, 5, 678000, UTC).strftime(pattern), pattern)
    except ValueError as exc:
        raise ValueError(f"time_format {time_format!r} is not a strptime format: {exc}") from None

    yearless = not any(code in pattern for code in ("%Y", "%y", "%G", "%s"))

    def read(value: Any) -> datetime | None:
        if not isinstance(value, str):
            return None
        try:
            moment = datetime.strptime(value, pattern)
            return moment.replace(year=datetime.now(UTC).year) if yearless else moment
        except ValueError:  # not this format; or Feb 29 in a year without it
            return None

    return read


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
