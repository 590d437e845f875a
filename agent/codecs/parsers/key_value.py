"""Codec ``key_value``: ``key=value`` pairs with configurable separators (Logstash's ``kv``, Vector's
``parse_key_value``).

Pairs are split at ``field_split`` (default a space) and each at its first ``value_split`` (default ``=``); a
value may be double-quoted (then it may hold either separator; ``\\"`` and ``\\\\`` are escaped). A part
without ``value_split`` is skipped. A line is read once, left to right, with ``str.find``: linear time.
"""

from __future__ import annotations

import re
from typing import Any

from agent.codecs.parsers import TextParser, unescape

_QUOTED = re.compile(r'(?:[^"\\]|\\.)*', re.DOTALL)


class KeyValueParser(TextParser):
    """Fields from ``key<value_split>value`` pairs separated by ``field_split``."""

    error = "no key=value pairs"

    def __init__(self, field_split: str = " ", value_split: str = "=") -> None:
        if not field_split or not value_split or field_split == value_split:
            raise ValueError("field_split and value_split must be two different, non-empty texts")
        self.field_split = field_split
        self.value_split = value_split

    def parse(self, text: str) -> dict[str, Any] | None:
        fs, vs = self.field_split, self.value_split
        if '"' not in text:
            out: dict[str, Any] = {}
            for part in text.split(fs):
                key, sep, value = part.partition(vs)
                if sep and key:
                    out[key] = value
            return out or None
        return self._parse_quoted(text, fs, vs) or None

    @staticmethod
    def _parse_quoted(text: str, fs: str, vs: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        i, end = 0, len(text)
        while i < end:
            at = text.find(vs, i)
            if at < 0:
                break
            key = text[i:at]
            cut = key.rfind(fs)  # parts before this one that had no value_split
            if cut >= 0:
                key = key[cut + len(fs):]
            start = at + len(vs)
            if text.startswith('"', start):
                quoted = _QUOTED.match(text, start + 1)
                stop = quoted.end() if quoted else start + 1
                value = unescape(text[start + 1:stop])
                i = stop + 1  # past the closing quote (or the end)
                if text.startswith(fs, i):
                    i += len(fs)
            else:
                stop = text.find(fs, start)
                if stop < 0:
                    stop = end
                value = text[start:stop]
                i = stop + len(fs)
            if key:
                out[key] = value
        return out
