"""The agent's own logs: JSON lines on stderr, errors rate-limited but never silenced.

Each record carries ``level``, ``message`` and, when given through
``extra={"component_id": ...}``, the component. The same message from the
same component is printed at most ``burst`` times per ``window`` seconds;
the next one printed after a quiet spell says how many were suppressed.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object per line; a secret in its text becomes ``<redacted>``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()  # JSON-escaped, as they appear in a line

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = self.formatException(record.exc_info)
        line = orjson.dumps(out, default=str).decode()
        for secret in self.secrets:  # as it reads inside a JSON string
            line = line.replace(secret, "<redacted>")
        return line


class RateLimitFilter(logging.Filter):
    """Lets through at most ``burst`` records per (component, message) and window; counts the rest."""

    def __init__(self, burst: int = 5, window: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (str(getattr(record, "component_id", "")), str(record.msg))
        now = time.monotonic()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window:
            suppressed = int(state[2]) if state else 0
            self._seen[key] = [now, 1, 0]
            if suppressed:
                record.suppressed = suppressed
            if len(self._seen) > 10_000:
                self._seen.clear()
            return True
        state[1] += 1
        if state[1] <= self.burst:
            return True
        state[2] += 1
        return False


_formatter = JsonFormatter()


def hide_secrets(values: set[str]) -> None:
    """Redact ``values`` (the API token) from every log line from now on."""
    _formatter.secrets |= {orjson.dumps(value).decode()[1:-1] for value in values if len(value) >= 4}


def setup_logging(level: str = "info") -> None:
    """Route the root logger to stderr as JSON lines with rate limiting."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter)
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
