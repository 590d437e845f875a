"""Templates over events: strftime codes from the event's time, ``{{ field }}`` references from its fields.

Shared by the sinks that name something per event (Elasticsearch index names,
file paths), so both put an event in the same day: the time is the event's
``@timestamp``, ``time`` or ``timestamp`` (RFC 3339 text or epoch seconds, milliseconds, microseconds or
nanoseconds), else now, in UTC as Logstash and Vector name their indices. A text time in UTC (``Z``) is read to
the hour and what a template renders is cached by that hour; a text time with another offset is read whole and
turned to UTC, and a template with a code finer than the hour (``%M``, ``%S``...) reads every time whole.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from agent.codecs.parsers.timestamps import time_reader

FIELD = re.compile(r"\{\{\s*([A-Za-z0-9_.@-]+)\s*\}\}")
_FINER_THAN_HOUR = re.compile(r"%[-_0^#]?[MSsTRXcrf]")  # minutes, seconds and what shows them
_read_text = time_reader("iso8601")


@lru_cache(maxsize=4096)
def _hour(prefix: str) -> datetime | None:
    """The UTC hour of an RFC 3339 timestamp's first 13 characters (cached: one parse per hour seen)."""
    try:
        return datetime.strptime(prefix, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    except ValueError:
        return None


def time_value(event: Any) -> Any:
    """The event's ``@timestamp``, ``time`` or ``timestamp`` as it is (None for events that are not dicts)."""
    if type(event) is dict:
        value = event.get("@timestamp")
        if value is None:
            value = event.get("time")
            if value is None:
                value = event.get("timestamp")
        return value
    return None


def in_utc(text: str) -> bool:
    """Whether a text time is UTC, so its first 13 characters are its UTC hour: it ends in ``Z`` or has no offset
    after its date (``01:20+02:00`` has one, seconds or not)."""
    return text[-1:] in ("Z", "z") or not ("+" in text[10:] or "-" in text[10:])


def event_time(event: Any, exact: bool = False) -> datetime:
    """The event's time in UTC (to the hour for a UTC text time unless ``exact``: what index names use), or now."""
    value = time_value(event)
    if isinstance(value, str) and len(value) >= 13:
        if not exact and in_utc(value):
            hour = _hour(value[:13])
            if hour is not None:
                return hour
        moment = _read_text(value)
        if moment is not None:
            try:
                return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
            except OverflowError:  # year 1 or 9999 taken past the range by its offset
                pass
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value
        for _ in range(3):  # milli-, micro- or nanoseconds since the epoch, as loggers write them
            if abs(seconds) < 1e11:
                break
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (ValueError, OverflowError, OSError):  # NaN, infinities, years past 9999: no time to use
            pass
    return datetime.now(UTC)


def lookup(event: Any, dotted: str) -> Any:
    """The value at a dotted path in a dict event, or None."""
    value = event
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


class EventTemplate:
    """Renders a template for one event; ``safe`` turns a field's value (None when missing) into text."""

    def __init__(self, template: str, safe: Callable[[Any], str]) -> None:
        self.template = template
        self.fields = FIELD.findall(template)
        self.timed = "%" in template
        self.exact = _FINER_THAN_HOUR.search(template.replace("%%", "")) is not None  # no cache by the hour
        self.safe = safe
        self._by_hour: dict[tuple[str, str], str] = {}

    @property
    def static(self) -> bool:
        return not self.fields and not self.timed

    def partition_key(self) -> Callable[[Any], str]:
        """The function to call per event: :meth:`render`, with a shortcut for time-only templates."""
        if self.fields or not self.timed or self.exact:
            return self.render
        by_prefix: dict[str, str] = {}
        render = self.render
        now: list[Any] = [None, ""]  # the second last rendered for events without a time, and its name

        def key(event: Any) -> str:
            value = time_value(event)
            if type(value) is str and (value[-1:] == "Z" or in_utc(value)):
                name = by_prefix.get(value[:13])
                if name is None:
                    if len(by_prefix) >= 4096:
                        by_prefix.clear()
                    name = by_prefix[value[:13]] = render(event)
                return name
            if value is None:  # now: rendered once a second, not once per event
                second = int(time.time())
                if second != now[0]:
                    now[0], now[1] = second, render(event)
                return now[1]  # type: ignore[no-any-return]
            return render(event)

        return key

    def render(self, event: Any) -> str:
        name = self.template
        if self.fields:
            if self.timed:  # a value's own "%" stays text, not a strftime code
                name = FIELD.sub(lambda m: self.safe(lookup(event, m.group(1))).replace("%", "%%"), name)
            else:
                name = FIELD.sub(lambda m: self.safe(lookup(event, m.group(1))), name)
        if self.timed:
            value = time_value(event)
            if type(value) is not str or len(value) < 13 or self.exact or not in_utc(value):
                return event_time(event, self.exact).strftime(name)
            key = (name, value[:13])
            rendered = self._by_hour.get(key)
            if rendered is None:
                if len(self._by_hour) >= 4096:
                    self._by_hour.clear()
                rendered = self._by_hour[key] = event_time(event).strftime(name)
            return rendered
        return name
