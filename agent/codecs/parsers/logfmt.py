"""Codec ``logfmt``: ``level=info msg="request done" took=12ms cached`` (Heroku / go-logfmt).

A key is a run of characters other than space, ``=`` and ``"``; its value is a double-quoted string (``\\"`` and
``\\\\`` escaped) or the text up to the next space; a key without ``=`` is ``true``. A quote left open runs to
the end of the line. Every part of the regex always matches forward, so a line is read in linear time whatever
it holds. A line without a single key does not parse.
"""

from __future__ import annotations

import re
from typing import Any

from agent.codecs.parsers import TextParser, unescape

_PAIR = re.compile(r'([^\s="]+)(?:=(?:"((?:[^"\\]|\\.)*)"?|([^\s"]*)))?', re.DOTALL)


class LogfmtParser(TextParser):
    """Fields from ``key=value`` pairs separated by spaces."""

    error = "not logfmt"

    def parse(self, text: str) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for match in _PAIR.finditer(text):
            key, quoted, bare = match.groups()
            if quoted is not None:
                out[key] = unescape(quoted)
            else:
                out[key] = True if bare is None else bare
        return out or None
