"""What the stateful stages (``throttle``, ``sample``, ``dedupe``, ``log_to_metric``) know an event by.

A ``key:`` setting is a field path (``service``, ``kubernetes.labels.app``) or a template of paths
(``"{{ service }}/{{ level }}"``). Its value for an event is text: a string as it is, any other value as its
JSON (``5`` and ``"5"`` are the same key); a missing field gives None. Keys are kept in memory by the stages, so
one longer than :data:`MAX_KEY_CHARS` is kept as a 16-byte digest of itself: a hostile field (a 100 MB value)
costs the stage no more memory than a short one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from agent.expr.paths import get_field, parse_path

MAX_KEY_CHARS = 256  # longer keys are remembered by their digest
_TEMPLATE_FIELD = re.compile(r"\{\{(.*?)\}\}")
_MISSING = object()
T = TypeVar("T")


def as_text(value: Any) -> str:
    """A field's value as key text: a string itself, anything else its JSON (its ``str`` if it has none)."""
    if type(value) is str:
        return value
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):  # an integer past 64 bits, an object of no JSON type, too deep
        try:
            return str(value)
        except RecursionError:  # nested past the recursion limit: all such values share one key
            return f"<{type(value).__name__} nested too deep>"


def digest(data: bytes) -> bytes:
    """A 16-byte digest of ``data``, the same in every process and after every restart."""
    return hashlib.blake2b(data, digest_size=16).digest()


def bounded(text: str) -> str | bytes:
    """``text``, or its digest if it is longer than MAX_KEY_CHARS (a digest never equals a text key)."""
    if len(text) <= MAX_KEY_CHARS:
        return text
    return digest(text.encode("utf-8", "surrogatepass"))


def stable_hash(key: str | bytes) -> int:
    """A 64-bit hash of a key, the same in every process (Python's own ``hash`` of text is salted per process)."""
    data = key if type(key) is bytes else key.encode("utf-8", "surrogatepass")  # type: ignore[union-attr]
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def compile_key(spec: str, null_is_missing: bool = False) -> Callable[[Any], str | None]:
    """The text of ``spec`` (a field path or a ``{{ path }}`` template) for a dict event; None when a field it
    names is missing (or null, with ``null_is_missing``). Raises ValueError for a bad path or template."""
    null = _MISSING if not null_is_missing else None  # a value taken for missing beside _MISSING
    parts = _TEMPLATE_FIELD.split(spec)
    if len(parts) == 1:
        if "{{" in spec or "}}" in spec:
            raise ValueError(f"unbalanced braces in key template {spec!r}")
        path = _path(spec)

        def field_key(event: Any) -> str | None:
            value = get_field(event, path, _MISSING)
            return None if value is _MISSING or value is null else as_text(value)

        return field_key
    texts = parts[0::2]
    if any("{{" in text or "}}" in text for text in texts):
        raise ValueError(f"unbalanced braces in key template {spec!r}")
    paths = [_path(text) for text in parts[1::2]]

    def template_key(event: Any) -> str | None:
        out = [texts[0]]
        for path, text in zip(paths, texts[1:], strict=True):
            value = get_field(event, path, _MISSING)
            if value is _MISSING or value is null:
                return None
            out.append(as_text(value))
            out.append(text)
        return "".join(out)

    return template_key


def _path(text: str) -> Any:
    text = text.strip()
    if not text:
        raise ValueError("a key names no field")
    return parse_path(text)


def at_key(key: str, check: Callable[[str], T], text: str) -> T:
    """``check(text)`` for a stage's config setting ``key`` (``"exclude"``, ``"labels.service"``): its ValueError
    is raised again as ``"key: message"``, so that the config error names that key and points at its line."""
    try:
        return check(text)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None
