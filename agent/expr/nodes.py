"""The syntax tree of a condition; ``str()`` of a node is canonical text that parses back to an equal node."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from agent.expr.paths import FieldPath, format_path, quote

Value = Any  # str, int, float, bool, None, or a tuple of values (a list literal)


@dataclass(frozen=True, slots=True)
class Path:
    """A field of the event."""

    keys: FieldPath
    offset: int = field(default=-1, compare=False)  # where it starts in the text

    def __str__(self) -> str:
        return format_path(self.keys)


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: string, number, true/false/null or a list of constants."""

    value: Value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Literal) and _same(self.value, other.value)

    def __hash__(self) -> int:
        return hash(repr(self.value))

    def __str__(self) -> str:
        return format_value(self.value)


Operand = Path | Literal


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right``; for ``=~`` and ``!~`` the right is a Literal holding the regex text."""

    op: str
    left: Operand
    right: Operand
    offset: int = field(default=-1, compare=False)  # where the right operand starts in the text

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True, slots=True)
class Exists:
    """``exists(path)``: the field is present (even if its value is null)."""

    path: Path

    def __str__(self) -> str:
        return f"exists({self.path})"


@dataclass(frozen=True, slots=True)
class Truth:
    """A bare field (holds when its value is exactly ``true``) or a bare ``true``/``false``."""

    operand: Operand

    def __str__(self) -> str:
        return str(self.operand)


@dataclass(frozen=True, slots=True)
class Not:
    """``not operand``."""

    operand: Node

    def __str__(self) -> str:
        inner = self.operand
        return f"not ({inner})" if isinstance(inner, And | Or) else f"not {inner}"


@dataclass(frozen=True, slots=True)
class And:
    """``a and b and ...`` (two or more)."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " and ".join(f"({item})" if isinstance(item, And | Or) else str(item) for item in self.items)


@dataclass(frozen=True, slots=True)
class Or:
    """``a or b or ...`` (two or more)."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " or ".join(f"({item})" if isinstance(item, Or) else str(item) for item in self.items)


Node = Compare | Exists | Truth | Not | And | Or


def format_value(value: Value) -> str:
    """A literal as the language writes it."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return repr(value)


def _same(a: Value, b: Value) -> bool:
    """Literal equality that tells 1 from 1.0 from true, and -0.0 from 0.0 (the text differs)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)
