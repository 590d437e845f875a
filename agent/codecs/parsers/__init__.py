"""Line parsers for the ``parse`` transform: one module per format, each a class with ``parse(text)``.

A parser turns one line (``str``; ``parse_bytes`` for a raw line, which a parser may read without decoding it
first) into a ``dict`` of fields, or None when the line is not in its format. Parsers never raise on input:
whatever a log line holds, the answer is a dict or None, found in time linear in the line. ``error`` is the
text ``parse`` marks a failed event with (``parse_error``).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from agent.codecs.encoding import dumps_lenient

_ESCAPE = re.compile(r'\\([\\"\]])')
FAILED = object()  # what a converter returns for a value it cannot convert
_TRUE = frozenset({"true", "yes", "on", "1", "t", "y"})
_FALSE = frozenset({"false", "no", "off", "0", "f", "n", ""})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Parser(Protocol):
    """What ``parse`` calls: ``parse`` for text, ``parse_bytes`` for a raw line; ``error`` marks a failure."""

    error: str

    def parse(self, text: str) -> dict[str, Any] | None: ...

    def parse_bytes(self, data: bytes) -> dict[str, Any] | None: ...


class TextParser:
    """Base of the parsers that read text: a raw line is decoded (invalid UTF-8 replaced) and parsed."""

    error: str = "did not parse"

    def parse(self, text: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def parse_bytes(self, data: bytes) -> dict[str, Any] | None:
        return self.parse(data.decode("utf-8", "replace"))


def unescape(text: str) -> str:
    """A quoted value's text with ``\\"``, ``\\\\`` and ``\\]`` resolved; other escapes (nginx's ``\\x16``) stay."""
    return _ESCAPE.sub(r"\1", text) if "\\" in text else text


def _to_int(value: Any) -> Any:
    """An integer of 64 bits (what sinks and Elasticsearch's ``long`` carry), from an int, a whole float or their
    text; FAILED for anything else (``1.5``, ``1e300``, ``n/a``)."""
    if type(value) is int:
        number: Any = value
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else FAILED
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            try:
                whole = float(value)
            except ValueError:
                return FAILED
            number = int(whole) if whole.is_integer() else FAILED
    else:
        return FAILED
    return number if number is FAILED or _INT64_MIN <= number <= _INT64_MAX else FAILED


def _to_float(value: Any) -> Any:
    if isinstance(value, float | int | str) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            return FAILED
    return FAILED


def _to_bool(value: Any) -> Any:
    if type(value) is bool:
        return value
    text = str(value).strip().lower() if isinstance(value, str | int | float) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return FAILED


def _to_string(value: Any) -> Any:
    """Text as it is; a number as Python writes it; anything else (true, null, an object, a list) as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return dumps_lenient(value).decode()


CONVERTERS = {"int": _to_int, "integer": _to_int, "float": _to_float, "bool": _to_bool, "boolean": _to_bool,
              "string": _to_string, "str": _to_string}


def convert_fields(fields: dict[str, Any], types: dict[str, Any]) -> int:
    """Converts the values of ``fields`` named in ``types`` (name -> a ``CONVERTERS`` function) in place;
    a value that does not convert stays as it was. Returns how many did not convert."""
    failed = 0
    for name, to in types.items():
        value = fields.get(name, FAILED)
        if value is FAILED:
            continue
        converted = to(value)
        if converted is FAILED:
            failed += 1
        else:
            fields[name] = converted
    return failed
