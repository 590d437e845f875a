"""Properties: no text makes the compiler raise anything but ExprError; no event makes a predicate raise;
any syntax tree printed and parsed again is the same tree."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.expr import ExprError, compile_condition, parse
from agent.expr.compiler import compile_node
from agent.expr.nodes import And, Compare, Exists, Literal, Node, Not, Or, Path, Truth

KEYS = ["a", "b", "and", "x y", "tags", "0", "@t"]
FRAGMENTS = ["a", "b.c", ".a", '"k"', "'q'", "tags[0]", "[", "]", "(", ")", ",", ".", "==", "!=", "<", "<=", ">",
             ">=", "=~", "!~", "in", "contains", "starts_with", "ends_with", "exists", "not", "and", "or", "true",
             "false", "null", "1", "-2.5", "1e9", "/a+/", "/", "\\", '"\\u00', '"', "'", " ", "\n", "(?<n>x)",
             "\\1", "é", "\x00", "=", "!", "#", "$", "-"]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
events = st.dictionaries(
    st.sampled_from(KEYS),
    st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3), max_leaves=8),
    max_size=6,
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60) | st.lists(st.sampled_from(FRAGMENTS), max_size=14).map(" ".join)
       | st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join), st.lists(events, max_size=3))
def test_any_text_compiles_or_raises_expr_error_and_predicates_never_raise(text: str, samples: list[Any]) -> None:
    try:
        predicate = compile_condition(text)
    except ExprError as exc:
        assert exc.column >= 1 and exc.line >= 1
        return
    for event in samples:
        assert isinstance(predicate(event), bool)


# -- random trees

keys = st.sampled_from(KEYS) | st.text(max_size=5)
paths = st.builds(lambda first, rest: Path((first, *rest)), keys, st.lists(keys | st.integers(-3, 3), max_size=3))
literal_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6)
literals = literal_values.map(Literal)
operands = paths | literals
regexes = st.sampled_from(["", "a+", "^x$", "(?i)err", "a/b", '"q"', "\\d+", "(?P<n>x)|y", "[/]"]).map(Literal)
compares = (
    st.builds(Compare, st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "contains", "starts_with",
                                        "ends_with"]), operands, operands)
    | st.builds(Compare, st.sampled_from(["=~", "!~"]), operands, regexes)
)
leaves = compares | st.builds(Exists, paths) | st.builds(Truth, paths | st.booleans().map(Literal))
trees = st.recursive(
    leaves,
    lambda inner: st.builds(Not, inner)
    | st.lists(inner, min_size=2, max_size=3).map(lambda items: And(tuple(items)))
    | st.lists(inner, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
    max_leaves=10,
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(trees, st.lists(events, max_size=3))
def test_a_printed_tree_parses_back_to_itself(tree: Node, samples: list[Any]) -> None:
    text = str(tree)
    assert parse(text) == tree, text
    predicate, reparsed = compile_node(tree, text), compile_condition(text)
    for event in samples:
        assert predicate(event) is reparsed(event)
