"""Templates over events: strftime codes from the event's time, ``{{ field }}`` references from its fields.

Shared by the sinks that name something per event (Elasticsearch index names,
file paths), so both put an event in the same day: the time is the event's
``@timestamp``, ``time`` or ``timestamp`` (RFC 3339 text, read to the hour, or
epoch seconds, milliseconds, microseconds or nanoseconds), else now. What a template renders is cached
by the hour of the event's time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

FIELD = re.compile(r"\{\{\s*([A-Za-z0-9_.@-]+)\s*\}\}")


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


def event_time(event: Any) -> datetime:
    """The event's time to the hour (what index names and paths use), or now."""
    value = time_value(event)
    if isinstance(value, str) and len(value) >= 13:
        hour = _hour(value[:13])
        if hour is not None:
            return hour
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
        self.safe = safe
        self._by_hour: dict[tuple[str, str], str] = {}

    @property
    def static(self) -> bool:
        return not self.fields and not self.timed

    def partition_key(self) -> Callable[[Any], str]:
        """The function to call per event: :meth:`render`, with a shortcut for time-only templates."""
        if self.fields or not self.timed:
            return self.render
        by_prefix: dict[str, str] = {}
        render = self.render
        now: list[Any] = [None, ""]  # the second last rendered for events without a time, and its name

        def key(event: Any) -> str:
            value = time_value(event)
            if type(value) is str:
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
            if type(value) is not str or len(value) < 13:
                return event_time(event).strftime(name)
            key = (name, value[:13])
            rendered = self._by_hour.get(key)
            if rendered is None:
                if len(self._by_hour) >= 4096:
                    self._by_hour.clear()
                rendered = self._by_hour[key] = event_time(event).strftime(name)
            return rendered
        return name
