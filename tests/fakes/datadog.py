"""A fake of Datadog's intake APIs (logs v2, metrics v2 series, key validation) for the agent's tests.

In-process: `async with FakeDatadog(api_key="k") as dd:` then send to `dd.url` with `DD-API-KEY: k`.
As a process: `python tests/fakes/datadog.py --port N [--api-key K] [--latency-ms X]` prints `ready <port>`.
Every documented limit the sender breaks is appended to `dd.violations`, whatever the answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

if __package__ in (None, ""):  # run as a script: make `fakes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fakes.base import (
    RECORD,
    BodyError,
    FakeHTTPServer,
    RecordedRequest,
    ScriptedFailure,
    decode_body,
    read_limited,
    serve_main,
)

LOGS_PATH = "/api/v2/logs"
SERIES_PATH = "/api/v2/series"
VALIDATE_PATH = "/api/v1/validate"
LOG_ENCODINGS = frozenset({"identity", "gzip", "deflate"})
SERIES_ENCODINGS = frozenset({"identity", "gzip", "deflate", "zstd1"})
RESERVED_STRING_FIELDS = ("ddsource", "ddtags", "hostname", "service", "status")
LOG_DATE_FIELDS = ("@timestamp", "timestamp", "_timestamp", "date", "Timestamp", "eventTime", "published_date")
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
          413: "Payload Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
          500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Rejected(Exception):
    """A request the intake refuses: status, human detail and the violation to record (if any)."""

    def __init__(self, status: int, detail: str, violation: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.violation = violation


class FakeDatadog(FakeHTTPServer):
    """Datadog's logs intake (`POST /api/v2/logs`), metrics intake (`POST /api/v2/series`) and
    `GET /api/v1/validate`, enforcing the documented limits.

    Script trouble with `fail_next_requests()`, `slow()`, `drop_next_requests()`, `go_down()`;
    inspect with `logs`, `series`, `requests`, `violations` and `truncated_logs`.
    """

    ingest_suffixes = (LOGS_PATH, SERIES_PATH)
    MAX_LOG_PAYLOAD = 5_000_000  # "5MB" uncompressed per request
    MAX_LOG_BYTES = 1_000_000  # "1MB" per log: larger ones are truncated, still 2xx
    MAX_LOG_ENTRIES = 1000  # per array
    MAX_LOG_AGE = 18 * 3600
    TOO_MANY_ENTRIES_STATUS = 400  # undocumented: the docs give the limit, not the answer
    MAX_SERIES_PAYLOAD = 512_000  # compressed, as sent
    MAX_SERIES_DECOMPRESSED = 5_242_880
    MAX_POINT_FUTURE = 600
    MAX_POINT_PAST = 3600

    def __init__(
        self,
        api_key: str = "fake-datadog-api-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(host=host, port=port, latency_ms=latency_ms)
        self.api_key = api_key
        self.clock = clock
        self.logs: list[dict[str, Any]] = []
        self.series: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.truncated_logs: list[dict[str, Any]] = []  # {"index": position in logs, "original_size": bytes}

    def reset(self) -> None:
        """Forget received data, requests, violations and scripted trouble (the API key stays)."""
        self.logs.clear()
        self.series.clear()
        self.violations.clear()
        self.truncated_logs.clear()
        self.requests.clear()
        self.clear_failures()

    @property
    def log_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == LOGS_PATH]

    @property
    def series_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == SERIES_PATH]

    # -- HTTP ------------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post(LOGS_PATH, self._logs)
        app.router.add_post(SERIES_PATH, self._series)
        app.router.add_get(VALIDATE_PATH, self._validate)

    def not_found(self, request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
        return web.json_response({"errors": [TITLES.get(exc.status, "Not Found")]}, status=exc.status)

    async def _validate(self, request: web.Request) -> web.Response:
        key = request.headers.get("DD-API-KEY") or request.query.get("api_key")
        if key != self.api_key:
            return web.json_response({"errors": ["Forbidden"]}, status=403)
        return web.json_response({"valid": True})

    async def _logs(self, request: web.Request) -> web.Response:
        try:
            self._check_logs_key(request)
            failure = self.take_failure(request)
            if failure is not None:
                return self._scripted(failure, logs=True)
            body = await self._read(request, LOG_ENCODINGS, self.MAX_LOG_PAYLOAD, self.MAX_LOG_PAYLOAD, "logs")
            entries = self._parse_logs(request, body)
        except Rejected as e:
            return self._reject(e, logs=True)
        self._accept_logs(entries, request.query.get("ddtags"))
        return web.json_response({}, status=202)

    async def _series(self, request: web.Request) -> web.Response:
        try:
            if request.headers.get("DD-API-KEY") != self.api_key:
                raise Rejected(403, "Forbidden")
            failure = self.take_failure(request)
            if failure is not None:
                return self._scripted(failure, logs=False)
            body = await self._read(request, SERIES_ENCODINGS, self.MAX_SERIES_PAYLOAD, self.MAX_SERIES_DECOMPRESSED, "series")
            series = self._parse_series(request, body)
        except Rejected as e:
            return self._reject(e, logs=False)
        self.series.extend(series)
        return web.json_response({"errors": []}, status=202)

    def _check_logs_key(self, request: web.Request) -> None:
        key = request.headers.get("DD-API-KEY")
        if not key:
            raise Rejected(401, "API key is missing")
        if key != self.api_key:
            raise Rejected(403, "API key is invalid")

    async def _read(self, request: web.Request, encodings: frozenset[str], raw_limit: int, limit: int, what: str) -> bytes:
        rec = request[RECORD]
        try:
            raw = await read_limited(request, raw_limit)
        except BodyError:
            size = request.content_length or raw_limit + 1
            raise Rejected(413, "Payload too large", f"{what}: payload of {size} bytes as sent exceeds {raw_limit}") from None
        rec.raw_size = len(raw)
        encoding = request.headers.get("Content-Encoding")
        try:
            body = decode_body(raw, encoding, limit, encodings)
        except BodyError as e:
            if e.kind == "too_large":
                raise Rejected(413, "Payload too large", f"{what}: decompressed payload exceeds {limit} bytes") from None
            if e.kind == "unsupported_encoding":
                raise Rejected(415, f"Unsupported Content-Encoding {encoding!r}", f"{what}: unsupported Content-Encoding {encoding!r}") from None
            raise Rejected(400, f"Could not decompress the payload: {e.detail}", f"{what}: corrupt {encoding} body") from None
        rec.decoded_size = len(body)
        return body

    # -- logs --------------------------------------------------------------------------------------

    def _parse_logs(self, request: web.Request, body: bytes) -> list[dict[str, Any]]:
        rec = request[RECORD]
        mime = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if mime == "text/plain":
            entries: list[Any] = [{"message": line} for line in body.decode("utf-8", "replace").splitlines() if line]
        else:
            try:
                decoded = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise Rejected(400, f"Invalid JSON: {e}", f"logs: body is not valid JSON ({e.msg})") from None
            rec.body = decoded
            entries = decoded if isinstance(decoded, list) else [decoded]
        rec.entries = len(entries)
        if len(entries) > self.MAX_LOG_ENTRIES:
            raise Rejected(self.TOO_MANY_ENTRIES_STATUS, f"Too many logs in one request: {len(entries)} > {self.MAX_LOG_ENTRIES}",
                           f"logs: {len(entries)} entries in one request (max {self.MAX_LOG_ENTRIES})")
        for n, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise Rejected(400, f"Log {n} is not a JSON object", f"logs: entry {n} is a {type(entry).__name__}, not an object")
        return entries

    def _accept_logs(self, entries: list[dict[str, Any]], query_tags: str | None) -> None:
        now = self.clock()
        for entry in entries:
            log = dict(entry)
            self._check_log_fields(log, now)
            if query_tags:
                log["ddtags"] = ",".join(t for t in (log.get("ddtags"), query_tags) if isinstance(t, str) and t)
            size = len(orjson.dumps(log))
            if size > self.MAX_LOG_BYTES:
                log = self._truncate(log, size)
            self.logs.append(log)

    def _check_log_fields(self, log: dict[str, Any], now: float) -> None:
        for name in RESERVED_STRING_FIELDS:
            if name in log and not isinstance(log[name], str):
                self.violations.append(f"logs: reserved field {name!r} is a {type(log[name]).__name__}, not a string")
        tags = log.get("ddtags")
        if isinstance(tags, str) and any(t and not t.strip() for t in tags.split(",")):
            self.violations.append(f"logs: blank tag in ddtags {tags!r}")
        for name in LOG_DATE_FIELDS:
            if name in log:
                when = _epoch(log[name])
                if when is not None and now - when > self.MAX_LOG_AGE:
                    self.violations.append(f"logs: {name} {log[name]!r} is more than 18 h in the past")
                break

    def _truncate(self, log: dict[str, Any], size: int) -> dict[str, Any]:
        self.truncated_logs.append({"index": len(self.logs), "original_size": size})
        self.violations.append(f"logs: one log is {size} bytes (max {self.MAX_LOG_BYTES}); truncated")
        encoded = str(log.get("message", "")).encode()
        while size > self.MAX_LOG_BYTES and encoded:
            encoded = encoded[: max(0, len(encoded) - (size - self.MAX_LOG_BYTES) - 16)]
            log["message"] = encoded.decode("utf-8", "ignore")
            size = len(orjson.dumps(log))
        return log

    # -- series ------------------------------------------------------------------------------------

    def _parse_series(self, request: web.Request, body: bytes) -> list[dict[str, Any]]:
        rec = request[RECORD]
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise Rejected(400, "Payload is not in the expected format: invalid JSON", f"series: body is not valid JSON ({e.msg})") from None
        rec.body = decoded
        series = decoded.get("series") if isinstance(decoded, dict) else None
        if not isinstance(series, list):
            raise Rejected(400, "Payload is not in the expected format: missing 'series'", "series: body has no 'series' array")
        rec.entries = len(series)
        problems = [p for n, s in enumerate(series) for p in self._series_problems(n, s)]
        if problems:
            raise Rejected(400, "; ".join(problems), "series: " + "; ".join(problems))
        return series

    def _series_problems(self, n: int, s: Any) -> list[str]:
        if not isinstance(s, dict):
            return [f"series[{n}] is not an object"]
        problems = []
        if not isinstance(s.get("metric"), str) or not s["metric"]:
            problems.append(f"series[{n}]: 'metric' is required")
        if "type" in s and (not _is_int(s["type"]) or not 0 <= s["type"] <= 3):
            problems.append(f"series[{n}]: 'type' must be 0, 1, 2 or 3, not {s['type']!r}")
        for name, kind in (("interval", int), ("unit", str), ("source_type_name", str)):
            if name in s and s[name] is not None and not (_is_int(s[name]) if kind is int else isinstance(s[name], kind)):
                problems.append(f"series[{n}]: {name!r} must be {'an integer' if kind is int else 'a string'}")
        if "tags" in s and not (isinstance(s["tags"], list) and all(isinstance(t, str) for t in s["tags"])):
            problems.append(f"series[{n}]: 'tags' must be a list of strings")
        if "resources" in s and not _resources_ok(s["resources"]):
            problems.append(f"series[{n}]: 'resources' must be a list of {{name, type}} strings")
        problems.extend(self._point_problems(n, s.get("points")))
        return problems

    def _point_problems(self, n: int, points: Any) -> list[str]:
        if not isinstance(points, list) or not points:
            return [f"series[{n}]: 'points' is required"]
        now = self.clock()
        problems = []
        for i, p in enumerate(points):
            where = f"series[{n}].points[{i}]"
            if not isinstance(p, dict) or not _is_int(p.get("timestamp")):
                problems.append(f"{where}: 'timestamp' must be an integer number of seconds")
                continue
            if not isinstance(p.get("value"), int | float) or isinstance(p.get("value"), bool):
                problems.append(f"{where}: 'value' must be a number")
            ts = p["timestamp"]
            if ts > now + self.MAX_POINT_FUTURE:
                problems.append(f"{where}: timestamp {ts} is more than 10 minutes in the future")
            elif ts < now - self.MAX_POINT_PAST:
                problems.append(f"{where}: timestamp {ts} is more than 1 hour in the past")
        return problems

    # -- answers -----------------------------------------------------------------------------------

    def _reject(self, e: Rejected, logs: bool) -> web.Response:
        if e.violation:
            self.violations.append(e.violation)
        return self._error(e.status, e.detail, logs)

    def _error(self, status: int, detail: str, logs: bool, headers: dict[str, str] | None = None) -> web.Response:
        title = TITLES.get(status, "Error")
        if logs:  # HTTPLogErrors
            body: dict[str, Any] = {"errors": [{"status": str(status), "title": title, "detail": detail}]}
        else:  # APIErrorResponse
            body = {"errors": [title if detail == title else f"{title}: {detail}"]}
        return web.json_response(body, status=status, headers=headers)

    def _scripted(self, failure: ScriptedFailure, logs: bool) -> web.Response:
        headers = {}
        if failure.status == 429:
            reset = int(failure.retry_after) if failure.retry_after is not None else 10
            headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Period": "10", "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": str(reset), "X-RateLimit-Name": "logs_intake" if logs else "metrics_intake"}
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        return self._error(failure.status, TITLES.get(failure.status, "Error"), logs, headers)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _resources_ok(resources: Any) -> bool:
    return isinstance(resources, list) and all(
        isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("type"), str) for r in resources
    )


def _epoch(value: Any) -> float | None:
    """Seconds since the epoch from a log date attribute (ISO string, epoch s or ms), if readable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value / 1000 if value > 10**11 else float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Datadog logs and metrics intake")
    parser.add_argument("--api-key", default="fake-datadog-api-key")
    serve_main(lambda a: FakeDatadog(a.api_key, host=a.host, port=a.port, latency_ms=a.latency_ms), parser)


if __name__ == "__main__":
    main()
