"""The expression language every stage that takes a condition shares.

``compile_condition('level == "ERROR" and kubernetes.namespace != "kube-system"')`` parses the text
once and returns a predicate over an event dict, built from nested closures (never ``eval``). A
mistake raises :class:`ExprError` with its column. The grammar is in ``agent.expr.parser``, the
semantics of each operator in ``agent.expr.compiler``, field paths in ``agent.expr.paths``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.expr.compiler import compile_node
from agent.expr.errors import ExprError
from agent.expr.parser import parse


def compile_condition(text: str) -> Callable[[dict[str, Any]], bool]:
    """The predicate of the condition ``text``; ExprError (a ValueError) if it does not compile."""
    if not isinstance(text, str):
        raise ExprError(f"a condition is text, got {type(text).__name__}", 1)
    return compile_node(parse(text), text)


__all__ = ["ExprError", "compile_condition", "parse"]
