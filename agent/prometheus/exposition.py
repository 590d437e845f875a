"""Parse a scraped page: the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.

What is accepted and refused follows Prometheus's own parsers (``model/textparse`` promparse.go and
openmetricsparse.go): text 0.0.4 allows spaces and tabs around tokens, a trailing comma in a label set
and any ``#`` comment; OpenMetrics allows exactly one space between tokens, only ``# HELP``, ``# TYPE``,
``# UNIT`` and ``# EOF`` comments, and needs ``# EOF`` at the end. A ``\\r`` is never a line end.

Speed: the page is decoded once and split into lines once. A sample line of the common shapes
(``name value [ts]``, ``name{a="b",c="d"} value [ts]``, no backslash in the labels) takes the fast
path: the label block is split on its quotes, and its skeleton (the label names and separators) is
validated once and then looked up. Anything else, or anything the fast path is unsure of, is parsed
again by the slow path, which scans the line token by token and is the one that raises. Nothing here
backtracks: the regular expressions are single character classes, and quoted values are scanned with
``str.find``.
"""

from __future__ import annotations

import math
import re
import sys
from array import array
from collections.abc import Container
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

Labels = tuple[tuple[str, str], ...]
ParsedSample = tuple[str, Labels, float, int | None]


class ExpositionError(ValueError):
    """A malformed page; the message names the line number and what is wrong with it."""


@dataclass(slots=True)
class Exposition:
    """A parsed page.

    ``samples`` are (metric name, labels in page order without ``__name__``, value, timestamp in ms or
    None); ``types`` maps a family name to the type its ``# TYPE`` line gave. ``keys`` holds, for each
    sample, a key of its series (the series as written, ``name{...}``, or for a line the slow path took a
    canonical form that no written one can equal): equal keys, equal name and labels. A sample whose key
    was in the ``known`` set given to :func:`parse_exposition` is ``("", (), value, timestamp)``: its
    name and labels were not parsed again, the caller knows them.
    """

    samples: list[ParsedSample]
    types: dict[str, str]
    keys: list[str]


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_BLANKS = re.compile(r"[ \t]*")
# Whitespace that float() and int() would strip but Prometheus does not accept inside a token: a page
# with any of these (a CRLF page, tabs between tokens) is parsed by the slow path only.
_ODD_SPACE = "\t\r\x0b\x0c\x1c\x1d\x1e\x1f"

_TEXT_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_OM_TYPES = frozenset({"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown"})
_SPECIAL_VALUES = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan"})
_UNESCAPE = {'"': '"', "\\": "\\", "n": "\n"}
_INT64 = 1 << 63
_NO_LABELS: Labels = ()

# Memos shared by every parse (bounded: cleared when full). A target's page repeats its label blocks
# scrape after scrape, so, like Prometheus's scrape cache, the labels of a block (the text between the
# braces) are looked up rather than parsed again. Also remembered: metric names known to be valid, and
# label block skeletons (the label names with their `=`, `,` and the tail) -> the label names they hold,
# and the HELP and TYPE lines accepted (per format) -> the (family, type) of a TYPE line, None for HELP.
_CACHE_MAX = 1 << 16
_BLOCKS_MAX = 1 << 14
_valid_names: set[str] = set()
_shapes: dict[tuple[str, ...], tuple[str, ...]] = {}
_blocks: dict[str, Labels] = {}
_text_metas: dict[str, tuple[str, str] | None] = {}
_om_metas: dict[str, tuple[str, str] | None] = {}
_MISSING: Any = object()


class _Slow(Exception):
    """The fast path cannot take this line."""



def parse_exposition(data: bytes, openmetrics: bool, known: Container[str] = frozenset()) -> Exposition:
    """Parse one page; raise ExpositionError (and nothing else) when it is malformed. The series whose keys
    are in ``known`` (the keys of a previous parse, see :class:`Exposition`) are not parsed again."""
    text, lines = _split(data, openmetrics)
    if openmetrics:
        _strip_eof(lines)
    fast = not any(char in text for char in _ODD_SPACE)
    types: dict[str, str] = {}
    keys: list[str] = []
    samples = _parse_lines(lines, openmetrics, types, fast, not text.isascii(), known, keys)
    return Exposition(samples, types, keys)


@dataclass(slots=True)
class PageShape:
    """What stays the same from one scrape of a target to the next: its lines but for the sample values.

    ``comments`` is every line that is not a sample (``#`` lines, blank lines) joined by ``\\n`` (interned:
    the targets of one exporter keep one copy), and ``comment_rows`` their line numbers; ``sample_rows`` the
    line numbers of the samples, and ``keys`` their series keys (the :class:`Exposition` keys, each the
    sample line up to the space before its value). Only a page whose every sample is ``key value``, with no
    timestamp, has a shape; it holds for pages of its format (``openmetrics``) only.
    """

    openmetrics: bool
    lines: int
    comments: str
    comment_rows: array[int]
    sample_rows: array[int]
    keys: list[str]


_head = itemgetter(0)
_tail = itemgetter(2)


def page_shape(data: bytes, openmetrics: bool, page: Exposition) -> PageShape | None:
    """The shape of a page :func:`parse_exposition` accepted as ``page``, or None when a sample has a
    timestamp or is not written ``key value``."""
    if any(sample[3] is not None for sample in page.samples):
        return None
    lines = _plain_lines(data, openmetrics)
    if lines is None:
        return None
    comment_rows = array("l", [i for i, line in enumerate(lines) if line[:1] in ("#", "")])
    rows = array("l", [i for i, line in enumerate(lines) if line[:1] not in ("#", "")])
    if len(rows) != len(page.keys):
        return None
    heads = list(map(_head, map(str.rpartition, map(lines.__getitem__, rows), repeat(" "))))
    if heads != page.keys:
        return None
    comments = sys.intern("\n".join(map(lines.__getitem__, comment_rows)))  # one copy for targets alike
    return PageShape(openmetrics, len(lines), comments, comment_rows, rows, page.keys)


def _plain_lines(data: bytes, openmetrics: bool) -> list[str] | None:
    """The page's lines (the OpenMetrics ``# EOF`` taken off), or None when the page is not valid UTF-8, has
    whitespace the fast parse leaves to the slow one (:data:`_ODD_SPACE`), or an OpenMetrics end that is wrong."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    if any(char in text for char in _ODD_SPACE):
        return None
    lines = text.split("\n")
    if openmetrics:
        try:
            _strip_eof(lines)
        except ExpositionError:
            return None
    return lines


def repeat_values(data: bytes, openmetrics: bool, shape: PageShape) -> list[float] | None:
    """The sample values of a page that has ``shape`` (its comments and series as they were, in the same
    order), checked as :func:`parse_exposition` checks them, in passes over the whole page rather than a
    line at a time; None when the page differs in any way but its values (then parse it)."""
    if openmetrics != shape.openmetrics:
        return None
    lines = _plain_lines(data, openmetrics)
    if lines is None or len(lines) != shape.lines:
        return None
    parts = list(map(str.rpartition, map(lines.__getitem__, shape.sample_rows), repeat(" ")))
    if list(map(_head, parts)) != shape.keys:
        return None
    if "\n".join(map(lines.__getitem__, shape.comment_rows)) != shape.comments:
        return None
    texts = list(map(_tail, parts))
    joined = "".join(texts)
    if "_" in joined or not joined.isascii():
        return None
    try:
        values = list(map(float, texts))
    except ValueError:
        return None
    total = sum(values)
    if total - total != 0:  # a NaN or an infinity somewhere: each must be spelt as the format has it
        for value, written in zip(values, texts, strict=True):
            if value - value != 0 and written.lower() not in _SPECIAL_VALUES:
                return None
    return values


def kind_of(name: str, types: dict[str, str]) -> str:
    """The type of a sample's family: `x_bucket`/`x_count`/`x_sum` of a histogram `x`, `x_total`/`x_created` of
    an OpenMetrics counter `x`, etc.; "untyped" when the page did not say."""
    kind = types.get(name)
    if kind is not None:
        return kind
    for suffix, kinds in _SUFFIX_KINDS:
        if name.endswith(suffix):
            family = types.get(name[: -len(suffix)])
            if family is not None and family in kinds:
                return family
    return "untyped"


_SUFFIX_KINDS = (
    ("_total", frozenset({"counter"})),
    ("_created", frozenset({"counter", "histogram", "gaugehistogram", "summary"})),
    ("_bucket", frozenset({"histogram", "gaugehistogram"})),
    ("_count", frozenset({"histogram", "summary"})),
    ("_sum", frozenset({"histogram", "summary"})),
    ("_gcount", frozenset({"gaugehistogram"})),
    ("_gsum", frozenset({"gaugehistogram"})),
    ("_info", frozenset({"info"})),
)


def _parse_lines(
    lines: list[str], om: bool, types: dict[str, str], fast: bool, check_ascii: bool, known: Container[str],
    keys: list[str],
) -> list[ParsedSample]:
    samples: list[ParsedSample] = []
    append = samples.append
    add_key = keys.append
    names = _valid_names
    blocks = _blocks
    kinds = _OM_TYPES if om else _TEXT_TYPES
    metas = _om_metas if om else _text_metas
    for i, line in enumerate(lines):
        if not line:
            if om:
                raise _error(i, "a blank line", line)
            continue
        if line[0] == "#":
            meta = metas.get(line, _MISSING)
            if meta is not _MISSING:  # a HELP or TYPE line seen before
                if meta is not None:
                    types[meta[0]] = meta[1]
                continue
            head = line[:7]
            if head == "# HELP ":
                sp = line.find(" ", 7)
                if sp > 7 and (line[7:sp] in names or _is_name(line[7:sp])):
                    _remember(metas, line, None)
                    continue
            elif head == "# TYPE ":
                name, _, kind = line[7:].partition(" ")
                if kind in kinds and (name in names or _is_name(name)):
                    types[name] = kind
                    _remember(metas, line, (name, kind))
                    continue
            if om:
                _om_meta(line, i, types)
            else:
                _text_meta(line, i, types)
            continue
        if fast:
            head, _, v = line.rpartition(" ")
            if head in known:  # a series parsed before, its value and no timestamp: only the value to read
                try:
                    value = float(v)
                    if "_" not in v and not (check_ascii and not v.isascii()) and (
                            value - value == 0 or v.lower() in _SPECIAL_VALUES):
                        append(("", _NO_LABELS, value, None))
                        add_key(head)
                        continue
                except ValueError:
                    pass
            try:
                b = line.find("{")
                labels = _NO_LABELS
                if b < 0:
                    key, _, rest = line.partition(" ")
                    if key in known:
                        name = ""
                    elif key in names or _is_name(key):
                        name = key
                    else:
                        raise _Slow
                else:
                    e = line.rfind("}")
                    if e < b or line[e + 1] != " ":
                        raise _Slow
                    key = line[: e + 1]
                    rest = line[e + 2 :]
                    if key in known:
                        name = ""
                    else:
                        block = line[b + 1 : e]
                        labels = blocks.get(block)  # type: ignore[assignment]
                        if labels is None:
                            labels = _plain_labels(block)
                        name = line[:b]
                        if name not in names and not _is_name(name):
                            raise _Slow
                sp = rest.find(" ")
                if sp < 0:
                    v = rest
                    ts = None
                else:
                    v = rest[:sp]
                    ts = _om_timestamp(rest[sp + 1 :]) if om else _text_timestamp(rest[sp + 1 :])
                value = float(v)
                if "_" in v or (check_ascii and not v.isascii()):
                    raise _Slow
                if value - value != 0 and v.lower() not in _SPECIAL_VALUES:  # infinite or NaN: is it spelt so?
                    raise _Slow
                append((name, labels, value, ts))
                add_key(key)
                continue
            except (_Slow, ValueError, IndexError):
                pass
        sample = _slow_sample(line, i, om, types)
        if sample is not None:
            append(sample)
            add_key(f"\0{sample[0]}{sample[1]!r}")  # \0: never the start of a series as written
    return samples


def _remember(metas: dict[str, tuple[str, str] | None], line: str, meta: tuple[str, str] | None) -> None:
    if len(metas) >= _CACHE_MAX:
        metas.clear()
    metas[line] = meta


def _is_name(name: str) -> bool:
    """Whether name is a valid metric name (remembered when it is)."""
    if _METRIC_NAME.fullmatch(name) is None:
        return False
    if len(_valid_names) >= _CACHE_MAX:
        _valid_names.clear()
    _valid_names.add(name)
    return True


def _plain_labels(block: str) -> Labels:
    """The labels of a block `a="b",c="d"` without backslashes (remembered); _Slow for any other block."""
    if "\\" in block:
        raise _Slow
    parts = block.split('"')
    key = tuple(parts[::2])
    names = _shapes.get(key)
    if names is None:
        names = _shape(key)
    labels = tuple(zip(names, parts[1::2], strict=True))
    if len(_blocks) >= _BLOCKS_MAX:
        _blocks.clear()
    _blocks[block] = labels
    return labels


def _shape(key: tuple[str, ...]) -> tuple[str, ...]:
    """The label names of a label block's skeleton `('a=', ',b=', tail)` (remembered); _Slow unless it is
    the plain shape: valid names, each once, no `__name__`, at most a trailing comma."""
    *heads, tail = key
    if tail not in ("", ",") or (tail and not heads):
        raise _Slow
    names = []
    for j, head in enumerate(heads):
        start = 1 if j else 0
        if (j and head[:1] != ",") or head[-1:] != "=":
            raise _Slow
        name = head[start:-1]
        if _LABEL_NAME.fullmatch(name) is None or name == "__name__" or name in names:
            raise _Slow
        names.append(name)
    if len(_shapes) >= _CACHE_MAX:
        _shapes.clear()
    _shapes[key] = result = tuple(names)
    return result


# --- the page -----------------------------------------------------------------------------------------


def _split(data: bytes, om: bool) -> tuple[str, list[str]]:
    """The page as text and as lines. Invalid UTF-8 is an error, except (as in Prometheus) inside a plain
    comment of a text 0.0.4 page."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        if om:
            lineno = data.count(b"\n", 0, exc.start) + 1
            raise ExpositionError(f"line {lineno}: invalid UTF-8") from None
        text = data.decode(errors="surrogateescape")
        lines = text.split("\n")
        for i, line in enumerate(lines):
            try:
                line.encode()
            except UnicodeEncodeError:
                if not _is_plain_comment(line):
                    raise ExpositionError(f"line {i + 1}: invalid UTF-8") from None
                lines[i] = "#"
        return "\n".join(lines), lines
    return text, text.split("\n")


def _strip_eof(lines: list[str]) -> None:
    """Check and remove the OpenMetrics `# EOF` line (and the line end after it, which is optional)."""
    if lines[-1] == "" and len(lines) > 1:
        lines.pop()
    if lines[-1] != "# EOF":
        if "# EOF" in lines:
            i = lines.index("# EOF")
            raise _error(i + 1, "data after # EOF", lines[i + 1])
        raise ExpositionError(f"line {len(lines)}: the page does not end with # EOF")
    lines.pop()


def _error(i: int, what: str, line: str) -> ExpositionError:
    shown = line if len(line) <= 120 else line[:117] + "..."
    return ExpositionError(f"line {i + 1}: {what}: {shown!r}")


# --- comments and metadata ----------------------------------------------------------------------------


def _is_plain_comment(line: str) -> bool:
    body = line.lstrip(" \t")
    if body[:1] != "#":
        return False
    after = body[1:].lstrip(" \t")
    return len(after) == len(body) - 1 or not (after[:4] in ("HELP", "TYPE") and after[4:5] in (" ", "\t"))


def _text_meta(line: str, i: int, types: dict[str, str]) -> None:
    """A text 0.0.4 comment: `# TYPE name type` is recorded, `# HELP name ...` checked, others ignored."""
    if _is_plain_comment(line):
        return
    body = line.lstrip(" \t")[1:].lstrip(" \t")
    keyword = body[:4]
    rest = body[4:].lstrip(" \t")
    match = _METRIC_NAME.match(rest)
    if match is None:
        raise _error(i, f"expected a metric name after # {keyword}", line)
    if keyword == "TYPE":
        kind = rest[match.end() + 1 :]
        if kind not in _TEXT_TYPES:
            raise _error(i, f"invalid metric type {kind!r}", line)
        types[match.group()] = kind


def _om_meta(line: str, i: int, types: dict[str, str]) -> None:
    """An OpenMetrics `# HELP`, `# TYPE` or `# UNIT` line (no other comment is allowed)."""
    keyword = line[2:6]
    if line[:2] != "# " or keyword not in ("HELP", "TYPE", "UNIT") or line[6:7] != " ":
        what = "data after # EOF" if line == "# EOF" else "expected # HELP, # TYPE, # UNIT or # EOF"
        raise _error(i, what, line)
    match = _METRIC_NAME.match(line, 7)
    if match is None:
        raise _error(i, f"expected a metric name after # {keyword}", line)
    name = match.group()
    if line[match.end() : match.end() + 1] != " ":
        raise _error(i, f"expected a space and text after the metric name in # {keyword}", line)
    text = line[match.end() + 1 :]
    if keyword == "TYPE":
        if text not in _OM_TYPES:
            raise _error(i, f"invalid metric type {text!r}", line)
        types[name] = text
    elif keyword == "UNIT" and text and not name.endswith("_" + text):
        raise _error(i, f"unit {text!r} is not a suffix of the metric name", line)


# --- the slow path ------------------------------------------------------------------------------------


def _slow_sample(line: str, i: int, om: bool, types: dict[str, str]) -> ParsedSample | None:
    """Parse a line the fast path did not take: a sample, or (text 0.0.4) an indented comment or a line
    of blanks (None)."""
    try:
        if not om:
            start = _blank_end(line, 0)
            if start == len(line):
                return None
            if line[start] == "#":
                _text_meta(line, i, types)
                return None
        return _scan_sample(line, om)
    except ValueError as exc:
        raise _error(i, str(exc), line) from None


def _blank_end(line: str, pos: int) -> int:
    return _BLANKS.match(line, pos).end()  # type: ignore[union-attr]


def _scan_sample(line: str, om: bool) -> ParsedSample:
    n = len(line)
    pos = 0 if om else _blank_end(line, 0)
    match = _METRIC_NAME.match(line, pos)
    if match is None:
        raise ValueError("expected a metric name")
    name = match.group()
    pos = match.end() if om else _blank_end(line, match.end())
    labels = _NO_LABELS
    if line[pos : pos + 1] == "{":
        labels, pos = _scan_labels(line, pos + 1, om)
    if om:
        if line[pos : pos + 1] != " ":
            raise ValueError("expected a space and a value after the metric")
        end = _find(line, " ", pos + 1)
        value = _value(line[pos + 1 : end])
        return name, labels, value, _om_rest(line, end)
    pos = _blank_end(line, pos)
    end = _token_end(line, pos)
    value = _value(line[pos:end])
    pos = _blank_end(line, end)
    if pos == n:
        return name, labels, value, None
    end = _token_end(line, pos)
    timestamp = _text_timestamp(line[pos:end])
    if _blank_end(line, end) != n:
        raise ValueError("unexpected text after the timestamp")
    return name, labels, value, timestamp


def _om_rest(line: str, pos: int) -> int | None:
    """What follows an OpenMetrics sample's value: nothing, a timestamp, an exemplar, or both."""
    if pos == len(line):
        return None
    timestamp = None
    if not line.startswith(" # {", pos):
        if line[pos] != " ":
            raise ValueError("expected a space before the timestamp")
        end = _find(line, " ", pos + 1)
        timestamp = _om_timestamp(line[pos + 1 : end])
        pos = end
        if pos == len(line):
            return timestamp
        if not line.startswith(" # {", pos):
            raise ValueError("unexpected text after the timestamp")
    _labels, pos = _scan_labels(line, pos + 4, True)
    if line[pos : pos + 1] != " ":
        raise ValueError("expected a space and a value after the exemplar's labels")
    end = _find(line, " ", pos + 1)
    _value(line[pos + 1 : end])
    if end < len(line):
        _om_timestamp(line[end + 1 :])
    return timestamp


def _scan_labels(line: str, pos: int, om: bool) -> tuple[Labels, int]:
    """The label pairs from just after `{` to the matching `}`, and the position after it."""
    labels: list[tuple[str, str]] = []
    seen: set[str] = set()
    while True:
        if not om:
            pos = _blank_end(line, pos)
        if pos >= len(line):
            raise ValueError("unterminated label set")
        if line[pos] == "}":
            return tuple(labels), pos + 1
        match = _LABEL_NAME.match(line, pos)
        if match is None:
            raise ValueError("expected a label name")
        label = match.group()
        pos = match.end() if om else _blank_end(line, match.end())
        if line[pos : pos + 1] != "=":
            raise ValueError(f"expected '=' after the label name {label!r}")
        pos = pos + 1 if om else _blank_end(line, pos + 1)
        if line[pos : pos + 1] != '"':
            raise ValueError(f"expected a quoted value for the label {label!r}")
        value, pos = _quoted(line, pos + 1)
        if label in seen or label == "__name__":
            raise ValueError(f"the label {label!r} is given twice")
        seen.add(label)
        labels.append((label, value))
        if not om:
            pos = _blank_end(line, pos)
        if line[pos : pos + 1] == ",":
            pos += 1
        elif om and line[pos : pos + 1] != "}":
            raise ValueError("expected ',' or '}' after a label")


def _quoted(line: str, pos: int) -> tuple[str, int]:
    """A label value starting just after its opening quote, unescaped (`\\\\`, `\\"`, `\\n`; any other
    backslash is kept as written, as Prometheus does), and the position after its closing quote."""
    out = []
    start = pos
    quote = line.find('"', pos)
    while True:
        if quote < 0:
            raise ValueError("unterminated label value")
        backslash = line.find("\\", pos, quote)
        if backslash < 0:
            out.append(line[start:quote])
            return "".join(out), quote + 1
        escaped = line[backslash + 1]
        out.append(line[start:backslash])
        out.append(_UNESCAPE.get(escaped) or "\\" + escaped)
        pos = start = backslash + 2
        if pos > quote:
            quote = line.find('"', pos)


def _find(line: str, char: str, pos: int) -> int:
    found = line.find(char, pos)
    return len(line) if found < 0 else found


def _token_end(line: str, pos: int) -> int:
    """Where a text 0.0.4 token starting at pos ends: the next space or tab, or the end of the line."""
    return min(_find(line, " ", pos), _find(line, "\t", pos))


# --- values and timestamps ----------------------------------------------------------------------------


def _value(token: str) -> float:
    """A sample value as Go's strconv.ParseFloat reads it (no `_`, no hex, no overflow to infinity)."""
    if not token:
        raise ValueError("expected a value")
    try:
        value = float(token)
    except ValueError:
        raise ValueError(f"invalid value {token!r}") from None
    if (
        "_" in token
        or not token.isascii()
        or token.strip() != token
        or (value - value != 0 and token.lower() not in _SPECIAL_VALUES)
    ):
        raise ValueError(f"invalid value {token!r}")
    return value


def _text_timestamp(token: str) -> int:
    """A text 0.0.4 timestamp: integer milliseconds that fit an int64 (negative ones, before the epoch, as
    the format's documentation shows them)."""
    digits = token[1:] if token[:1] == "-" else token
    if not (digits.isdigit() and digits.isascii()):
        raise ValueError(f"invalid timestamp {token!r}")
    timestamp = int(token)
    if not -_INT64 <= timestamp < _INT64:
        raise ValueError(f"timestamp {token!r} out of range")
    return timestamp


def _om_timestamp(token: str) -> int:
    """An OpenMetrics timestamp: float seconds (finite), truncated to int milliseconds as Prometheus does."""
    try:
        seconds = _value(token)
    except ValueError:
        seconds = math.nan
    if seconds - seconds != 0:
        raise ValueError(f"invalid timestamp {token!r}")
    milliseconds = seconds * 1000
    if not -_INT64 <= milliseconds < _INT64:
        raise ValueError(f"timestamp {token!r} out of range")
    return int(milliseconds)
