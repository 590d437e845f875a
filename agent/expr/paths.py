"""Field paths: ``kubernetes.labels.app``, ``"odd key".x``, ``labels["app.kubernetes.io/name"]``, ``tags[0]``.

A path is parsed once into a ``FieldPath``, a tuple of keys (``str`` for a dict key, ``int`` for a
list index, negative counting from the end), and read or written through that tuple: no parsing on
the hot path. A leading ``.`` is optional (``.message``), and lets a field be named like a keyword
(``.not``). A name is letters, digits, ``_``, ``@`` and ``-`` (not first); anything else is quoted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.expr.errors import ExprError
from agent.expr.tokens import KEYWORDS, Token, tokenize

FieldPath = tuple[str | int, ...]

_EMPTY: dict[str, Any] = {}
_MISSING = object()


def parse_path(text: str) -> FieldPath:
    """The keys of the path ``text``; ExprError (a ValueError) with the column if it is not one path."""
    tokens = tokenize(text)
    keys, i = read_path(tokens, 0, text)
    if tokens[i].kind != "end":
        raise ExprError.at("unexpected text after the field path", text, tokens[i].offset)
    return keys


def read_path(tokens: list[Token], i: int, text: str) -> tuple[FieldPath, int]:
    """Read a path starting at ``tokens[i]``: its keys and the index of the token after it."""
    keys: list[str | int] = []
    token = tokens[i]
    if token.kind == "punct" and token.value == ".":
        i += 1
        token = tokens[i]
        if token.kind not in ("name", "string"):
            raise ExprError.at("expected a field name after '.'", text, token.offset)
    elif not (token.kind == "string" or (token.kind == "name" and token.value not in KEYWORDS)):
        raise ExprError.at("expected a field path", text, token.offset)
    keys.append(token.value)
    i += 1
    while True:
        token = tokens[i]
        if token.kind != "punct" or token.value not in ".[":
            return tuple(keys), i
        if token.value == ".":
            name = _at(tokens, i + 1)
            if name.kind not in ("name", "string"):
                raise ExprError.at("expected a field name after '.'", text, name.offset)
            keys.append(name.value)
            i += 2
            continue
        key, close = _at(tokens, i + 1), _at(tokens, i + 2)
        if (key.kind == "number" and type(key.value) is int) or key.kind == "string":
            if close.kind != "punct" or close.value != "]":
                raise ExprError.at("expected ']'", text, close.offset)
            keys.append(key.value)
            i += 3
            continue
        raise ExprError.at("expected an index or a quoted key in [...]", text, key.offset)


def _at(tokens: list[Token], i: int) -> Token:
    """``tokens[i]``, or the end token past the end."""
    return tokens[min(i, len(tokens) - 1)]


def format_path(keys: FieldPath) -> str:
    """The canonical text of a path, which ``parse_path`` reads back to the same keys."""
    parts: list[str] = []
    for n, key in enumerate(keys):
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif _is_name(key) and (n or key not in KEYWORDS):
            parts.append(f".{key}" if n else key)
        else:
            parts.append(f".{quote(key)}")
    return "".join(parts)


def quote(text: str) -> str:
    """``text`` as a double-quoted string literal."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _is_name(key: str) -> bool:
    try:
        tokens = tokenize(key)
    except ExprError:
        return False
    return len(tokens) == 2 and tokens[0].kind == "name" and tokens[0].value == key


def get_field(event: Any, path: FieldPath, default: Any = None) -> Any:
    """The value at ``path`` in ``event`` (dicts and lists), or ``default`` where it is absent."""
    value = event
    for key in path:
        if isinstance(key, str):
            if not isinstance(value, dict):
                return default
            value = value.get(key, _MISSING)
            if value is _MISSING:
                return default
        elif isinstance(value, list) and -len(value) <= key < len(value):
            value = value[key]
        else:
            return default
    return value


def has_field(event: Any, path: FieldPath) -> bool:
    """Whether ``path`` is present in ``event`` (a null value is present)."""
    return get_field(event, path, _MISSING) is not _MISSING


def set_field(event: dict[str, Any], path: FieldPath, value: Any) -> bool:
    """Set ``path`` to ``value``, creating missing dicts on the way; False (nothing changed) where the way
    is blocked: a value that is not a dict (or not a list, for an index) or an index out of range."""
    if not path:
        return False
    target: Any = event
    for n, key in enumerate(path[:-1]):
        nxt = _child(target, key)
        if nxt is _MISSING:
            if not isinstance(key, str) or not isinstance(target, dict) or isinstance(path[n + 1], int):
                return False
            nxt = target[key] = {}
        target = nxt
    last = path[-1]
    if isinstance(last, str) and isinstance(target, dict):
        target[last] = value
        return True
    if isinstance(last, int) and isinstance(target, list) and -len(target) <= last < len(target):
        target[last] = value
        return True
    return False


def delete_field(event: dict[str, Any], path: FieldPath) -> bool:
    """Remove ``path`` from ``event``; whether it was there."""
    if not path:
        return False
    parent = get_field(event, path[:-1], _MISSING) if len(path) > 1 else event
    last = path[-1]
    if isinstance(last, str) and isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    if isinstance(last, int) and isinstance(parent, list) and -len(parent) <= last < len(parent):
        del parent[last]
        return True
    return False


def _child(value: Any, key: str | int) -> Any:
    if isinstance(key, str):
        return value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
    if isinstance(value, list) and -len(value) <= key < len(value):
        return value[key]
    return _MISSING


def compile_getter(path: FieldPath) -> Callable[[Any], Any]:
    """A function reading ``path`` from an event, None where absent: the fastest form for its shape."""
    if len(path) == 1 and isinstance(path[0], str):
        key = path[0]
        return lambda event: event.get(key)
    if len(path) == 2 and isinstance(path[0], str) and isinstance(path[1], str):
        first, second = path

        def get2(event: Any) -> Any:
            try:
                return event.get(first, _EMPTY).get(second)
            except AttributeError:  # not a dict on the way
                return None

        return get2
    if all(isinstance(key, str) for key in path):
        def get_n(event: Any) -> Any:
            value = event
            try:
                for key in path:
                    value = value.get(key, _EMPTY)
            except AttributeError:
                return None
            return None if value is _EMPTY else value

        return get_n
    return lambda event: get_field(event, path)
