"""Sink `datadog_logs`: Datadog's logs intake v2 (``POST /api/v2/logs``) on the shared HTTP delivery.

Each event becomes one log entry of a JSON array. A dict event keeps its
fields as attributes and gets the reserved fields Datadog reads:

    message    the event's ``message`` (text as is, anything else as JSON), else the whole event as JSON
    service    the event's ``dd_service`` or ``service``, else ``service`` from the config
    ddsource   the event's ``dd_source`` or ``ddsource``, else ``ddsource`` from the config
    hostname   the event's ``hostname`` or ``host``, else ``hostname`` from the config
    ddtags     the config's ``ddtags`` joined with the event's ``dd_tags`` and ``ddtags`` (``k:v,k2:v2``)
    status     the event's ``level`` (else its own ``status``, as text)

An event's own value wins over the config's, which is the default for events
that carry none (Fluent Bit's ``dd_service``, ``dd_source`` and ``dd_tags``
map onto the config keys). The ``dd_*`` fields are directives and are not
sent as attributes. A raw line becomes ``{"message": line}`` plus the
reserved fields from the config.

Limits (Datadog's): at most 1000 entries and 5,000,000 bytes (uncompressed)
per request, so ``batch.max_events`` above 1000 or ``batch.max_bytes`` above
5 MB is a config error; the batch defaults are 1000 entries and a 4.25 MB
goal. A request that still encodes to more than 5,000,000 bytes is split in
two by the driver. An entry over 1,000,000 bytes of JSON has its ``message``
cut to fit and is flagged ``"truncated": true`` (counted as
``truncated_entries``) rather than left to the intake to truncate silently.

Answers: 2xx delivers; 429 and 5xx are retried (Retry-After honoured), 413
splits, any other 4xx (400: a payload Datadog refuses) sends the request's
entries to the dead letter with the reason. **A refused API key (401 or 403)
loses nothing:** the sink logs an error saying so (at most once per
``request.retry_max_backoff``), counts ``forbidden`` errors, keeps the
request unacknowledged and sends it again every ``request.retry_max_backoff``
until the intake accepts it, so a key fixed at the intake or by a reload of
the config gets every held event through (on a reload the old instance hands
the requests it holds back to the inbox, and the new one sends them with the
new key). With ``request.retry_max_duration`` set, held requests give
up after it like any other retry (not acknowledged: sources that checkpoint
read them again after a restart).

Encoding converts a request's events to Datadog entries once, in place, and
counts truncations then; a retry or a split half encodes the converted
entries again without converting (or counting) twice.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from msgspec import field

from agent.codecs.encoding import concat, dumps_lenient
from agent.config.registry import BuildContext, register
from agent.config.units import ByteSize
from agent.core.batch import Kind
from agent.delivery.batcher import Request
from agent.delivery.config import BatchConfig
from agent.delivery.driver import Outcome, PayloadTooLarge
from agent.delivery.http import HttpClient, compress_async
from agent.sinks.datadog_api import DatadogConfig, DatadogSink

MAX_ENTRIES = 1000  # per request
MAX_PAYLOAD = 5_000_000  # bytes per request, uncompressed
MAX_ENTRY = 1_000_000  # bytes of one entry's JSON
DIRECTIVES = ("dd_service", "dd_source", "dd_tags")


# -- config --------------------------------------------------------------------------------------


class DatadogLogsBatchConfig(BatchConfig, kw_only=True):
    """``batch`` of `datadog_logs`: within the intake's 1000 entries and 5 MB per request.

    The defaults apply to a ``batch`` that sets only some keys too (1000
    entries, a 4.25 MB goal that leaves room for the estimate's error).
    """

    max_events: int = MAX_ENTRIES
    """Entries per request at most (the intake takes 1,000)."""
    max_bytes: ByteSize = ByteSize(4_250_000)
    """Bytes per request at most (the intake takes 5 MB; the default leaves room for the estimate's error)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_events > MAX_ENTRIES:
            raise ValueError(f"max_events must be at most {MAX_ENTRIES} (Datadog's limit of entries per request)")
        if self.max_bytes > MAX_PAYLOAD:
            raise ValueError(f"max_bytes must be at most {MAX_PAYLOAD} (Datadog's 5 MB limit per request)")


class DatadogLogsConfig(DatadogConfig, tag="datadog_logs", kw_only=True):
    """Send logs to Datadog's logs intake (``POST /api/v2/logs`` on ``http-intake.logs.<site>``).

    ``service``, ``ddsource``, ``ddtags`` and ``hostname`` are defaults for events that do not carry their own
    (``dd_service``, ``dd_source``, ``dd_tags`` fields). The intake's limits are kept (1,000 entries and 5 MB per
    request, 1 MB per entry: longer messages are cut and counted). A refused API key (401/403) stops delivery loudly but
    keeps the data: requests are held and retried, so fixing the key gets everything through.
    """

    service: str | None = None
    """service of events that do not carry their own (dd_service or service field)."""
    ddsource: str | None = None
    """ddsource of events that do not carry their own (dd_source field)."""
    ddtags: str | None = None
    """Comma-separated tags, e.g. env:prod,team:payments, of events that do not carry their own (dd_tags field)."""
    batch: DatadogLogsBatchConfig = field(default_factory=DatadogLogsBatchConfig)
    """When buffered events become a request, within the intake's limits."""

    def __post_init__(self) -> None:
        if self.compression == "zstd":
            raise ValueError("compression zstd is not accepted by the Datadog logs intake: use gzip or none")
        super().__post_init__()


# -- entries -------------------------------------------------------------------------------------


class LogEntry(dict[str, Any]):
    """One Datadog log entry, ready to serialize (marks a request's events as converted)."""


def _text(value: Any) -> str | None:
    """A usable reserved-field value: non-blank text, or a number as text."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bytes):
        return _text(value.decode("utf-8", "replace"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _tags(*values: Any) -> str | None:
    tags: list[str] = []
    for value in values:
        if isinstance(value, list | tuple):
            parts = [str(v) for v in value]
        elif isinstance(value, str):
            parts = value.split(",")
        else:
            continue
        for tag in parts:
            tag = tag.strip()
            if tag and tag not in tags:
                tags.append(tag)
    return ",".join(tags) or None


def _as_message(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return dumps_lenient(value).decode()


class EntryBuilder:
    """Turns events into Datadog log entries (pure: no state besides the config)."""

    def __init__(self, service: str | None = None, ddsource: str | None = None, ddtags: str | None = None,
                 hostname: str | None = None) -> None:
        self.service = service
        self.ddsource = ddsource
        self.ddtags = _tags(ddtags)
        self.hostname = hostname

    def from_line(self, line: bytes) -> LogEntry:
        entry = LogEntry(message=line.decode("utf-8", "replace"))
        for name, value in (("service", self.service), ("ddsource", self.ddsource), ("hostname", self.hostname),
                            ("ddtags", self.ddtags)):
            if value is not None:
                entry[name] = value
        return entry

    def from_event(self, event: dict[str, Any]) -> LogEntry:
        entry = LogEntry((k, v) for k, v in event.items() if k not in DIRECTIVES)
        message = event.get("message")
        entry["message"] = (_as_message(message) if message is not None
                            else dumps_lenient(entry).decode())
        reserved = {
            "service": _text(event.get("dd_service")) or _text(event.get("service")) or self.service,
            "ddsource": _text(event.get("dd_source")) or _text(event.get("ddsource")) or self.ddsource,
            "hostname": _text(event.get("hostname")) or _text(event.get("host")) or self.hostname,
            "ddtags": _tags(self.ddtags, event.get("dd_tags"), event.get("ddtags")),
            "status": _text(event.get("level")) or _text(event.get("status")),
        }
        for name, value in reserved.items():
            if value is not None:
                entry[name] = value
            elif name in entry:  # present but unusable (an object, a list, blank): Datadog wants text
                entry[name] = _as_message(entry[name])
                if not entry[name].strip():
                    del entry[name]
        return entry

    def entry(self, kind: Kind, event: Any) -> LogEntry:
        if kind.is_raw:
            return self.from_line(event)
        if isinstance(event, dict):
            return self.from_event(event)
        return LogEntry(message=_as_message(event))


def dumps_entry(entry: dict[str, Any]) -> bytes:
    return dumps_lenient(entry)


def fit_entry(entry: LogEntry, limit: int = MAX_ENTRY) -> tuple[LogEntry, bool]:
    """``entry`` with its message cut so that its JSON is at most ``limit`` bytes; whether it was cut.

    Cuts are sized by the message's JSON-to-UTF-8 ratio (escapes make JSON
    longer), so a few rounds keep nearly 1 MB; after those, cutting as many
    bytes as the JSON is over always fits (n bytes of message are at least n
    bytes of JSON). If the other fields alone are too large, the message is
    emptied and the intake truncates the rest.
    """
    size = len(dumps_entry(entry))
    if size <= limit:
        return entry, False
    cut = LogEntry(entry)
    cut["truncated"] = True
    message = _as_message(entry.get("message", ""))
    raw = message.encode()
    ratio = max(1.0, (len(orjson.dumps(message)) - 2) / max(1, len(raw)))
    for attempt in itertools.count():
        if size <= limit or not raw:
            break
        excess = size - limit + 64
        remove = excess if attempt >= 8 else int(excess / ratio) + 1
        raw = raw[: max(0, len(raw) - remove)]
        cut["message"] = raw.decode("utf-8", "ignore")
        size = len(dumps_entry(cut))
    return cut, True


def logs_body(entries: list[Any]) -> bytes:
    """The JSON array of already-converted entries (:func:`~agent.codecs.encoding.concat`: each appended as it
    is encoded and let go at once)."""
    return b"[" + concat(map(dumps_entry, entries), b",") + b"]"


# -- the sink ------------------------------------------------------------------------------------


@register("sink", "datadog_logs", DatadogLogsConfig, "Sends logs to Datadog's logs intake (v2).")
class DatadogLogsSink(DatadogSink):
    """Batches of log entries POSTed to ``/api/v2/logs``; a refused API key holds the data (see the module)."""

    def __init__(self, config: DatadogLogsConfig, ctx: BuildContext) -> None:
        url = (config.endpoint or f"https://http-intake.logs.{config.site}").rstrip("/") + "/api/v2/logs"
        super().__init__(config, ctx, url, config.validate_endpoint or f"https://api.{config.site}")
        self.builder = EntryBuilder(config.service, config.ddsource, config.ddtags, config.hostname)

    def convert(self, request: Request) -> list[Any]:
        """The request's events as entries, converting (and counting truncations) only the first time."""
        events = request.events
        if not events or isinstance(events[0], LogEntry):
            return events
        entries = []
        truncated = 0
        make = self.builder.entry
        for event in events:
            entry, cut = fit_entry(make(request.kind, event))
            truncated += cut
            entries.append(entry)
        if truncated:
            self.stats.count("truncated_entries", truncated)
        request.events = entries
        return entries

    def encode(self, request: Request) -> bytes:
        entries = self.convert(request)
        if len(entries) > MAX_ENTRIES:
            raise PayloadTooLarge()
        body = logs_body(entries)
        if len(body) > MAX_PAYLOAD:
            raise PayloadTooLarge()
        return body

    async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome:
        data, headers = await compress_async(body, self.config.compression)
        await self.post(client, data, headers, len(request.events))
        return Outcome()
