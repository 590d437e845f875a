"""The expression language every stage that takes a condition shares.

``compile_condition('level == "ERROR" and kubernetes.namespace != "kube-system"')`` parses the text
once and returns a predicate over an event dict, built from nested closures (never ``eval``);
``compile_condition_column`` the same condition over a whole batch (``agent.expr.columns``). A
mistake raises :class:`ExprError` with its column. The grammar is in ``agent.expr.parser``, the
semantics of each operator in ``agent.expr.compiler``, field paths in ``agent.expr.paths``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agent.expr.columns import Column, compile_column
from agent.expr.compiler import compile_node
from agent.expr.errors import ExprError
from agent.expr.nodes import And, Compare, Node, Not, Or, Path
from agent.expr.parser import parse


def compile_condition(text: str) -> Callable[[dict[str, Any]], bool]:
    """The predicate of the condition ``text``; ExprError (a ValueError) if it does not compile."""
    return compile_node(_parse_condition(text), text)


def compile_condition_column(text: str) -> Column:
    """The condition ``text`` over a whole batch: ``column(events)`` is its mask, one byte per event, 1 where
    it holds (``agent.expr.columns``); ExprError if it does not compile."""
    return compile_column(_parse_condition(text), text)


def compile_condition_steps(text: str) -> list[Column]:
    """The condition ``text`` as successive columns whose conjunction it is (one per operand of a top-level
    ``and``, else just one), for a stage that narrows a batch step by step; ExprError if it does not compile."""
    node = _parse_condition(text)
    return [compile_column(item, text) for item in (node.items if isinstance(node, And) else (node,))]


_SHOUTED = re.compile(r"[A-Z][A-Z0-9_]*[A-Z][A-Z0-9_]*")  # ERROR, WARN, HTTP_500: log levels and codes, not fields


def condition_warnings(text: str | None) -> list[str]:
    """What is dubious in a condition that compiles: a comparison with a bare word in capitals (``level ==
    ERROR``), which the language reads as a field named ERROR (missing, so never equal), not as the text."""
    if text is None:
        return []
    try:
        node = _parse_condition(text)
    except ExprError:
        return []  # the config error says it
    found: list[str] = []
    pending: list[Node] = [node]
    while pending:
        node = pending.pop()
        if isinstance(node, And | Or):
            pending.extend(reversed(node.items))
        elif isinstance(node, Not):
            pending.append(node.operand)
        elif isinstance(node, Compare) and isinstance(node.right, Path) and len(node.right.keys) == 1:
            word = node.right.keys[0]
            if isinstance(word, str) and _SHOUTED.fullmatch(word):
                found.append(f'"{node}" compares with a field named {word}; for the text, write "{word}" in quotes')
    return found


def _parse_condition(text: str) -> Node:
    if not isinstance(text, str):
        raise ExprError(f"a condition is text, got {type(text).__name__}", 1)
    return parse(text)


__all__ = ["Column", "ExprError", "compile_condition", "compile_condition_column", "compile_condition_steps",
           "condition_warnings", "parse"]
