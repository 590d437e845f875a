"""Dead letters: events a peer refused for good, kept as NDJSON with the reason."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import IO, Any

import orjson

from agent.codecs.encoding import dumps_lenient

log = logging.getLogger("agent.delivery")


class DeadLetterFile:
    """Appends ``{"time", "sink", "reason", "error", "event"}`` lines, flushed per write.

    Nothing touches the disk until the first write (building a sink, as
    `agent validate` does, creates no directory or file). A path that cannot
    be opened or written is logged, and :meth:`write` says so: the caller
    counts those events as lost; the next write tries again.
    """

    def __init__(self, path: str, sink_id: str) -> None:
        self.path = path
        self.sink_id = sink_id
        self._fh: IO[bytes] | None = None

    def write(self, entries: list[tuple[Any, str, Any]]) -> bool:
        """``entries``: (event, reason, the peer's error) triples; False if they could not be written."""
        now = time.time()
        lines = [dumps_lenient({"time": now, "sink": self.sink_id, "reason": reason, "error": error, "event": event},
                               orjson.OPT_APPEND_NEWLINE)
                 for event, reason, error in entries]
        try:
            if self._fh is None:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "ab")
            self._fh.write(b"".join(lines))
            self._fh.flush()
        except OSError as exc:
            log.error("cannot write the dead letter file; these rejected events are lost", extra={
                "component_id": self.sink_id, "path": self.path, "events": len(entries), "error": str(exc)})
            self.close()
            return False
        return True

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass
