"""Container log line formats: Docker json-file, CRI (containerd, CRI-O) and raw lines, to event dicts.

A decoder takes the complete lines of one file (framed by ``LineSplitter``, without their newline) and
turns them into events, reassembling the records the runtime split into several lines: Docker's 16 KiB
pieces whose ``log`` lacks the final ``\\n``, and CRI's ``P`` lines. A malformed line is never lost:
it becomes ``{**extra, "message": <the line>, "parse_error": <reason>}`` and counts in ``errors``.
Every event carries ``offset``: where its first line starts in the file (a stable identity, used for
Elasticsearch ``_id`` s and by multiline grouping), taken from the ``starts`` the line splitter gives, so
that lines it cut short do not shift the offsets after them. An event built from a line it cut, or from
a message cut at ``max_message_bytes``, is marked ``"truncated": True``.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from datetime import datetime
from time import monotonic
from typing import Annotated, Any, Protocol

import msgspec
import orjson

_CRI_LINE = re.compile(rb"\d{4}-\d\d-\d\dT\S+ (?:stdout|stderr) [^ ]+(?: |$)")
_STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}
# RFC 3339 date-times with an offset, as msgspec parses them (in C, ~30 ns each, calendar checked). Docker writes
# RFC3339Nano (2016-10-20T18:39:20.57606443Z); "t", "z" and numeric offsets are accepted too.
_TIMES = list[Annotated[datetime, msgspec.Meta(tz=True)]]


def detect_format(first_line: bytes) -> str:
    """``"docker"`` for a JSON object with a ``"log"`` key, ``"cri"`` for ``<RFC3339 time> <stream> <tags> ...``,
    else ``"raw"`` (an application's own JSON lines included: they are kept whole, not read as Docker's)."""
    if first_line.lstrip()[:1] == b"{" and b'"log"' in first_line:
        return "docker"
    if _CRI_LINE.match(first_line):
        return "cri"
    return "raw"


class LineDecoder(Protocol):
    """Turns complete lines of one file into events; see ``DockerDecoder`` for the offset contract."""

    errors: int
    truncated: int

    def decode(self, lines: list[bytes], starts: list[int], out: list[dict]) -> int:
        """Append the events completed by ``lines`` to ``out``, each with its ``offset``; return the safe offset.

        ``starts`` is where each line starts in the file, then where the line after the last one starts.
        """
        ...

    def decode_cut(self, lines: list[bytes], starts: list[int], cut: list[int], out: list[dict]) -> int:
        """``decode`` where the lines at the indexes ``cut`` were cut short: their events are marked
        ``"truncated": True`` (a record one of them is part of included)."""
        ...

    def flush(self, out: list[dict]) -> None:
        """Append the records still held, marked ``"partial": True``, and forget them."""
        ...

    def flush_expired(self, deadline: float, out: list[dict]) -> int | None:
        """``flush`` for the records no line has extended since ``deadline`` (a ``time.monotonic()``); return the
        safe offset after it, or None if no record was that old."""
        ...


def _template(extra: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``extra`` followed by ``keys`` (None): an event's keys, in order, for the decoders' fast paths to copy.

    A copy of a dict that already holds every key of the event, then stores that only replace values, costs
    less than copying ``extra`` and inserting (which grows the copy's table) and gives the same keys in the
    same order.
    """
    return {**extra, **dict.fromkeys(keys)}


def _cut_utf8(data: bytes, size: int) -> bytes:
    """``data[:size]``, shortened by up to 3 bytes so that it does not end inside a UTF-8 character."""
    if size < len(data):
        stop = max(size - 3, 0)
        while size > stop and data[size] & 0xC0 == 0x80:
            size -= 1
    return data[:size]


class _Record:
    """A record being reassembled from several lines of one stream."""

    __slots__ = ("attrs", "full", "last", "pieces", "size", "start", "time", "truncated")

    def __init__(self, start: int, time: Any, attrs: Any) -> None:
        self.start = start  # file offset of its first line
        self.last = 0.0  # time.monotonic() when a line last extended it
        self.time = time  # the first piece's
        self.attrs = attrs
        self.pieces: list[Any] = []
        self.size = 0  # bytes kept in pieces
        self.full = False  # cut at max_message_bytes: further pieces are dropped
        self.truncated = False  # some of it is missing: the event says so


class _Reassembler:
    """What the Docker and CRI decoders share: per-stream partial records bounded by ``max_message_bytes``."""

    __slots__ = ("_cut", "_end", "_extra", "_free", "_held", "_template", "errors", "max_message_bytes", "truncated")

    def __init__(self, extra: dict[str, Any], max_message_bytes: int) -> None:
        self._extra = extra
        self._template = _template(extra, "message", "stream", "time", "offset")  # the fast paths' events
        self._held: dict[Any, _Record] = {}
        self._free = set(_STREAMS.values())  # "stdout" and "stderr" unless a record of theirs is held
        self.max_message_bytes = max_message_bytes
        self.errors = 0
        self.truncated = 0
        self._cut = False  # the line being decoded was cut short by the line splitter
        self._end = 0  # where the lines last decoded end

    def decode(self, lines: list[bytes], starts: list[int], out: list[dict]) -> int:
        raise NotImplementedError

    def _line(self, line: bytes, pos: int, out: list[dict]) -> None:
        raise NotImplementedError

    def decode_cut(self, lines: list[bytes], starts: list[int], cut: list[int], out: list[dict]) -> int:
        """As ``LineDecoder.decode_cut``: the runs between cut lines decode as usual, a cut line on the slow path."""
        begin = 0
        for index in cut:
            self.decode(lines[begin:index], starts[begin:index + 1], out)
            self._cut = True
            try:
                self._line(lines[index], starts[index], out)
            finally:
                self._cut = False
            begin = index + 1
        return self.decode(lines[begin:], starts[begin:], out)

    def _safe_offset(self, end: int) -> int:
        """The start of the earliest record still held, else ``end`` (where the lines just decoded end)."""
        self._end = end
        held = self._held
        return min(record.start for record in held.values()) if held else end

    def _keep(self, record: _Record, piece: bytes) -> None:
        """Add ``piece`` (UTF-8) to ``record`` unless that grows it past ``max_message_bytes``; then cut and mark it."""
        if record.full:
            return
        room = self.max_message_bytes - record.size
        if len(piece) > room:
            piece = _cut_utf8(piece, room)
            record.full = record.truncated = True
            self.truncated += 1
        record.pieces.append(piece)
        record.size += len(piece)

    def _piece(self, stream: Any, piece: bytes, last: bool, pos: int, time: Any, attrs: Any, out: list[dict]) -> None:
        """Reassemble ``piece`` (UTF-8, from the line at ``pos``) into the record of ``stream``; emit it if ``last``."""
        record = self._held.get(stream)
        if record is None:
            if last:
                out.append(self._event(piece.decode("utf-8", "replace"), stream, time, attrs, pos))
                if self._cut:
                    out[-1]["truncated"] = True
                return
            record = self._held[stream] = _Record(pos, time, attrs)
            self._free.discard(stream)
        if self._cut:
            record.truncated = True
        record.last = monotonic()
        self._keep(record, piece)
        if last:
            del self._held[stream]
            if stream in _STREAMS.values():
                self._free.add(stream)
            out.append(self._finish(stream, record))

    def _reject_bad_times(self, lines: list[bytes], starts: list[int], out: list[dict], first: int) -> None:
        """Turn the events from ``out[first]`` on whose ``time`` is not RFC 3339 back into their raw lines, marked."""
        for index in range(first, len(out)):
            event = out[index]
            if "parse_error" not in event and (reason := _time_error(event.get("time"))) is not None:
                pos = event["offset"]
                out[index] = self._bad(lines[bisect_left(starts, pos)], reason, pos)

    def _error(self, line: bytes, reason: str, pos: int, out: list[dict]) -> None:
        out.append(self._bad(line, reason, pos))

    def _bad(self, line: bytes, reason: str, pos: int) -> dict:
        """The event of a malformed line: the line as it is, marked with ``parse_error`` (counted in ``errors``)."""
        self.errors += 1
        event = {**self._extra, "message": line.decode("utf-8", "replace"), "parse_error": reason, "offset": pos}
        if self._cut:
            event["truncated"] = True
        return event

    def _event(self, message: str, stream: Any, time: Any, attrs: Any, offset: int) -> dict:
        event = {**self._extra, "message": message}
        if stream is not None:
            event["stream"] = stream
        if time is not None:
            event["time"] = time
        if attrs is not None:
            event["attrs"] = attrs
        event["offset"] = offset
        return event

    def _finish(self, stream: Any, record: _Record) -> dict:
        event = self._event(b"".join(record.pieces).decode("utf-8", "replace"), stream, record.time, record.attrs,
                            record.start)
        if record.truncated:
            event["truncated"] = True
        return event

    def flush(self, out: list[dict]) -> None:
        """Append every held record, marked ``"partial": True``, in file order, and forget them."""
        self._flush(list(self._held), out)

    def flush_expired(self, deadline: float, out: list[dict]) -> int | None:
        """As ``LineDecoder.flush_expired``: what nothing completed in time is emitted, marked partial."""
        expired = [stream for stream, record in self._held.items() if record.last < deadline]
        if not expired:
            return None
        self._flush(expired, out)
        return self._safe_offset(self._end)

    def _flush(self, streams: list[Any], out: list[dict]) -> None:
        """Append the records of ``streams``, marked ``"partial": True``, in file order, and forget them."""
        for stream, record in sorted([(stream, self._held.pop(stream)) for stream in streams],
                                     key=lambda item: item[1].start):
            event = self._finish(stream, record)
            event["partial"] = True
            out.append(event)
            if stream in _STREAMS.values():
                self._free.add(stream)


class DockerDecoder(_Reassembler):
    """Docker json-file lines: ``{"log": "...\\n", "stream": "stdout", "time": "..."[, "attrs": {...}]}``.

    Events are ``{**extra, "message": log without its final "\\n", "stream", "time"[, "attrs"]}``. A ``log``
    without the final ``\\n`` is a piece of a longer line: pieces of the same stream are concatenated until
    one ends in ``\\n``, the event keeps the first piece's ``time``, and a message that would grow past
    ``max_message_bytes`` is cut there, marked ``"truncated": True`` and counted in ``truncated`` (the rest
    of its pieces are dropped, never held). A single complete line is only bounded by the line splitter.
    A line whose ``time`` is missing or not an RFC 3339 date-time is malformed (the kubelet rejects it too):
    kept raw with ``parse_error``, so that such a time never picks an index or sets ``@timestamp``. The times
    of a read are checked together, after its lines are decoded (one msgspec call, not one per line).

    Safe offset: ``decode`` returns the file offset of the first line of the earliest record still held,
    or the end of ``lines`` when it holds nothing. Every byte before it is in an event already appended;
    reading the file again from there re-produces every record not yet emitted.
    """

    __slots__ = ("_template_attrs",)

    def __init__(self, extra: dict[str, Any], max_message_bytes: int) -> None:
        super().__init__(extra, max_message_bytes)
        self._template_attrs = _template(extra, "message", "stream", "time", "attrs", "offset")

    def decode(self, lines: list[bytes], starts: list[int], out: list[dict]) -> int:
        """Append the events ``lines`` complete to ``out``, each with its ``offset``; return the safe offset."""
        loads = orjson.loads
        copy = self._template.copy
        copy_attrs = self._template_attrs.copy
        free = self._free
        append = out.append
        first = len(out)
        times: list[Any] = []  # of the events the fast path appends: checked together, after the loop
        add_time = times.append
        for line, pos in zip(lines, starts, strict=False):  # starts has one more: the end
            try:
                rec = loads(line)
                log = rec["log"]
                if log[-1:] == "\n" and (stream := rec["stream"]) in free:
                    if "attrs" in rec:
                        event = copy_attrs()  # then stores that replace: see _template
                        event["attrs"] = rec["attrs"]
                    else:
                        event = copy()
                    event["message"] = log[:-1]
                    event["stream"] = stream
                    event["time"] = time = rec["time"]
                    add_time(time)
                    event["offset"] = pos
                    append(event)
                    continue
            except (ValueError, KeyError, TypeError):
                pass
            self._line(line, pos, out)
        if times and not _all_times(times):
            self._reject_bad_times(lines, starts, out, first)
        return self._safe_offset(starts[-1])

    def _line(self, line: bytes, pos: int, out: list[dict]) -> None:
        """A line the fast path leaves alone: a piece of a split line, a missing field, bad JSON or UTF-8."""
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            try:  # orjson rejects invalid UTF-8: keep the JSON, replace the bad bytes
                rec = orjson.loads(line.decode("utf-8", "replace"))
            except orjson.JSONDecodeError:
                self._error(line, "invalid JSON", pos, out)
                return
        if type(rec) is not dict:
            self._error(line, "not a JSON object", pos, out)
        elif type(log := rec.get("log")) is not str:
            self._error(line, "no log string", pos, out)
        elif (stream := rec.get("stream")) is not None and type(stream) is not str:
            self._error(line, "stream is not a string", pos, out)
        elif (reason := _time_error(time := rec.get("time"))) is not None:
            self._error(line, reason, pos, out)
        elif log[-1:] == "\n":
            self._piece(stream, log[:-1].encode(), True, pos, time, rec.get("attrs"), out)
        else:
            self._piece(stream, log.encode(), False, pos, time, rec.get("attrs"), out)


def _all_times(times: list[Any]) -> bool:
    """Whether every item of ``times`` is an RFC 3339 date-time string (the kubelet rejects Docker lines without)."""
    try:
        msgspec.convert(times, _TIMES)
    except msgspec.ValidationError:
        return False
    return " " not in "".join(times)  # msgspec also takes a space for the "T", as RFC 3339's grammar does not


def _time_error(time: Any) -> str | None:
    """Why a Docker or CRI line's ``time`` is not an RFC 3339 date-time, or None."""
    if time is None:
        return "no time"
    if type(time) is not str:
        return "time is not a string"
    return None if _all_times([time]) else "time is not RFC 3339"


class CriDecoder(_Reassembler):
    """CRI lines: ``<RFC3339 time> <stdout|stderr> <tags> <content>``, tags ``P`` or ``F`` then ``:``-separated extras.

    Events are ``{**extra, "message": content, "stream", "time"}``. ``P`` pieces of a stream are concatenated
    (no separator: the kubelet trimmed their newline) up to and including the ``F`` piece; the event keeps
    the first piece's ``time``. A line that ends after the tags has empty content. A reassembled message is
    bounded by ``max_message_bytes`` exactly as in ``DockerDecoder``, and a line whose time is not RFC 3339
    is kept raw with ``parse_error`` as there (the kubelet rejects those lines too).

    Safe offset: ``decode`` returns the file offset of the first line of the earliest record still held,
    or the end of ``lines`` when it holds nothing. Every byte before it is in an event already appended;
    reading the file again from there re-produces every record not yet emitted.
    """

    __slots__ = ()

    def decode(self, lines: list[bytes], starts: list[int], out: list[dict]) -> int:
        """Append the events ``lines`` complete to ``out``, each with its ``offset``; return the safe offset."""
        copy = self._template.copy
        held = self._held
        streams = _STREAMS
        append = out.append
        first = len(out)
        times: list[str] = []  # checked together after the loop, as in DockerDecoder
        add_time = times.append
        for line, pos in zip(lines, starts, strict=False):  # starts has one more: the end
            try:
                time, stream, tags, content = line.split(b" ", 3)
                if tags == b"F" and (not held or streams[stream] not in held):
                    event = copy()  # as in DockerDecoder
                    event["message"] = content.decode("utf-8", "replace")
                    event["stream"] = streams[stream]
                    event["time"] = text = time.decode("utf-8", "replace")
                    add_time(text)
                    event["offset"] = pos
                    append(event)
                    continue
            except (ValueError, KeyError):
                pass
            self._line(line, pos, out)
        if times and not _all_times(times):
            self._reject_bad_times(lines, starts, out, first)
        return self._safe_offset(starts[-1])

    def _line(self, line: bytes, pos: int, out: list[dict]) -> None:
        """A line the fast path leaves alone: a ``P`` piece, a held stream, extra tags, no content, malformed."""
        parts = line.split(b" ", 3)
        stream = _STREAMS.get(parts[1]) if len(parts) >= 3 else None
        flag = parts[2].split(b":", 1)[0] if stream is not None else None
        if flag != b"F" and flag != b"P":
            self._error(line, "not a CRI line", pos, out)
            return
        time = parts[0].decode("utf-8", "replace")
        if (reason := _time_error(time)) is not None:
            self._error(line, reason, pos, out)
            return
        content = parts[3] if len(parts) == 4 else b""
        self._piece(stream, content, flag == b"F", pos, time, None, out)


class RawDecoder:
    """Each line is one event, ``{**extra, "message": line}``; nothing is held, so the safe offset is the end."""

    __slots__ = ("_template", "errors", "truncated")

    def __init__(self, extra: dict[str, Any], max_message_bytes: int) -> None:
        """``max_message_bytes`` is accepted for a common signature: a raw line is bounded by the line splitter."""
        self._template = _template(extra, "message", "offset")
        self.errors = 0
        self.truncated = 0

    def decode(self, lines: list[bytes], starts: list[int], out: list[dict]) -> int:
        """Append one event per line to ``out``, each with its ``offset``; return the end offset."""
        copy = self._template.copy
        append = out.append
        for line, pos in zip(lines, starts, strict=False):  # starts has one more: the end
            event = copy()  # as in DockerDecoder
            event["message"] = line.decode("utf-8", "replace")
            event["offset"] = pos
            append(event)
        return starts[-1]

    def decode_cut(self, lines: list[bytes], starts: list[int], cut: list[int], out: list[dict]) -> int:
        """``decode``, then the events of the lines at the indexes ``cut`` marked ``"truncated": True``."""
        first = len(out)
        safe = self.decode(lines, starts, out)
        for index in cut:
            out[first + index]["truncated"] = True
        return safe

    def flush(self, out: list[dict]) -> None:
        """Nothing is ever held."""

    def flush_expired(self, deadline: float, out: list[dict]) -> int | None:
        """Nothing is ever held."""
        return None


DECODERS: dict[str, Callable[[dict[str, Any], int], LineDecoder]] = {
    "docker": DockerDecoder,
    "cri": CriDecoder,
    "raw": RawDecoder,
}
