"""Transform `modify`: add, set, rename, move, copy and remove fields, and add tags.

The operations run in one fixed order, each on the result of the ones before (as Fluent Bit's modify applies
its rules one after another): ``rename``, ``move``, ``copy``, ``add``, ``set``, ``remove``, ``tags_add``; within
one operation, in the order written. So ``copy: {message: original}`` keeps a value that ``set`` then replaces,
and ``set: {trace_id: "{{ request_id }}"}`` reads a field that ``remove`` then drops.

Field names are paths (``kubernetes.labels.app``; see :mod:`agent.expr.paths`); a plain name is a top-level
key, which takes the fast path. Values of ``add`` and ``set`` may be templates: ``"{{ request_id }}"`` (or
Logstash's ``%{request_id}``, ``%{[fields][service]}``). A value that is exactly one reference keeps the
field's type; a reference inside text is rendered as text (non-text values as JSON). When a referenced field
is missing, that value is not set on that event. ``${VAR}`` is the config loader's: read once, at load.

A write through a value that is not an object (``set: {a.b: 1}`` where ``a`` is text) leaves the event as it
is and is counted in ``agent_component_errors_total{error_type="field_conflict"}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from agent.config.model import TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch, Kind
from agent.core.events import own_parents, to_log_events
from agent.core.footprint import parsed_bytes
from agent.expr.paths import delete_field, format_path, get_field, parse_path, set_field

MISSING: Any = object()
CONFLICTS = (TypeError, ValueError, KeyError, IndexError, AttributeError,  # a path through a non-object
             RecursionError)  # a value nested past the recursion limit (orjson parses 1024 levels)
_PLAIN = re.compile(r"[A-Za-z_@][A-Za-z0-9_@\-]*")  # a top-level key written as itself
_REFERENCE = re.compile(r"\{\{(.*?)\}\}|%\{(.*?)\}")
_BRACKETED = re.compile(r"(?:\[[^\[\]]+\])+")  # Logstash's [fields][service]

Op = Callable[[dict[str, Any]], None]


class ModifyConfig(TransformConfig, tag="modify"):
    """Field operations, applied in the order rename, move, copy, add, set, remove, tags_add.

    Field names may be nested paths (``kubernetes.labels.app``). Values of ``add`` and ``set`` may name fields (``"{{
    request_id }}"``, ``%{request_id}``, ``%{[fields][service]}``); a value that is exactly one reference keeps the
    field's type.
    """

    rename: dict[str, str] = {}
    """old: new, only when new does not exist yet (Fluent Bit's Rename)."""
    move: dict[str, str] = {}
    """old: new, replacing new (Fluent Bit's Hard_rename, Logstash's rename)."""
    copy: dict[str, str] = {}
    """source: target, replacing target (Fluent Bit's Hard_copy, Logstash's copy)."""
    add: dict[str, Any] = {}
    """field: value, only when the field does not exist; a value may name fields ('{{ request_id }}', %{request_id})."""
    set: dict[str, Any] = {}
    """field: value, always; a value may name fields."""
    remove: list[str] = []
    """Field paths to delete."""
    tags_add: list[str] = []
    """Tags appended to tags_field (made a list), each at most once."""
    tags_field: str = "tags"
    """The field tags_add appends to."""

    def __post_init__(self) -> None:
        compile_ops(self)  # a bad path or template is a config error at its key


def compile_ops(config: ModifyConfig) -> tuple[list[Op], int]:
    """The operations as functions over one event, and how many fields they may add to an event."""
    ops: list[Op] = []
    for old, new in config.rename.items():
        ops.append(_move(old, new, replace=False))
    for old, new in config.move.items():
        ops.append(_move(old, new, replace=True))
    for source, target in config.copy.items():
        ops.append(_copy(source, target))
    ops.extend(_assignments(config.add, only_absent=True))
    ops.extend(_assignments(config.set, only_absent=False))
    for path in config.remove:
        ops.append(_remover(path))
    if config.tags_add:
        ops.append(_tagger(config.tags_field, config.tags_add))
    added = len(config.copy) + len(config.add) + len(config.set) + bool(config.tags_add)
    return ops, added


@register("transform", "modify", ModifyConfig, "Adds, sets, renames, moves, copies and removes fields; adds tags.")
class ModifyTransform:
    """Applies the configured field operations to every event of a batch, in place."""

    mutates = True

    def __init__(self, config: ModifyConfig, ctx: BuildContext) -> None:
        self.config = config
        self.stats = ctx.stats
        self.ops, self.added = compile_ops(config)

    def process(self, batch: Batch) -> Batch | None:
        if batch.kind is Kind.METRICS or not self.ops:
            return batch
        to_log_events(batch)
        ops, failed = self.ops, 0
        for event in batch.events:
            for op in ops:
                try:
                    op(event)
                except CONFLICTS:
                    failed += 1
        if failed:
            self.stats.error("field_conflict", "processing", failed)
        if self.added:
            batch.byte_size = parsed_bytes(batch.byte_size, len(batch.events), len(batch.events) * self.added, False)
        return batch


# -- paths ---------------------------------------------------------------------------------------------------


def _getter(text: str) -> Callable[[dict[str, Any]], Any]:
    """The value at ``text`` in an event, or MISSING."""
    if _PLAIN.fullmatch(text):
        return lambda event: event.get(text, MISSING)
    path = parse_path(text)
    return lambda event: get_field(event, path, MISSING)


def _setter(text: str) -> Callable[[dict[str, Any], Any], None]:
    if _PLAIN.fullmatch(text):

        def put(event: dict[str, Any], value: Any) -> None:
            event[text] = value

        return put
    path = parse_path(text)

    def put_path(event: dict[str, Any], value: Any) -> None:
        own_parents(event, path)
        if not set_field(event, path, value):
            raise TypeError(f"{text}: a value on the way is not an object")

    return put_path


def _popper(text: str) -> Callable[[dict[str, Any]], Any]:
    """Removes the field at ``text``; returns its value, or MISSING."""
    if _PLAIN.fullmatch(text):
        return lambda event: event.pop(text, MISSING)
    path = parse_path(text)

    def pop(event: dict[str, Any]) -> Any:
        value = get_field(event, path, MISSING)
        if value is not MISSING:
            own_parents(event, path)
            delete_field(event, path)
        return value

    return pop


def _fresh(value: Any) -> Any:
    """A copy of the containers in ``value`` (scalars are shared), so two fields never alias one object."""
    if type(value) is dict:
        return {k: _fresh(v) for k, v in value.items()}
    if type(value) is list:
        return [_fresh(v) for v in value]
    return value


# -- operations ----------------------------------------------------------------------------------------------


def _move(old: str, new: str, replace: bool) -> Op:
    get_new, pop_old, put = _getter(new), _popper(old), _setter(new)

    def move(event: dict[str, Any]) -> None:
        if not replace and get_new(event) is not MISSING:
            return
        value = pop_old(event)
        if value is not MISSING:
            put(event, value)

    return move


def _copy(source: str, target: str) -> Op:
    get, put = _getter(source), _setter(target)

    def copy(event: dict[str, Any]) -> None:
        value = get(event)
        if value is not MISSING:
            put(event, _fresh(value))

    return copy


def _assignments(fields: dict[str, Any], only_absent: bool) -> list[Op]:
    """``add`` or ``set``: constants of top-level keys in one op, every other field in its own."""
    constants: dict[str, Any] = {}
    ops: list[Op] = []
    for path, raw in fields.items():
        value = compile_value(raw)
        if _PLAIN.fullmatch(path) and value is None and type(raw) not in (dict, list):
            constants[path] = raw
        else:
            ops.append(_assign(path, raw if value is None else value, templated=value is not None,
                               only_absent=only_absent))
    if constants and only_absent:
        items = tuple(constants.items())

        def add_constants(event: dict[str, Any]) -> None:
            setdefault = event.setdefault
            for key, value in items:
                setdefault(key, value)

        ops.insert(0, add_constants)
    elif constants:
        ops.insert(0, lambda event: event.update(constants))
    return ops


def _assign(path: str, value: Any, templated: bool, only_absent: bool) -> Op:
    get, put = _getter(path), _setter(path)

    def assign(event: dict[str, Any]) -> None:
        if only_absent and get(event) is not MISSING:
            return
        new = value(event) if templated else _fresh(value)
        if new is not MISSING:
            put(event, new)

    return assign


def _tagger(field: str, tags: list[str]) -> Op:
    get, put = _getter(field), _setter(field)
    wanted = list(dict.fromkeys(tags))

    def tag(event: dict[str, Any]) -> None:
        current = get(event)
        if current is MISSING or current is None:
            put(event, list(wanted))
        elif type(current) is list:
            missing = [t for t in wanted if t not in current]
            if missing:
                put(event, current + missing)  # a new list: another consumer may share the old one
        elif type(current) is str:
            put(event, [current, *(t for t in wanted if t != current)])
        else:
            raise TypeError(f"{field} is neither a list nor text")

    return tag


def _remover(path: str) -> Op:
    pop = _popper(path)

    def remove(event: dict[str, Any]) -> None:
        pop(event)

    return remove


# -- templates -----------------------------------------------------------------------------------------------


def _reference_path(text: str) -> str:
    """The field path a ``{{ ... }}`` or ``%{...}`` reference names (Logstash's ``[a][b]`` is ``a.b``)."""
    text = text.strip()
    if not text:
        raise ValueError("empty field reference in template")
    if text.startswith("+"):
        raise ValueError(f"%{{{text}}}: Logstash's date references are not supported here; use a field")
    if _BRACKETED.fullmatch(text):
        keys = text[1:-1].split("][")
        return format_path(tuple(keys))
    return text


def compile_value(raw: Any) -> Callable[[dict[str, Any]], Any] | None:
    """A function rendering template ``raw`` for an event (MISSING when a field it names is missing), or None
    when ``raw`` is not a template. A bad reference raises ValueError."""
    if type(raw) is not str or ("{{" not in raw and "%{" not in raw):
        return None
    parts: list[str | Callable[[dict[str, Any]], Any]] = []
    at = 0
    for match in _REFERENCE.finditer(raw):
        if match.start() > at:
            parts.append(raw[at:match.start()])
        parts.append(_getter(_reference_path(match.group(1) if match.group(1) is not None else match.group(2))))
        at = match.end()
    if at < len(raw):
        parts.append(raw[at:])
    if not any(callable(p) for p in parts):
        return None
    if len(parts) == 1:
        only = parts[0]
        assert callable(only)
        return lambda event: _fresh(only(event))
    return _renderer(parts)


def _renderer(parts: list[str | Callable[[dict[str, Any]], Any]]) -> Callable[[dict[str, Any]], Any]:
    def render(event: dict[str, Any]) -> Any:
        out = []
        for part in parts:
            if type(part) is str:
                out.append(part)
                continue
            value = part(event)  # type: ignore[operator]
            if value is MISSING:
                return MISSING
            out.append(value if type(value) is str else orjson.dumps(value, default=str).decode())
        return "".join(out)

    return render
