"""The compiler: a syntax tree to nested closures over an event dict, built once at config load.

Semantics: a missing field is null; a comparison between values that do not compare (a string and a
number, null and anything but ``==``) is false and never raises; ``==`` compares an int and a float by
value but never a number and a boolean; ``!=`` and ``!~`` are the negations of ``==`` and ``=~`` (so a
missing field ``!= "x"`` holds). The shapes filters use most (a field against a constant) get closures
of their own, so they cost one call and one dict lookup per level of the path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.core.regex import compile_user_regex, searcher
from agent.expr.errors import ExprError
from agent.expr.nodes import And, Compare, Exists, Literal, Node, Not, Operand, Or, Path, Truth
from agent.expr.paths import FieldPath, compile_getter, has_field

Predicate = Callable[[Any], bool]
Getter = Callable[[Any], Any]

_NUMBERS = (int, float)
_EMPTY: dict[str, Any] = {}  # read only: what a missing dict on the way reads as


def compile_node(node: Node, text: str = "") -> Predicate:
    """The predicate of ``node``; ``text`` (the condition's source) locates a bad regex in an ExprError."""
    if isinstance(node, And):
        return _all([compile_node(item, text) for item in node.items])
    if isinstance(node, Or):
        return _any([compile_node(item, text) for item in node.items])
    if isinstance(node, Not):
        inner = compile_node(node.operand, text)
        return lambda event: not inner(event)
    if isinstance(node, Exists):
        keys = node.path.keys
        return lambda event: has_field(event, keys)
    if isinstance(node, Truth):
        if isinstance(node.operand, Literal):
            constant = node.operand.value is True
            return lambda event: constant
        get = compile_getter(node.operand.keys)
        return lambda event: get(event) is True
    return _compare(node, text)


def _all(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 2:
        first, second = predicates
        return lambda event: first(event) and second(event)
    every = tuple(predicates)
    return lambda event: all(predicate(event) for predicate in every)


def _any(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 2:
        first, second = predicates
        return lambda event: first(event) or second(event)
    every = tuple(predicates)
    return lambda event: any(predicate(event) for predicate in every)


def _compare(node: Compare, text: str) -> Predicate:
    op, left, right = node.op, node.left, node.right
    if op in ("=~", "!~"):
        assert isinstance(right, Literal)
        matches = _regex_predicate(left, right.value, text, node)
        if op == "!~":
            return lambda event: not matches(event)
        return matches
    if isinstance(left, Path) and isinstance(right, Literal):
        fused = _fused(op, left.keys, right.value)
        if fused is not None:
            return fused
        if op in _AGAINST_CONSTANT:
            return _AGAINST_CONSTANT[op](compile_getter(left.keys), right.value)
    test = _BINARY[op]
    get_left, get_right = _operand(left), _operand(right)
    return lambda event: test(get_left(event), get_right(event))


def _operand(operand: Operand) -> Getter:
    if isinstance(operand, Path):
        return compile_getter(operand.keys)
    value = list(operand.value) if isinstance(operand.value, tuple) else operand.value
    return lambda event: value


def _regex_predicate(left: Operand, pattern: str, text: str, node: Compare) -> Predicate:
    try:
        search = searcher(compile_user_regex(pattern))
    except ValueError as exc:
        raise ExprError.at(str(exc), text, node.offset) from None
    get = _operand(left)

    def matches(event: Any) -> bool:
        value = get(event)
        return value.__class__ is str and search(value)

    return matches


# -- semantics of each operator on any two values

def equal(a: Any, b: Any) -> bool:
    """``a == b`` as the language has it: 1 == 1.0, but true != 1; lists and dicts item by item."""
    if a.__class__ is bool or b.__class__ is bool:
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[key], b[key]) for key in a)
    return bool(a == b)


def _comparable(a: Any, b: Any) -> bool:
    """Both numbers (not booleans) or both strings."""
    ca, cb = a.__class__, b.__class__
    return (ca is str and cb is str) or ((ca is int or ca is float) and (cb is int or cb is float))


def member(item: Any, container: Any) -> bool:
    """``item in container``: an equal item of a list, a substring of a string, a key of a dict."""
    if isinstance(container, list):
        return any(equal(item, x) for x in container)
    if isinstance(container, str):
        return item.__class__ is str and item in container
    if isinstance(container, dict):
        return item.__class__ is str and item in container
    return False


_BINARY: dict[str, Callable[[Any, Any], bool]] = {
    "==": equal,
    "!=": lambda a, b: not equal(a, b),
    "<": lambda a, b: _comparable(a, b) and a < b,
    "<=": lambda a, b: _comparable(a, b) and a <= b,
    ">": lambda a, b: _comparable(a, b) and a > b,
    ">=": lambda a, b: _comparable(a, b) and a >= b,
    "in": member,
    "contains": lambda a, b: member(b, a),
    "starts_with": lambda a, b: a.__class__ is str and b.__class__ is str and a.startswith(b),
    "ends_with": lambda a, b: a.__class__ is str and b.__class__ is str and a.endswith(b),
}


# -- a field against a constant: the common shapes, specialised

def _eq_constant(get: Getter, constant: Any) -> Predicate:
    if constant is None or constant is True or constant is False:
        return lambda event: get(event) is constant
    if constant.__class__ is str:
        return lambda event: get(event) == constant
    if constant.__class__ in _NUMBERS:
        def eq_number(event: Any) -> bool:
            value = get(event)
            return value == constant and value.__class__ is not bool
        return eq_number
    items = list(constant)
    return lambda event: equal(get(event), items)


def _ne_constant(get: Getter, constant: Any) -> Predicate:
    eq = _eq_constant(get, constant)
    if constant.__class__ is str:
        return lambda event: get(event) != constant
    return lambda event: not eq(event)


def _order(op: str) -> Callable[[Getter, Any], Predicate]:
    test = _BINARY[op]

    def build(get: Getter, constant: Any) -> Predicate:
        if constant.__class__ is str:
            if op == "<":
                return lambda event: (v := get(event)).__class__ is str and v < constant
            if op == ">":
                return lambda event: (v := get(event)).__class__ is str and v > constant
        elif constant.__class__ in _NUMBERS:
            if op == "<":
                return lambda event: (v := get(event)).__class__ in _NUMBERS and v < constant
            if op == ">":
                return lambda event: (v := get(event)).__class__ in _NUMBERS and v > constant
        return lambda event: test(get(event), constant)

    return build


def _in_constant(get: Getter, constant: Any) -> Predicate:
    if not isinstance(constant, tuple):
        return lambda event: member(get(event), constant)
    strings = frozenset(item for item in constant if item.__class__ is str)
    others = [item for item in constant if item.__class__ is not str]

    def in_list(event: Any) -> bool:
        value = get(event)
        if value.__class__ is str:
            return value in strings
        return any(equal(value, item) for item in others)

    return in_list


def _contains_constant(get: Getter, constant: Any) -> Predicate:
    value = list(constant) if isinstance(constant, tuple) else constant
    if value.__class__ is str:
        return lambda event: ((v := get(event)).__class__ is str and value in v) or _listed(v, value)
    return lambda event: member(value, get(event))


def _listed(container: Any, value: str) -> bool:
    return isinstance(container, list | dict) and member(value, container)


def _fused(op: str, keys: FieldPath, constant: Any) -> Predicate | None:
    """The commonest shapes written out whole, one call per event: a path of one or two keys against a
    string (or, for ``in``, a list of strings). A path blocked by a value that is not a dict reads as a
    missing field."""
    if len(keys) > 2 or not all(isinstance(key, str) for key in keys):
        return None
    first, second = keys[0], keys[-1]
    two = len(keys) == 2
    if op == "in" and isinstance(constant, tuple) and all(item.__class__ is str for item in constant):
        strings = frozenset(constant)

        def in_strings(event: Any) -> bool:
            try:
                value = event.get(first, _EMPTY).get(second) if two else event.get(first)
            except AttributeError:
                return False
            return value.__class__ is str and value in strings

        return in_strings
    if constant.__class__ is not str:
        return None
    if op == "==":
        def eq(event: Any) -> bool:
            try:
                return (event.get(first, _EMPTY).get(second) if two else event.get(first)) == constant
            except AttributeError:
                return False
        return eq
    if op == "!=":
        def ne(event: Any) -> bool:
            try:
                return (event.get(first, _EMPTY).get(second) if two else event.get(first)) != constant
            except AttributeError:
                return True
        return ne
    if op not in ("starts_with", "ends_with"):
        return None
    suffix = op == "ends_with"

    def affix(event: Any) -> bool:
        try:
            value = event.get(first, _EMPTY).get(second) if two else event.get(first)
        except AttributeError:
            return False
        if value.__class__ is not str:
            return False
        return value.endswith(constant) if suffix else value.startswith(constant)

    return affix


_AGAINST_CONSTANT: dict[str, Callable[[Getter, Any], Predicate]] = {
    "==": _eq_constant,
    "!=": _ne_constant,
    "<": _order("<"),
    "<=": _order("<="),
    ">": _order(">"),
    ">=": _order(">="),
    "in": _in_constant,
    "contains": _contains_constant,
}
