"""Conditions over a whole batch: one truth value per event, computed a column at a time.

A stage that tests every event of a batch (``filter``, ``route``) asks for a :data:`Column`: given the
batch's events it returns a :data:`Mask`, ``bytes`` with one byte per event, 1 where the condition holds and
0 where it does not (``itertools.compress(events, mask)`` picks the events). The shapes conditions use most
(a path of one or two keys against a string, or a list of strings for ``in``) run as C-level ``map`` passes
over the batch, with no Python call per event, and ``and``, ``or`` and ``not`` combine whole masks as
integers (the later parts of an ``and`` or ``or`` only on the events the earlier ones left undecided, when
they are few). Every other shape, and every batch a fast pass cannot read (a value on the path that is not a
dict, an unhashable value for ``in``), is computed event by event with the predicate of
:mod:`agent.expr.compiler`, so the two never disagree.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Iterable
from itertools import compress, repeat
from typing import Any

from agent.expr.compiler import compile_node
from agent.expr.nodes import And, Compare, Literal, Node, Not, Or, Path

Mask = bytes  # one byte per event: 1 (holds) or 0
Column = Callable[[list[Any]], Mask]

_EMPTY: dict[str, Any] = {}  # read only: a missing dict on the way
_get = dict.get
_NEGATE = bytes.maketrans(b"\x00\x01", b"\x01\x00")


def compile_column(node: Node, text: str = "") -> Column:
    """The column function of ``node`` (``text`` locates a bad regex in an ExprError, as compile_node)."""
    per_event = _per_event(compile_node(node, text))
    fast = _fast(node, text)
    if fast is None:
        return per_event

    def column(events: list[Any]) -> Mask:
        try:
            return fast(events)
        except TypeError:  # a value the fast passes cannot read: this batch goes event by event
            return per_event(events)

    return column


def negate(mask: Mask) -> Mask:
    """1 where ``mask`` has 0, and 0 where it has 1."""
    return mask.translate(_NEGATE)


def any_of(masks: list[Mask], size: int) -> Mask:
    """1 where any of ``masks`` (each ``size`` long) has 1."""
    if not masks:
        return bytes(size)
    if len(masks) == 1:
        return masks[0]
    combined = 0
    for mask in masks:
        combined |= int.from_bytes(mask, "little")
    return combined.to_bytes(size, "little")


def all_of(masks: list[Mask], size: int) -> Mask:
    """1 where every one of ``masks`` (each ``size`` long) has 1."""
    combined = int.from_bytes(b"\x01" * size, "little")
    for mask in masks:
        combined &= int.from_bytes(mask, "little")
    return combined.to_bytes(size, "little")


def _narrowing(parts: list[tuple[Column, bool]], every: bool) -> Column:
    """``and`` (``every``) or ``or`` of ``parts`` (each a column and whether it runs event by event): a part
    that runs event by event, or any part when few events are left undecided, is tested on those only, as
    the per-event predicates short-circuit (gathered, tested, scattered back); else on the whole batch."""
    combine = all_of if every else any_of

    def column(events: list[Any]) -> Mask:
        size = len(events)
        mask = parts[0][0](events)
        for part, per_event in parts[1:]:
            undecided = mask.count(1 if every else 0)
            if undecided == 0:
                break
            if not per_event and undecided * 8 > size:
                mask = combine([mask, part(events)], size)
                continue
            at = list(compress(range(size), mask if every else negate(mask)))
            decided = bytearray(mask)
            deque(map(decided.__setitem__, at, part(list(map(events.__getitem__, at)))), maxlen=0)
            mask = bytes(decided)
        return mask

    return column


def _per_event(predicate: Callable[[Any], bool]) -> Column:
    return lambda events: bytes(map(predicate, events))


def _fast(node: Node, text: str) -> Column | None:
    """C-level passes for ``node``, or None if it has no part they can run (then: event by event)."""
    if isinstance(node, And | Or):
        fast = [_fast(item, text) for item in node.items]
        if all(part is None for part in fast):
            return None
        parts = [(part, False) if part is not None else (_per_event(compile_node(item, text)), True)
                 for item, part in zip(node.items, fast, strict=True)]
        return _narrowing(parts, isinstance(node, And))
    if isinstance(node, Not):
        inner = _fast(node.operand, text)
        if inner is None:
            return None
        return lambda events: negate(inner(events))
    if isinstance(node, Compare) and isinstance(node.left, Path) and isinstance(node.right, Literal):
        return _against_constant(node.op, node.left.keys, node.right.value)
    return None


def _against_constant(op: str, keys: tuple[Any, ...], constant: Any) -> Column | None:
    """A path of one or two keys against a string (``==``, ``!=``, ``starts_with``, ``ends_with``) or a
    list of strings (``in``), as the per-event predicates of the compiler decide them."""
    if not 1 <= len(keys) <= 2 or not all(key.__class__ is str for key in keys):
        return None
    values = _values(keys)
    if op == "in" and isinstance(constant, tuple) and all(item.__class__ is str for item in constant):
        contains = frozenset(constant).__contains__  # an unhashable value raises TypeError
        return lambda events: bytes(map(contains, values(events)))
    if constant.__class__ is not str:
        return None
    if op in ("==", "!="):
        test = operator.eq if op == "==" else operator.ne
        return lambda events: bytes(map(test, values(events), repeat(constant)))
    if op in ("starts_with", "ends_with"):
        return _affix(values, str.endswith if op == "ends_with" else str.startswith, constant)
    return None


def _affix(values: Callable[[list[Any]], Iterable[Any]], test: Callable[[str, str], bool], constant: str) -> Column:
    """``starts_with`` / ``ends_with``: one C-level pass while every value is a string, else a test per value."""
    def column(events: list[Any]) -> Mask:
        try:
            return bytes(map(test, values(events), repeat(constant)))
        except TypeError:  # a missing field, a number...: false for those
            return bytes([value.__class__ is str and test(value, constant) for value in values(events)])

    return column


def _values(keys: tuple[str, ...]) -> Callable[[list[Any]], Iterable[Any]]:
    """The value at ``keys`` of each event (None where missing); TypeError where a step is not a dict."""
    if len(keys) == 1:
        key = keys[0]
        return lambda events: map(_get, events, repeat(key))
    first, second = keys
    return lambda events: map(_get, map(_get, events, repeat(first), repeat(_EMPTY)), repeat(second))
