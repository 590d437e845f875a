"""Newline framing of a byte stream with a hard bound on line length."""

from __future__ import annotations


class LineSplitter:
    """Turns chunks of a stream into complete lines (without the newline).

    A line longer than ``max_line_bytes`` is cut to that length, emitted,
    counted in ``truncated``, and the rest of it is skipped up to the next
    newline, so memory never grows past the bound whatever the input.
    """

    __slots__ = ("_partial", "_skipping", "max_line_bytes", "truncated")

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.truncated = 0
        self._partial = b""
        self._skipping = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk``; an unterminated tail is kept for the next call."""
        if self._skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                return []
            self._skipping = False
            chunk = chunk[cut + 1:]
        data = self._partial + chunk if self._partial else chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        limit = self.max_line_bytes
        if len(data) > limit:
            if lines and max(map(len, lines)) > limit:
                lines = [self._cut(line) for line in lines]
            if len(self._partial) > limit:
                lines.append(self._cut(self._partial))
                self._partial = b""
                self._skipping = True
        return lines

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

    def flush(self) -> list[bytes]:
        """At end of stream: the unterminated last line, if any."""
        partial, self._partial = self._partial, b""
        self._skipping = False
        return [partial] if partial else []
