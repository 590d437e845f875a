"""Codec ``grok``: Logstash's ``%{PATTERN:field}`` and ``%{PATTERN:field:int}`` syntax, compiled to ONE regex.

``%{NAME}`` is replaced by the pattern's regex (recursively), ``%{NAME:field}`` by the same inside a group
that becomes ``field``, and ``:int`` or ``:float`` converts what it captured (a value that does not convert
stays text). A field written as Logstash's field reference, ``%{IP:[client][ip]}`` (as its ECS patterns name
fields), is nested: ``{"client": {"ip": ...}}``; ``client.ip`` is one key, as in Logstash. Inline named
groups (``(?<queue_id>[0-9A-F]{10,11})``) are fields too; unnamed groups capture nothing. The library is
:mod:`agent.codecs.parsers.grok_patterns`; ``patterns:`` in the config adds to it or replaces its entries.
The expanded regex is compiled once, at load, by the same RE2 path as the ``regex`` codec, so a line is
matched in time linear in its length; a name that is not defined, a pattern that refers to itself, or what
RE2 cannot do is a config error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.codecs.parsers.grok_patterns import PATTERNS
from agent.codecs.parsers.regex import RegexParser
from agent.core.regex import compile_user_regex
from agent.expr.paths import FieldPath, set_field

_REFERENCE = re.compile(r"%\{(\w+)(?::([^:{}]+))?(?::([^:{}]*))?\}")
_TYPES = {"int": "int", "integer": "int", "float": "float"}
_MAX_DEPTH = 64
_REFERENCE_PATH = re.compile(r"(?:\[[^\[\]]+\])+")  # Logstash's [a][b]


class GrokParser(RegexParser):
    """The fields of a grok pattern."""

    error = "no match for the grok pattern"

    def __init__(self, pattern: str, patterns: Mapping[str, str] | None = None) -> None:
        library = {**PATTERNS, **(patterns or {})}
        try:
            self._compile(pattern, library)
        except ValueError:
            for name in patterns or {}:  # a custom pattern that fails on its own is named, as the config's key
                _check_alone(name, library)
            raise

    def _compile(self, pattern: str, library: Mapping[str, str]) -> None:
        fields: list[tuple[str, str, str | None]] = []  # group name, field, type
        regex = _expand(pattern, library, fields, ())
        nested: dict[str, FieldPath] = {}  # a flat name the regex gives -> where it goes
        renamed: dict[str, tuple[str, str | None]] = {}
        for group, field, kind in fields:
            path = tuple(field[1:-1].split("][")) if _REFERENCE_PATH.fullmatch(field) else (field,)
            if len(path) > 1:
                nested[field] = path
            renamed[group] = (path[0] if len(path) == 1 else field, kind)
        try:
            super().__init__(regex, renamed)
        except ValueError as exc:  # say it of the user's pattern, not of its expansion
            reason = str(exc).removeprefix(f"regex {regex!r}: ")
            raise ValueError(f"grok pattern {pattern!r}: {reason}") from None
        if nested:  # only such a pattern pays for nesting; the others match as the regex codec does
            flat_text, flat_bytes = self.parse, self.parse_bytes
            self.parse = lambda text: _nest(flat_text(text), nested)  # type: ignore[method-assign]
            self.parse_bytes = lambda data: _nest(flat_bytes(data), nested)  # type: ignore[method-assign]


def _check_alone(name: str, library: Mapping[str, str]) -> None:
    """ValueError ``patterns.NAME: why`` if the pattern ``name`` of ``library`` does not compile by itself."""
    try:
        regex = _expand(library[name], library, [], (name,))
    except ValueError as exc:
        raise ValueError(f"patterns.{name}: {exc}") from None
    try:
        compile_user_regex(regex)
    except ValueError as exc:
        raise ValueError(f"patterns.{name}: {str(exc).removeprefix(f'regex {regex!r}: ')}") from None


def _nest(fields: dict[str, Any] | None, nested: Mapping[str, FieldPath]) -> dict[str, Any] | None:
    """``fields`` with those named ``[a][b]`` moved to where they refer; one blocked by a value that is not an
    object (``%{WORD:a} %{WORD:[a][b]}``) keeps its flat name."""
    if fields is not None:
        for name, path in nested.items():
            if name in fields and set_field(fields, path, fields[name]):
                del fields[name]
    return fields


def _expand(pattern: str, library: Mapping[str, str], fields: list[tuple[str, str, str | None]],
            stack: tuple[str, ...]) -> str:
    """``pattern`` with every ``%{...}`` replaced, its unnamed groups made non-capturing."""
    if len(stack) > _MAX_DEPTH:
        raise ValueError(f"grok patterns nest deeper than {_MAX_DEPTH}: {' -> '.join(stack[:8])} ...")
    out: list[str] = []
    last = 0
    for ref in _REFERENCE.finditer(pattern):
        out.append(non_capturing(pattern[last:ref.start()]))
        last = ref.end()
        name, field, kind = ref.groups()
        if name in stack:
            raise ValueError(f"grok pattern %{{{name}}} refers to itself: {' -> '.join((*stack, name))}")
        if name not in library:
            raise ValueError(f"grok pattern %{{{name}}} is not defined (add it under patterns:)")
        body = _expand(library[name], library, fields, (*stack, name))
        if field is None:
            out.append(f"(?:{body})")
            continue
        if kind is not None and kind not in _TYPES:
            raise ValueError(f"%{{{name}:{field}:{kind}}}: grok converts only to int or float")
        group = f"_g{len(fields)}"
        fields.append((group, field, _TYPES.get(kind or "")))
        out.append(f"(?P<{group}>{body})")
    out.append(non_capturing(pattern[last:]))
    return "".join(out)


def non_capturing(regex: str) -> str:
    """``regex`` with its plain groups ``(...)`` turned into ``(?:...)`` (escapes and classes kept)."""
    if "(" not in regex:
        return regex
    out: list[str] = []
    i, end, in_class = 0, len(regex), False
    while i < end:
        char = regex[i]
        if char == "\\":
            out.append(regex[i:i + 2])
            i += 2
            continue
        if in_class:
            if char == "[" and regex.startswith(":", i + 1):  # [[:alnum:]_]: a POSIX class inside a class
                close = regex.find(":]", i + 2)
                if close > 0:
                    out.append(regex[i:close + 2])
                    i = close + 2
                    continue
            elif char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            skip = 3 if regex.startswith("^]", i + 1) else 2 if regex.startswith("]", i + 1) else 1
            out.append(regex[i:i + skip])  # a ] right after [ or [^ is a member, not the end
            i += skip
            continue
        elif char == "(" and not regex.startswith("?", i + 1):
            out.append("(?:")
            i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)
