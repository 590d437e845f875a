"""The tokenizer of the expression language: text to a list of tokens, each with its offset."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from agent.expr.errors import ExprError

KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "starts_with", "ends_with", "exists",
                      "true", "false", "null"})
OPERATORS = ("==", "!=", "<=", ">=", "=~", "!~", "<", ">")

# Config text, not log lines: Python's re is fine here, and none of these can backtrack badly.
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w@.]))
  | (?P<name>(?:[^\W\d]|@)[\w@-]*)
  | (?P<op>==|!=|<=|>=|=~|!~|<|>)
  | (?P<punct>[.\[\](),])
  | (?P<quote>["'])
  | (?P<slash>/)
""", re.VERBOSE)
# What users of other languages type, and what this one says instead (the language's own operators never get here).
_HINTS = {"&&": ": write 'and'", "||": ": write 'or'", "=": ": compare with '=='", "!": ": write 'not'"}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'", "/": "/"}


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``kind`` is name, number, string, regex, op, punct or end; ``value`` its meaning."""

    kind: str
    value: Any
    offset: int


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``end`` token; ExprError at the first that is not valid."""
    tokens: list[Token] = []
    i, end = 0, len(text)
    while i < end:
        match = _TOKEN.match(text, i)
        if match is None:
            hint = _HINTS.get(text[i:i + 2]) or _HINTS.get(text[i], "")
            raise ExprError.at(f"unexpected character {text[i]!r}{hint}", text, i)
        kind = match.lastgroup
        if kind == "space":
            i = match.end()
        elif kind == "number":
            tokens.append(Token("number", _number(match.group(), text, i), i))
            i = match.end()
        elif kind == "quote":
            value, stop = _string(text, i)
            tokens.append(Token("string", value, i))
            i = stop
        elif kind == "slash":
            value, stop = _regex(text, i)
            tokens.append(Token("regex", value, i))
            i = stop
        else:
            tokens.append(Token(str(kind), match.group(), i))
            i = match.end()
    tokens.append(Token("end", None, end))
    return tokens


def _number(literal: str, text: str, offset: int) -> int | float:
    if not any(c in literal for c in ".eE"):
        try:
            return int(literal)
        except ValueError:  # past Python's limit on digits
            raise ExprError.at(f"number {literal[:20]}... is too long", text, offset) from None
    value = float(literal)
    if not math.isfinite(value):
        raise ExprError.at(f"number {literal} is out of range", text, offset)
    return value


def _string(text: str, start: int) -> tuple[str, int]:
    """A quoted string from ``start`` (its quote) and the offset after it. An unknown escape is kept as
    written (``"\\d+"`` is the regex ``\\d+``)."""
    out: list[str] = []
    quote, i, end = text[start], start + 1, len(text)
    while i < end:
        char = text[i]
        if char == quote:
            return "".join(out), i + 1
        if char != "\\":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in ("u", "x"):
            width = 4 if nxt == "u" else 2
            digits = text[i + 2:i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ExprError.at(f"\\{nxt} needs {width} hex digits", text, i)
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif nxt:
            out.append("\\" + nxt)
            i += 2
        else:
            break
    raise ExprError.at("unterminated string", text, start)


def _regex(text: str, start: int) -> tuple[str, int]:
    """A ``/.../`` regex from ``start`` and the offset after it; ``\\/`` is a slash, other escapes stay."""
    out: list[str] = []
    i, end = start + 1, len(text)
    while i < end:
        char = text[i]
        if char == "/":
            return "".join(out), i + 1
        if char == "\\" and i + 1 < end:
            nxt = text[i + 1]
            out.append("/" if nxt == "/" else "\\" + nxt)
            i += 2
            continue
        out.append(char)
        i += 1
    raise ExprError.at("unterminated regex (a / without its closing /)", text, start)
