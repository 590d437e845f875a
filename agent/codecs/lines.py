"""Newline framing of a byte stream with a hard bound on line length."""

from __future__ import annotations

from itertools import accumulate, count
from operator import add


def line_starts(lines: list[bytes], start: int) -> list[int]:
    """The offset of each line, then of the end of the last, when each line is followed by its newline."""
    return list(map(add, accumulate(map(len, lines), initial=start), count()))


class LineSplitter:
    """Turns chunks of a stream into complete lines (without the newline).

    A line longer than ``max_line_bytes`` is cut to that length, emitted,
    counted in ``truncated``, and the rest of it is skipped up to the next
    newline, so memory never grows past the bound whatever the input. The
    indexes of the lines the last ``feed`` cut are in ``cut`` (usually empty).

    ``offset`` is the stream offset of the end of what was fed (set it when
    starting mid-stream); ``starts`` gives where each line of the last
    ``feed`` or ``flush`` begins in the stream, cut lines and skipped bytes
    accounted for.
    """

    __slots__ = ("_origin", "_partial", "_skip_from", "_skipping", "_starts", "cut", "max_line_bytes", "offset",
                 "truncated")

    def __init__(self, max_line_bytes: int, offset: int = 0) -> None:
        self.max_line_bytes = max_line_bytes
        self.truncated = 0
        self.offset = offset
        self.cut: list[int] = []
        self._partial = b""
        self._skipping = False
        self._skip_from = offset  # while skipping: where the line being skipped starts
        self._origin = offset  # where the first line of the last feed starts
        self._starts: list[int] | None = None  # set when lines were cut: then no arithmetic on lengths holds

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk``; an unterminated tail is kept for the next call."""
        origin = self.offset - len(self._partial)
        self.offset += len(chunk)
        if self._starts is not None or self.cut:
            self._starts, self.cut = None, []
        if self._skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                self._starts = [self._skip_from]
                return []
            self._skipping = False
            chunk = chunk[cut + 1:]
            origin = self.offset - len(chunk)
        self._origin = origin
        data = self._partial + chunk if self._partial else chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        limit = self.max_line_bytes
        if len(data) > limit:
            # a line after the first lies within ``chunk``: longer than limit only if the chunk is
            long_lines = bool(lines) and (len(lines[0]) > limit
                                          or (len(chunk) > limit and max(map(len, lines)) > limit))
            if long_lines or len(self._partial) > limit:
                self._starts = line_starts(lines, origin)
                if long_lines:
                    self.cut = [i for i, line in enumerate(lines) if len(line) > limit]
                    lines = [self._cut(line) for line in lines]
                if len(self._partial) > limit:  # its end is not known yet: "next line" stays at its start
                    self.cut.append(len(lines))
                    lines.append(self._cut(self._partial))
                    self._starts.append(self._starts[-1])
                    self._skip_from = self._starts[-1]
                    self._partial = b""
                    self._skipping = True
        return lines

    def starts(self, lines: list[bytes]) -> list[int]:
        """For ``lines`` (what the last ``feed`` or ``flush`` returned), where each starts in the stream, then
        where the next line starts (for a cut line whose rest is still being skipped: where that line starts)."""
        return self._starts if self._starts is not None else line_starts(lines, self._origin)

    def _cut(self, line: bytes) -> bytes:
        if len(line) <= self.max_line_bytes:
            return line
        self.truncated += 1
        return line[: self.max_line_bytes]

    @property
    def pending(self) -> int:
        """Bytes of an unterminated line waiting for its newline."""
        return len(self._partial)

    def skip_to_next_line(self) -> None:
        """Discard input up to the next newline (reading starts in the middle of a line)."""
        self._partial = b""
        self._skipping = True
        self._skip_from = self.offset

    def flush(self) -> list[bytes]:
        """At end of stream: the unterminated last line, if any."""
        partial, self._partial = self._partial, b""
        self._skipping = False
        self.cut = []
        self._origin = self.offset - len(partial)
        self._starts = [self._origin, self.offset]
        return [partial] if partial else []
