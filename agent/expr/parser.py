"""The parser: tokens to a syntax tree (``agent.expr.nodes``).

    condition  := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" condition ")" | "exists" "(" path ")" | comparison
    comparison := operand [op operand]        op: == != < <= > >= =~ !~ in contains starts_with ends_with
    operand    := path | string | number | true | false | null | "[" literal, ... "]" | /regex/

``not`` applies to the term that follows it (``not a == 1`` is ``not (a == 1)``) and binds tighter than
``and``, which binds tighter than ``or``. Comparisons do not chain. A quoted string is a field path only
where a ``.`` or ``[`` follows it (``"odd key".x``) or a ``.`` precedes it (``."odd key"``).
"""

from __future__ import annotations

from typing import Any

from agent.expr.errors import ExprError
from agent.expr.nodes import And, Compare, Exists, Literal, Node, Not, Operand, Or, Path, Truth
from agent.expr.paths import read_path
from agent.expr.tokens import OPERATORS, Token, tokenize

WORD_OPERATORS = ("in", "contains", "starts_with", "ends_with")
MAX_DEPTH = 100  # nesting of parentheses, lists and "not"; deeper text is refused, not a RecursionError
_CONSTANTS = {"true": True, "false": False, "null": None}


def parse(text: str) -> Node:
    """The syntax tree of the condition ``text``, or ExprError."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error("empty condition", self.peek())
        node = self.condition()
        token = self.peek()
        if token.kind != "end":
            if token.value == ")":
                raise self.error("unbalanced ')'", token)
            raise self.error(f"expected 'and', 'or' or the end, got {_show(token)}", token)
        return node

    # -- helpers

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.i += 1
        return token

    def error(self, message: str, token: Token) -> ExprError:
        return ExprError.at(message, self.text, token.offset)

    def word(self, name: str) -> bool:
        token = self.peek()
        return token.kind == "name" and token.value == name

    def punct(self, char: str) -> bool:
        token = self.peek()
        return token.kind == "punct" and token.value == char

    def expect(self, char: str, what: str) -> None:
        if not self.punct(char):
            raise self.error(f"expected {what}, got {_show(self.peek())}", self.peek())
        self.i += 1

    def nest(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} deep", token)

    # -- grammar

    def condition(self) -> Node:
        items = [self.conjunction()]
        while self.word("or"):
            self.i += 1
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Node:
        items = [self.negation()]
        while self.word("and"):
            self.i += 1
            items.append(self.negation())
        return items[0] if len(items) == 1 else And(tuple(items))

    def negation(self) -> Node:
        token = self.peek()
        if self.word("not"):
            self.i += 1
            self.nest(token)
            node: Node = Not(self.negation())
            self.depth -= 1
            return node
        if self.punct("("):
            self.i += 1
            self.nest(token)
            node = self.condition()
            self.depth -= 1
            self.expect(")", "')'")
            return node
        if self.word("exists") and self.peek(1).kind == "punct" and self.peek(1).value == "(":
            self.i += 2
            path = self.operand()
            if not isinstance(path, Path):
                raise self.error("exists(...) takes a field path", token)
            self.expect(")", "')' after the field path of exists(...)")
            return Exists(path)
        return self.comparison()

    def comparison(self) -> Node:
        start = self.peek()
        if start.kind == "regex":
            raise self.error("a /regex/ goes on the right of =~ or !~", start)
        left = self.operand()
        op = self.peek()
        if op.kind == "op" or (op.kind == "name" and op.value in WORD_OPERATORS):
            self.i += 1
            right_token = self.peek()
            right = self.operand()
            if right_token.kind == "regex" and op.value not in ("=~", "!~"):
                raise self.error("a /regex/ goes on the right of =~ or !~", right_token)
            if op.value in ("=~", "!~"):
                if not (isinstance(right, Literal) and isinstance(right.value, str)):
                    raise self.error(f"the right of {op.value} must be a regex: /.../ or a string",
                                     right_token)
            after = self.peek()
            if (right_token.kind == "regex" and after.kind == "name" and set(after.value) <= set("imsxu")
                    and self.text[after.offset - 1] == "/"):
                raise self.error(f"flags go inside the regex: /(?{after.value})...", after)
            if after.kind == "op" or (after.kind == "name" and after.value in WORD_OPERATORS):
                raise self.error(f"comparisons do not chain: use 'and' before {_show(after)}", after)
            return Compare(str(op.value), left, right, right_token.offset)
        if isinstance(left, Path) or (isinstance(left, Literal) and isinstance(left.value, bool)):
            return Truth(left)
        raise self.error(f"expected a comparison after {_show(start)}, got {_show(op)}", op)

    def operand(self) -> Operand:
        token = self.peek()
        if token.kind == "name" and token.value in _CONSTANTS:
            self.i += 1
            return Literal(_CONSTANTS[token.value])
        if token.kind in ("number", "regex"):
            self.i += 1
            return Literal(token.value)
        if token.kind == "string" and not _path_follows(self.peek(1)):
            self.i += 1
            return Literal(token.value)
        if self.punct("["):
            return Literal(self.list_literal())
        if token.kind in ("name", "string") or self.punct("."):
            if token.kind == "name" and token.value in ("and", "or", "not", *WORD_OPERATORS):
                raise self.error(f"expected a field or a value, got {_show(token)}", token)
            keys, self.i = read_path(self.tokens, self.i, self.text)
            return Path(keys, token.offset)
        raise self.error(f"expected a field or a value, got {_show(token)}", token)

    def list_literal(self) -> tuple[Any, ...]:
        open_token = self.take()
        self.nest(open_token)
        items: list[Any] = []
        while not self.punct("]"):
            token = self.peek()
            if token.kind == "end":
                raise self.error("unterminated list: expected ']'", open_token)
            item = self.operand()
            if not isinstance(item, Literal) or token.kind == "regex":
                raise self.error("a list holds values, not fields", token)
            items.append(item.value)
            if not self.punct("]"):
                self.expect(",", "',' or ']' in the list")
        self.i += 1
        self.depth -= 1
        return tuple(items)


def _path_follows(token: Token) -> bool:
    return token.kind == "punct" and token.value in (".", "[")


def _show(token: Token) -> str:
    if token.kind == "end":
        return "the end"
    if token.kind == "string":
        return "a string"
    if token.kind == "number":
        return f"number {token.value}"
    if token.kind == "regex":
        return "a regex"
    return f"'{token.value}'"


__all__ = ["OPERATORS", "WORD_OPERATORS", "parse"]
