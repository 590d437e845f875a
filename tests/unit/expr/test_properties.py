"""Properties: no text makes the compiler raise anything but ExprError; no event makes a predicate raise;
any syntax tree printed and parsed again is the same tree."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.expr import ExprError, compile_condition, compile_condition_column, parse
from agent.expr.columns import compile_column
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


# -- a condition over a whole batch gives what it gives event by event

short_paths = st.lists(st.sampled_from(KEYS), min_size=1, max_size=2).map(lambda keys: Path(tuple(keys)))
texts = st.sampled_from(["", "a", "ab", "b", "x y"]) | st.text(max_size=3)
fast_compares = (
    st.builds(Compare, st.sampled_from(["==", "!=", "starts_with", "ends_with"]), short_paths, texts.map(Literal))
    | st.builds(Compare, st.just("in"), short_paths, st.lists(texts, max_size=3).map(lambda t: Literal(tuple(t))))
)
fast_trees = st.recursive(
    fast_compares | leaves,
    lambda inner: st.builds(Not, inner)
    | st.lists(inner, min_size=2, max_size=3).map(lambda items: And(tuple(items)))
    | st.lists(inner, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
    max_leaves=6,
)
flat_events = st.dictionaries(st.sampled_from(KEYS), texts | st.none() | st.integers(-2, 2) | st.booleans()
                              | st.dictionaries(st.sampled_from(KEYS), texts | st.none(), max_size=3), max_size=5)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(fast_trees | trees, st.lists(flat_events | events, max_size=24))
def test_a_column_is_the_predicate_applied_to_each_event(tree: Node, batch: list[Any]) -> None:
    predicate, column = compile_node(tree, str(tree)), compile_column(tree, str(tree))
    assert column(batch) == bytes(predicate(event) for event in batch)


def test_a_column_takes_the_fast_passes_and_falls_back_on_a_batch_they_cannot_read() -> None:
    column = compile_condition_column('kubernetes.namespace starts_with "shop" and level in ["ERROR", "WARN"] '
                                      'or not type == "audit"')
    events = [{"kubernetes": {"namespace": "shop-1"}, "level": "ERROR", "type": "audit"},
              {"kubernetes": {"namespace": "kube-system"}, "level": "ERROR", "type": "audit"},
              {"level": "WARN"}]
    assert column(events) == b"\x01\x00\x01"
    odd = [*events, {"kubernetes": "not a dict", "level": ["a list"], "type": "audit"}]
    assert column(odd) == b"\x01\x00\x01\x00"  # the fast passes raise TypeError: event by event
