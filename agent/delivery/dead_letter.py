"""Dead letters: events a peer refused for good, kept as NDJSON with the reason."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from agent.codecs.encoding import dumps_lenient


class DeadLetterFile:
    """Appends ``{"time", "sink", "reason", "error", "event"}`` lines, flushed per write."""

    def __init__(self, path: str, sink_id: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.sink_id = sink_id
        self._fh = open(path, "ab")

    def write(self, entries: list[tuple[Any, str, Any]]) -> None:
        """``entries``: (event, reason, the peer's error) triples."""
        now = time.time()
        lines = [dumps_lenient({"time": now, "sink": self.sink_id, "reason": reason, "error": error, "event": event},
                               orjson.OPT_APPEND_NEWLINE)
                 for event, reason, error in entries]
        self._fh.write(b"".join(lines))
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
