"""Transform `parse`: decode a raw line or an event field into event fields, by one of several codecs.

Codecs: ``json`` (default), ``regex`` and ``grok`` (``pattern:``; grok's ``patterns:`` adds named patterns),
``logfmt``, ``key_value`` (``field_split``, ``value_split``), ``syslog`` (RFC 5424 and 3164), ``apache`` and
``nginx`` (common and combined access logs), ``csv`` (``columns:``, ``delimiter``); the parsers live in
``agent.codecs.parsers``. A raw line is parsed whole; a dict event's ``field`` is parsed and its fields merged
into the event (or placed under ``target``). ``keep_original`` keeps the parsed text (as ``message`` for a raw
line), or under ECS's ``event.original`` where a parsed field (or ``target``) takes that name; ``types``
converts fields; ``time_key`` + ``time_format`` set ``@timestamp`` from a parsed field (which goes unless
``time_keep``); ``when: looks_like_json`` parses only values that start with ``{`` and end with ``}`` and passes
others on untouched. A line that does not parse is counted and, with ``on_error: keep``, passed on as
``{"message": <line>, "parse_error": "..."}`` so nothing is lost.

JSON without options runs the two tight loops below (no per-event work beyond decoding); everything else runs
the general loop. The batch's ``byte_size`` grows by what the merged keys cost in memory
(``agent.core.footprint``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import orjson

from agent.codecs.parsers import CONVERTERS, Parser, convert_fields
from agent.codecs.parsers.common_log import AccessLogParser
from agent.codecs.parsers.csv import CsvParser
from agent.codecs.parsers.grok import GrokParser
from agent.codecs.parsers.key_value import KeyValueParser
from agent.codecs.parsers.logfmt import LogfmtParser
from agent.codecs.parsers.regex import RegexParser
from agent.codecs.parsers.syslog import SyslogParser
from agent.codecs.parsers.timestamps import time_reader, time_stamper
from agent.config.model import TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch, Kind
from agent.core.events import own_parents
from agent.core.footprint import parsed_bytes
from agent.expr.paths import FieldPath, has_field, set_field

log = logging.getLogger("agent.transforms.parse")

Codec = Literal["json", "regex", "grok", "logfmt", "key_value", "syslog", "apache", "nginx", "csv"]
FieldType = Literal["int", "integer", "float", "bool", "boolean", "string", "str"]
TIME_FIELD = "@timestamp"
NOT_JSON = "not a JSON object"
ORIGINAL: FieldPath = ("event", "original")  # ECS's place for the parsed text when its own name is taken


class ParseConfig(TransformConfig, tag="parse"):
    """Parse raw lines, or ``field`` of structured events, with a codec (JSON by default).

    The parsed fields are merged into the event (or put under ``target``). ``types`` converts values, ``time_key`` and
    ``time_format`` set ``@timestamp``. A line that does not parse passes on with ``parse_error`` (or is dropped with
    ``on_error: drop``) and is counted: nothing is lost silently. Regexes are RE2; grok takes Logstash's pattern names.
    """

    codec: Codec = "json"
    """The parser: json, regex, grok, logfmt, key_value, syslog (RFC 5424 and 3164), apache or nginx (common and
    combined), csv.
    """
    pattern: str | None = None
    """regex: a pattern with named groups (RE2; (?<name>...) accepted); grok: a grok expression such as
    %{COMBINEDAPACHELOG}.
    """
    patterns: dict[str, str] = msgspec.field(default_factory=dict)
    """grok: your own pattern names, NAME: regex."""
    columns: list[str] = msgspec.field(default_factory=list)
    """csv: the names of the values, in order."""
    delimiter: str = ","
    """csv: the character between values."""
    field_split: str = " "
    """key_value: what separates one pair from the next."""
    value_split: str = "="
    """key_value: what separates a key from its value."""
    field: str = "message"
    """The field of a structured event that is parsed (a raw line is parsed whole)."""
    target: str | None = None
    """Put the parsed fields under this field instead of merging them into the event."""
    keep_original: bool = False
    """Keep the parsed text (as message for a raw line) next to the parsed fields. Where a parsed field (or target)
    takes its name, the text goes to event.original instead (ECS's field for it, as in Logstash and Filebeat),
    unless that is set already.
    """
    types: dict[str, FieldType] = msgspec.field(default_factory=dict)
    """Convert fields after parsing: field name to int, float, bool or string."""
    when: Literal["always", "looks_like_json"] = "always"
    """always, or looks_like_json: parse only values that start with { and end with }, pass others on untouched."""
    time_key: str | None = None
    """Parsed field that sets @timestamp (it is removed unless time_keep)."""
    time_format: str = "iso8601"
    """How time_key is written: iso8601, unix, unix_ms, or a strptime format (%L for the fraction of a second, as in
    Fluent Bit).
    """
    time_keep: bool = False
    """Keep time_key after it set @timestamp."""
    on_error: Literal["keep", "drop"] = "keep"
    """A line that does not parse: keep passes it on marked with parse_error; drop drops it. Both count it."""

    def __post_init__(self) -> None:
        uses_pattern = self.codec in ("regex", "grok")
        if uses_pattern and not self.pattern:
            raise ValueError(f"codec {self.codec} needs a pattern")
        if self.pattern is not None and not uses_pattern:
            raise ValueError("pattern is for codec regex or grok")
        if self.patterns and self.codec != "grok":
            raise ValueError("patterns is for codec grok")
        if self.codec == "csv" and not self.columns:
            raise ValueError("codec csv needs columns (the names of its values)")
        if self.when == "looks_like_json" and self.codec != "json":
            raise ValueError("when: looks_like_json is for codec json")
        try:  # a pattern RE2 refuses, an unknown grok name, bad separators: a config error here
            build_parser(self)
        except ValueError as exc:
            if not uses_pattern or str(exc).startswith("patterns."):  # these name their key, which the error points at
                raise
            raise ValueError(f"pattern: {exc}") from None  # reported on the pattern's line
        time_reader(self.time_format)


def build_parser(config: ParseConfig) -> Parser | None:
    """The parser object of a non-JSON codec (``parse(text)``, ``parse_bytes(data)``, ``error``), or None."""
    codec = config.codec
    if codec == "regex":
        return RegexParser(config.pattern or "")
    if codec == "grok":
        return GrokParser(config.pattern or "", config.patterns)
    if codec == "logfmt":
        return LogfmtParser()
    if codec == "key_value":
        return KeyValueParser(config.field_split, config.value_split)
    if codec == "syslog":
        return SyslogParser()
    if codec in ("apache", "nginx"):
        return AccessLogParser()
    if codec == "csv":
        return CsvParser(config.columns, config.delimiter)
    return None


class _Json:
    """The ``json`` codec in the shape of the other parsers, for the general loop."""

    error = NOT_JSON

    @staticmethod
    def parse_bytes(data: bytes | str) -> dict[str, Any] | None:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        return value if type(value) is dict else None

    parse = parse_bytes


def _looks_like_json(value: bytes | str) -> bool:
    """Logstash's ``[message] =~ /^\\{.*\\}$/``, allowing surrounding white space."""
    value = value.strip()
    return value[:1] in (b"{", "{") and value[-1:] in (b"}", "}")


@register("transform", "parse", ParseConfig, "Parses JSON, regex, grok, logfmt, key=value, syslog, access logs "
          "or CSV into event fields.")
class ParseTransform:
    """Turns a batch of lines or events into a LOGS batch of parsed dicts (same acks)."""

    mutates = True

    def __init__(self, config: ParseConfig, ctx: BuildContext) -> None:
        self.config = config
        self.stats = ctx.stats
        self.component_id = ctx.component_id
        self.parser: Parser = build_parser(config) or _Json()
        self.types = {name: CONVERTERS[kind] for name, kind in config.types.items()}
        self.stamp_time = time_stamper(config.time_format) if config.time_key else None
        self._last_time: tuple[Any, str] | None = None  # the last time value read and its @timestamp
        self.guard: Callable[[Any], bool] | None = _looks_like_json if config.when == "looks_like_json" else None
        self.fast_json = config.codec == "json" and not (self.types or self.stamp_time or self.guard)
        self._raised_kinds: set[str] = set()  # exception types a parser raised, logged once each

    def process(self, batch: Batch) -> Batch | None:
        if batch.kind is Kind.METRICS:
            return batch
        from_lines = batch.kind.is_raw
        if self.fast_json and not (from_lines and self.config.keep_original):
            parse = self._json_lines if from_lines else self._json_fields
            events, failed, keys = parse(batch.events)
        else:
            events, failed, keys = (self._parse_lines if from_lines else self._parse_fields)(batch.events)
        if failed:
            self._count_failures(failed)
        batch.events = events
        batch.kind = Kind.LOGS
        batch.byte_size = parsed_bytes(batch.byte_size, len(events), keys, from_lines)
        return batch

    def _json_lines(self, lines: list[bytes]) -> tuple[list[dict[str, Any]], int, int]:
        """The events of ``lines``, how many did not parse, and how many keys the parsed ones have."""
        loads, target, keep = orjson.loads, self.config.target, self.config.on_error == "keep"
        events: list[dict[str, Any]] = []
        append = events.append
        failed = keys = 0
        for line in lines:
            try:
                value = loads(line)
            except orjson.JSONDecodeError:
                value = None
            if type(value) is not dict:
                failed += 1
                if keep:
                    append({"message": line.decode("utf-8", "replace"), "parse_error": NOT_JSON})
                continue
            keys += len(value)
            append({target: value} if target else value)
        return events, failed, keys

    def _json_fields(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int, int]:
        """The events with ``field`` parsed, how many did not parse, and how many keys were merged in."""
        loads, field, target = orjson.loads, self.config.field, self.config.target
        keep_original, keep = self.config.keep_original, self.config.on_error == "keep"
        out: list[dict[str, Any]] = []
        append = out.append
        failed = keys = 0
        for event in events:
            text = event.get(field)
            try:
                value = loads(text)  # type: ignore[arg-type]  # None or non-text: JSONDecodeError
            except orjson.JSONDecodeError:
                value = None
            if type(value) is not dict:
                failed += 1
                if keep:
                    event["parse_error"] = NOT_JSON
                    append(event)
                continue
            keys += len(value)
            if target:
                event[target] = value
            else:
                if not keep_original:
                    del event[field]
                event.update(value)
            if keep_original and (target == field if target else field in value):
                self._keep_as_original(event, text)
            append(event)
        return out, failed, keys

    def _parse_lines(self, lines: list[bytes]) -> tuple[list[dict[str, Any]], int, int]:
        """Like ``_json_lines``, with any codec and the options."""
        parse, guard, finish = self.parser.parse_bytes, self.guard, self._finish
        target, keep_original, keep = self.config.target, self.config.keep_original, self.config.on_error == "keep"
        events: list[dict[str, Any]] = []
        append = events.append
        failed = keys = 0
        for line in lines:
            if guard is not None and not guard(line):
                append({"message": line.decode("utf-8", "replace")})
                continue
            try:
                value = parse(line)
            except Exception as exc:  # a parser's defect costs this line, never the rest of its batch
                failed += 1
                reason = self._raised(exc)
                if keep:
                    append({"message": line.decode("utf-8", "replace"), "parse_error": reason})
                continue
            if value is None:
                failed += 1
                if keep:
                    append({"message": line.decode("utf-8", "replace"), "parse_error": self.parser.error})
                continue
            keys += len(value)
            stamp = finish(value)
            event: dict[str, Any] = {target: value} if target else value
            if keep_original:
                if "message" in event:
                    self._keep_as_original(event, line)
                else:
                    event = {"message": line.decode("utf-8", "replace"), **event}
            if stamp is not None:
                event[TIME_FIELD] = stamp
            append(event)
        return events, failed, keys

    def _parse_fields(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int, int]:
        """Like ``_json_fields``, with any codec and the options."""
        parser, guard, finish = self.parser, self.guard, self._finish
        field, target, keep = self.config.field, self.config.target, self.config.on_error == "keep"
        keep_original = self.config.keep_original
        out: list[dict[str, Any]] = []
        append = out.append
        failed = keys = 0
        for event in events:
            text = event.get(field)
            if guard is not None and not (isinstance(text, str | bytes) and guard(text)):
                append(event)
                continue
            try:
                if isinstance(text, str):
                    value = parser.parse(text)
                else:
                    value = parser.parse_bytes(text) if isinstance(text, bytes) else None
            except Exception as exc:  # a parser's defect costs this event, never the rest of its batch
                failed += 1
                reason = self._raised(exc)
                if keep:
                    event["parse_error"] = reason
                    append(event)
                continue
            if value is None:
                failed += 1
                if keep:
                    event["parse_error"] = parser.error
                    append(event)
                continue
            keys += len(value)
            stamp = finish(value)
            if target:
                event[target] = value
            else:
                if not keep_original:
                    del event[field]
                event.update(value)
            if keep_original and (target == field if target else field in value):
                self._keep_as_original(event, text)
            if stamp is not None:
                event[TIME_FIELD] = stamp
            append(event)
        return out, failed, keys

    def _keep_as_original(self, event: dict[str, Any], text: Any) -> None:
        """``keep_original`` where the parsed fields took the name of ``text`` (str or bytes, as it parsed): it
        goes to ``event.original``, unless an earlier stage (or the parsed fields) set it; a parsed ``event`` that
        is not an object blocks it, counted as a ``field_conflict``."""
        if has_field(event, ORIGINAL):
            return
        own_parents(event, ORIGINAL)  # event.event may be shared with another consumer (fan-out)
        if not set_field(event, ORIGINAL, text.decode("utf-8", "replace") if isinstance(text, bytes) else text):
            self.stats.error("field_conflict", "processing")

    def _finish(self, value: dict[str, Any]) -> str | None:
        """Applies ``types`` to one event's parsed fields and reads its time: the ``@timestamp`` text, or None."""
        if self.types and convert_fields(value, self.types):
            self.stats.error("type_conversion_failed", "processing")
        if self.stamp_time is None:
            return None
        key = self.config.time_key or ""
        raw = value.get(key)
        last = self._last_time
        if last is not None and type(raw) is type(last[0]) and raw == last[0]:
            stamp = last[1]  # lines of one second share their time text: strptime once, not once a line
        else:
            try:
                read = self.stamp_time(raw)
            except Exception:  # a defect in reading times costs this event its time, never the batch
                read = None
            if read is None:
                self.stats.error("time_parse_failed", "processing")
                return None
            stamp = read
            self._last_time = (raw, stamp)
        if not self.config.time_keep and key != TIME_FIELD:
            del value[key]
        return stamp

    def _raised(self, exc: Exception) -> str:
        """Counts a parser that raised on a line (a defect: parsers return None for what they cannot read), logs
        the first of each kind (its type only: the message may quote the line), and gives the ``parse_error``."""
        self.stats.error("parser_raised", "processing")
        kind = type(exc).__name__
        if kind not in self._raised_kinds:
            self._raised_kinds.add(kind)
            log.error("the parser raised on a line; the line passes on as not parsed", extra={
                "component_id": self.component_id, "codec": self.config.codec, "error": kind})
        return f"the {self.config.codec} parser failed ({kind})"

    def _count_failures(self, failed: int) -> None:
        self.stats.error("parse_failed", "processing", failed)
        if self.config.on_error == "drop":
            self.stats.discard("parse_failed", failed)
        log.warning("events did not parse", extra={
            "component_id": self.component_id, "count": failed, "codec": self.config.codec,
            "on_error": self.config.on_error})
