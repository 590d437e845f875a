"""What the peers write: fixed-size lines for the agent, and one-line JSON reports for the parent.

Every peer process imports this at startup: standard library only.
"""

from __future__ import annotations

import json
import sys
from typing import Any

HOST = "127.0.0.1"
LINE_BYTES = 256  # including the newline, as in vector-test-harness
BUFFER_LINES = 16_384  # 4 MiB of lines per sendall
_WORDS = (b"GET", b"POST", b"/api/v1/orders", b"/healthz", b"status=200", b"status=404", b"user=42",
          b"region=eu-west-1", b"latency_ms=17", b"trace=9f86d081884c7d65", b"cache=miss", b"bytes=5120")


def build_lines(count: int, line_bytes: int = LINE_BYTES) -> bytes:
    """``count`` distinct printable lines of exactly ``line_bytes`` bytes each (newline included)."""
    out = bytearray()
    for i in range(count):
        line = bytearray(b"<134>1 2024-05-01T12:00:00.%06dZ bench app %d - - " % (i % 1_000_000, i))
        w = i
        while len(line) < line_bytes - 1:
            w = (w * 1103515245 + 12345) & 0x7FFFFFFF
            line += _WORDS[(w >> 16) % len(_WORDS)] + b" "
        out += line[: line_bytes - 1] + b"\n"
    return bytes(out)


NUMBER_DIGITS = 12  # numbered lines start with the line number, zero-padded, then a space


def numbered_lines(start: int, count: int, line_bytes: int = LINE_BYTES) -> bytes:
    """Lines ``start`` .. ``start + count - 1`` of exactly ``line_bytes`` bytes: ``%012d `` + body + newline."""
    bodies = _bodies(line_bytes)
    n = len(bodies)
    return b"".join([b"%012d %s" % (i, bodies[i % n]) for i in range(start, start + count)])


_BODIES: dict[int, list[bytes]] = {}


def _bodies(line_bytes: int) -> list[bytes]:
    """A pool of line bodies (newline included) that fill a numbered line to ``line_bytes``."""
    if line_bytes not in _BODIES:
        size = line_bytes - NUMBER_DIGITS - 1
        _BODIES[line_bytes] = [line[:size - 1] + b"\n" for line in build_lines(1024, line_bytes).split(b"\n")[:-1]]
    return _BODIES[line_bytes]


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

