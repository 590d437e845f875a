"""Codec ``regex``: the named groups of a user's regex (``(?P<name>...)`` or Fluent Bit's ``(?<name>...)``).

The pattern is compiled by :func:`agent.core.regex.compile_user_regex` (RE2: matching time is linear in the
line, whatever the pattern and the line). It is searched, not anchored, as Fluent Bit and Logstash search. A
raw line is matched as the bytes it was read as, through RE2's own ``Match`` (the binding's Python ``search``
costs several times more). An ASCII line (most are) is decoded once and the fields are cut from the text, since
its byte and character offsets agree; a line with bytes beyond ASCII has its invalid UTF-8 replaced first
(U+FFFD), as the other codecs read it, and each captured part is decoded. A group that took no part is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import re2

from agent.codecs.parsers import CONVERTERS, FAILED
from agent.core.regex import compile_user_regex, utf8

_UNANCHORED = re2._Anchor.UNANCHORED

Field = tuple[int, str, Callable[[Any], Any] | None]  # group number, field name, conversion


class RegexParser:
    """Fields from the named groups of one RE2 regex; ``fields`` renames groups (group -> field, conversion),
    every other named group is a field of its own name."""

    error = "no match for the regex"

    def __init__(self, pattern: str, fields: Mapping[str, tuple[str, str | None]] | None = None) -> None:
        compiled = compile_user_regex(pattern)
        fields = fields or {}
        self._fields: list[Field] = []
        for group, index in sorted(compiled.groupindex.items(), key=lambda item: item[1]):
            name, kind = fields.get(group, (group, None))
            self._fields.append((index, name, CONVERTERS[kind] if kind else None))
        if not self._fields:
            raise ValueError(f"regex {pattern!r}: no named group (?P<name>...) to make a field of")
        self._match = compiled._regexp.Match

    def parse_bytes(self, data: bytes) -> dict[str, Any] | None:
        if not data.isascii():  # RE2 matches nothing with an invalid UTF-8 byte: replace those first
            data = data.decode("utf-8", "replace").encode()
        return self._parse(data, None)

    def parse(self, text: str) -> dict[str, Any] | None:
        return self._parse(text.encode(), text) if text.isascii() else self._parse(utf8(text), None)

    def _parse(self, data: bytes, text: str | None) -> dict[str, Any] | None:
        """The fields of ``data`` (UTF-8); ``text`` is the same line as text when the caller has it."""
        spans = self._match(_UNANCHORED, data, 0, len(data))
        if spans[0][0] < 0:
            return None
        ascii_line = data.isascii()
        source: bytes | str = data
        if ascii_line:  # byte and character offsets agree: decode once, cut text
            source = text if text is not None else data.decode("ascii")
        out: dict[str, Any] = {}
        for index, name, convert in self._fields:
            start, end = spans[index]
            if start >= 0:
                value = source[start:end]
                if not ascii_line:
                    value = value.decode("utf-8", "replace")  # type: ignore[union-attr]
                if convert is None:
                    out[name] = value
                else:
                    converted = convert(value)
                    out[name] = value if converted is FAILED else converted
        return out
