"""Codec ``csv``: one line of comma-separated values, named by ``columns:``.

Quoting is the usual (RFC 4180: ``"a, b"``, ``""`` for a quote), read by Python's ``csv`` module one line at a
time, so a quote left open ends with its line instead of taking the next one. Values past the named columns are
``column<N>`` (1-based, as Logstash names them); a short line sets only the columns it has.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any

from agent.codecs.parsers import TextParser

# The module's default refuses a value over 128 KiB (csv.Error): a line's length is bounded where it is read
# (a source's max_line_bytes), so a long value parses as Logstash's csv filter parses it. Process-wide; raised only.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


class CsvParser(TextParser):
    """Fields from the values of a CSV line."""

    error = "not CSV"

    def __init__(self, columns: Sequence[str], delimiter: str = ",", quote: str = '"') -> None:
        if len(delimiter) != 1 or len(quote) != 1 or delimiter == quote:
            raise ValueError("delimiter and quote must be two different single characters")
        self.columns = list(columns)
        self.delimiter = delimiter
        self.quote = quote

    def parse(self, text: str) -> dict[str, Any] | None:
        try:
            row = next(csv.reader((text,), delimiter=self.delimiter, quotechar=self.quote, strict=False), None)
        except csv.Error:  # a CR or LF in an unquoted value; a NUL on old Pythons
            return None
        if not row:
            return None
        columns = self.columns
        named = len(columns)
        return {columns[i] if i < named else f"column{i + 1}": value for i, value in enumerate(row)}
