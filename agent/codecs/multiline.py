"""Joining consecutive log lines of a stream into one event (Filebeat ``multiline``), e.g. stack traces.

Runs after partial-line reassembly, on the events of one file. A line is a *continuation* when
``bool(pattern.search(message)) != negate``. With ``match: after`` a continuation joins the group before
it and any other line starts a new group; with ``match: before`` continuations start or extend a group
that the next other line completes (and joins). Groups are kept per ``stream`` (events without one share
a group). A group becomes one event: its first event's dict, with ``message`` the lines joined by ``"\\n"``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from agent.config.units import ByteSize, Duration

# Java: the exception line (a dotted class name ending in Exception, Error or Throwable), its frames and
# causes continue the log line before them:
#   2026-11-22 17:00:00.123 ERROR [main] c.e.OrderService - order 42 failed
#   java.lang.IllegalStateException: payment declined
#   \tat com.example.OrderService.pay(OrderService.java:42)
#   Caused by: java.io.IOException: connection reset
#   \t... 12 more
_JAVA = (
    r"^(?:\s+at |\s+\.\.\. \d+ (?:more|common frames omitted)|\s*Caused by: |\s*Suppressed: "
    r"|(?:[A-Za-z_$][\w$]*\.)+[A-Za-z_$][\w$]*(?:Exception|Error|Throwable)(?::|$))"
)
# Python: a traceback, chained ones included, continues the log line before it:
#   ERROR:app:order 42 failed
#   Traceback (most recent call last):
#     File "app.py", line 7, in pay
#   KeyError: 'card'
#   <blank>
#   During handling of the above exception, another exception occurred:
_PYTHON = (
    r"^(?:Traceback \(most recent call last\):|\s|$|During handling of the above exception"
    r"|The above exception was the direct cause|[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)(?::|$))"
)
# Go: a panic and its goroutine dump continue the ``panic:`` (or ``fatal error:``) line:
#   panic: runtime error: invalid memory address or nil pointer dereference
#   [signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x47b8f3]
#   <blank>
#   goroutine 1 [running]:
#   main.(*Server).handle(0x0, 0xc000012345)
#   \t/app/server.go:42 +0x13
#   created by main.main in goroutine 1
#   exit status 2
_GO = (
    r"^(?:\s|$|goroutine \d+ |created by |\[signal |exit status \d+|\.\.\.additional frames elided\.\.\."
    r"|[\w./*()\[\]-]+\(.*\)$)"
)
PRESETS = {"java": _JAVA, "python": _PYTHON, "go": _GO}


class MultilineConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How lines are grouped: exactly one of ``preset`` and ``start_pattern``.

    ``preset`` joins the stack traces of ``java``, ``python`` or ``go`` to the line before them (each preset
    is a continuation pattern, so ``negate`` and ``match`` are ignored). ``start_pattern`` is a regex searched
    in each message, used with ``negate`` and ``match`` as Filebeat does: the defaults (``negate: true``,
    ``match: after``) make it mark the first line of each event, e.g. ``'^\\d{4}-\\d{2}-\\d{2}'``. A group is
    emitted once no line joined it for ``timeout``; past ``max_lines`` or ``max_bytes`` (of the joined
    message: a line alone stays as the decoder bounded it) it stops growing, is marked ``"truncated": True``
    and its further lines are dropped.
    """

    preset: Literal["java", "python", "go"] | None = None
    """Join the stack traces of java, python or go to the line before them (negate and match are then ignored)."""
    start_pattern: str | None = None
    """Regex searched in each message; with the defaults it marks the first line of an event, e.g.
    '^\\d{4}-\\d{2}-\\d{2}'.
    """
    negate: bool = True
    """Apply match to the lines that do not match start_pattern (Filebeat's negate)."""
    match: Literal["after", "before"] = "after"
    """after: matching lines join the line before them; before: they join the line after them (Filebeat's match)."""
    timeout: Duration = Duration(1.0)
    """A group is emitted once no line joined it for this long."""
    max_lines: int = 500
    """Lines per group at most; past it the group is marked truncated: true and further lines are dropped."""
    max_bytes: ByteSize = ByteSize(10 * 1024 * 1024)
    """Bytes of the joined message at most; past it the group is marked truncated: true."""

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.start_pattern is None):
            raise ValueError("multiline needs exactly one of preset and start_pattern")
        if self.start_pattern is not None:
            try:
                re.compile(self.start_pattern)
            except re.error as exc:
                raise ValueError(f"start_pattern {self.start_pattern!r} is not a valid regex: {exc}") from None
        if self.max_lines < 1:
            raise ValueError(f"max_lines must be at least 1, got {self.max_lines}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {self.max_bytes}")


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _utf8_cut(text: str, size: int) -> str:
    """The longest prefix of ``text`` that is at most ``size`` bytes in UTF-8."""
    if text.isascii():
        return text[:size]
    return text.encode("utf-8", "surrogatepass")[:size].decode("utf-8", "ignore")


class _Group:
    """The lines held for one stream; ``lines`` stays None while the group is its first event alone."""

    __slots__ = ("cut", "event", "last", "lines", "size", "start", "truncated")

    def __init__(self, event: dict, start: int, now: float) -> None:
        self.event = event
        self.start = start  # file offset of the first event's first line
        self.last = now  # when the last line joined
        self.lines: list[str] | None = None
        self.size = 0  # UTF-8 bytes of the joined message, once lines is set
        self.truncated = False  # full at max_lines or max_bytes: further lines are dropped
        self.cut = False  # a line that joined was itself cut short (marked "truncated" by the decoder)


class Multiline:
    """Groups the events of one file, per stream, as ``MultilineConfig`` says.

    ``feed`` appends the groups that events complete; a group still open is held until a later event,
    ``flush_expired`` or ``flush`` completes it. ``safe_offset`` tells the checkpoint how far the file is
    fully emitted, held groups included. ``truncated`` counts the groups cut at ``max_lines``/``max_bytes``.
    """

    __slots__ = ("_after", "_groups", "_max_bytes", "_max_lines", "_negate", "_search", "_timeout", "truncated")

    def __init__(self, config: MultilineConfig) -> None:
        if config.preset is not None:
            pattern, self._negate, self._after = PRESETS[config.preset], False, True
        else:
            pattern, self._negate, self._after = config.start_pattern or "", config.negate, config.match == "after"
        self._search = re.compile(pattern).search
        self._timeout = config.timeout
        self._max_lines = config.max_lines
        self._max_bytes = config.max_bytes
        self._groups: dict[Any, _Group] = {}
        self.truncated = 0

    def feed(self, events: list[dict], out: list[dict], now: float) -> None:
        """Group ``events`` (each with the file ``offset`` it starts at); append completed groups to ``out``."""
        groups = self._groups
        search = self._search
        negate = self._negate
        after = self._after
        join = self._join
        finish = self._finish
        append = out.append
        for event in events:
            message = event["message"]
            stream = event.get("stream")
            group = groups.get(stream)
            if (search(message) is None) == negate:  # a continuation
                if group is None:
                    groups[stream] = _Group(event, event["offset"], now)
                else:
                    join(group, event, now)
            elif after:
                if group is None:
                    groups[stream] = _Group(event, event["offset"], now)
                    continue
                append(group.event if group.lines is None else finish(group))
                group.event = event  # the group starts again from this line
                group.start = event["offset"]
                group.last = now
            elif group is None:
                append(event)
            else:
                del groups[stream]
                join(group, event, now)
                append(finish(group))

    def _join(self, group: _Group, event: dict, now: float) -> None:
        """Add an event's line to ``group``, or cut and mark it once it is full."""
        group.last = now
        if "truncated" in event:  # the line itself was cut short
            group.cut = True
        if group.truncated:
            return
        message = event["message"]
        lines = group.lines
        if lines is None:
            first = group.event["message"]
            lines = group.lines = [first]
            group.size = _utf8_len(first)
        size = _utf8_len(message) + 1
        room = self._max_bytes - group.size
        if len(lines) >= self._max_lines:
            room = 0
        elif size <= room:
            lines.append(message)
            group.size += size
            return
        if room > 1:
            lines.append(_utf8_cut(message, room - 1))
            group.size = self._max_bytes
        group.truncated = True
        self.truncated += 1

    @staticmethod
    def _finish(group: _Group) -> dict:
        """The group's event, its lines joined; the group is left empty, ready to start again."""
        event = group.event
        if group.lines is not None:
            event["message"] = "\n".join(group.lines)
            if group.truncated or group.cut:
                event["truncated"] = True
            group.lines = None
            group.truncated = group.cut = False
        return event

    def safe_offset(self, decoder_safe_offset: int) -> int:
        """The decoder's safe offset, or the start of the earliest held group if that is before it."""
        return min([decoder_safe_offset, *(group.start for group in self._groups.values())])

    def flush_expired(self, now: float, out: list[dict]) -> None:
        """Append the groups no line has joined for longer than ``timeout`` before ``now``."""
        groups = self._groups
        timeout = self._timeout
        for stream in [stream for stream, group in groups.items() if now - group.last > timeout]:
            out.append(self._finish(groups.pop(stream)))

    def flush(self, out: list[dict]) -> None:
        """Append every held group, in file order."""
        out += [self._finish(group) for group in sorted(self._groups.values(), key=lambda group: group.start)]
        self._groups.clear()
