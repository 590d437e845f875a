"""The condition language: every operator, precedence, missing fields, type mismatches, literals and escapes."""

from __future__ import annotations

from typing import Any

import pytest

from agent.expr import compile_condition, parse
from agent.expr.nodes import And, Compare, Literal, Not, Or, Path

EVENT: dict[str, Any] = {
    "level": "ERROR",
    "status": 503,
    "latency": 0.25,
    "ratio": 1.0,
    "ok": True,
    "nothing": None,
    "message": "GET /api/v1/users failed: timeout",
    "tags": ["web", "prod", 3],
    "kubernetes": {"namespace": "default", "labels": {"app": "checkout", "app.kubernetes.io/name": "co"}},
    "odd key": {"x": 1},
}


def holds(text: str, event: dict[str, Any] = EVENT) -> bool:
    return compile_condition(text)(event)


@pytest.mark.parametrize(("text", "expected"), [
    ('level == "ERROR"', True),
    ('level == "error"', False),
    ('level != "ERROR"', False),
    ("status == 503", True),
    ("status == 503.0", True),             # int and float compare by value
    ("ratio == 1", True),
    ("ok == true", True),
    ("ok == 1", False),                    # a boolean is not a number
    ("status == true", False),
    ("nothing == null", True),
    ("missing == null", True),             # a missing field is null
    ('tags == ["web", "prod", 3]', True),
    ('tags == ["web", "prod", true]', False),
    ("status < 600", True), ("status <= 503", True), ("status > 503", False), ("status >= 503.0", True),
    ("latency < 0.3", True), ("latency > -1", True),
    ('level < "F"', True), ('level >= "ERROR"', True), ('level > "ERROR"', False),
    ('level =~ "^ERR"', True), ("level =~ /^err/", False), ("level =~ /(?i)^err/", True),
    ("message =~ /api\\/v1/", True),        # \/ is a slash inside /.../
    ('message =~ "\\d+"', True),             # an unknown escape stays: the regex \d+
    ('level !~ "^ERR"', False),
    ('level in ["ERROR", "CRITICAL"]', True), ('level in ["WARN"]', False), ("status in [500, 503]", True),
    ("status in [503.0]", True), ("ok in [1]", False), ('"prod" in tags', True), ('"err" in message', False),
    ('"fail" in message', True), ('"namespace" in kubernetes', True),
    ('tags contains "prod"', True), ("tags contains 3", True), ('message contains "timeout"', True),
    ('kubernetes contains "labels"', True), ('level contains "x"', False),
    ('message starts_with "GET "', True), ('message ends_with "timeout"', True), ('message ends_with "GET"', False),
    ("exists(kubernetes.labels.app)", True), ("exists(nothing)", True), ("exists(missing.x)", False),
    ("ok", True), ("not ok", False), ("nothing", False), ("true", True), ("false", False),
    ("kubernetes.labels.app == \"checkout\"", True),
    ('kubernetes.labels["app.kubernetes.io/name"] == "co"', True),
    ('kubernetes.labels."app.kubernetes.io/name" == "co"', True),
    ('"odd key".x == 1', True), ("tags[0] == \"web\"", True), ("tags[-1] == 3", True), ("tags[9] == null", True),
    ('.level == "ERROR"', True),
    ("status == kubernetes.missing", False), ("nothing == missing", True),
    ("latency < status", True), ("level < status", False),
])
def test_operators(text: str, expected: bool) -> None:
    assert holds(text) is expected


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
@pytest.mark.parametrize(("left", "right"), [
    ("status", '"503"'), ("level", "5"), ("missing", "1"), ("nothing", "0"), ("ok", "0"), ("tags", "[1]"),
    ("kubernetes", '"a"'), ("status", "missing"),
])
def test_ordering_values_that_do_not_compare_is_false_and_never_raises(op: str, left: str, right: str) -> None:
    assert holds(f"{left} {op} {right}") is False
    assert holds(f"{right} {op} {left}") is False


@pytest.mark.parametrize("text", [
    'status =~ "5"', 'missing =~ ""', 'tags starts_with "w"', 'status ends_with "3"', "status in 503",
    'missing contains "x"', "1 in status", 'nothing in "abc"', 'kubernetes == "default"',
])
def test_type_mismatches_are_false(text: str) -> None:
    assert holds(text) is False


def test_negated_operators_hold_for_missing_fields() -> None:
    assert holds('kubernetes.missing != "kube-system"') is True
    assert holds('missing !~ "x"') is True
    assert holds("not exists(missing)") is True


def test_the_filter_of_the_issue() -> None:
    condition = compile_condition('level == "ERROR" and kubernetes.namespace != "kube-system"')
    assert condition({"level": "ERROR", "kubernetes": {"namespace": "default"}}) is True
    assert condition({"level": "ERROR", "kubernetes": {"namespace": "kube-system"}}) is False
    assert condition({"level": "ERROR"}) is True
    assert condition({"level": "ERROR", "kubernetes": "not a dict"}) is True
    assert condition({"level": "INFO"}) is False


def test_precedence_not_then_and_then_or() -> None:
    a, b, c = (Compare("==", Path((name,)), Literal(1)) for name in "abc")
    assert parse("a == 1 or b == 1 and c == 1") == Or((a, And((b, c))))
    assert parse("a == 1 and b == 1 or c == 1") == Or((And((a, b)), c))
    assert parse("not a == 1 and b == 1") == And((Not(a), b))
    assert parse("not a == 1 or b == 1") == Or((Not(a), b))
    assert parse("not (a == 1 or b == 1)") == Not(Or((a, b)))
    assert parse("(a == 1 or b == 1) and c == 1") == And((Or((a, b)), c))
    assert parse("not not a == 1") == Not(Not(a))
    # and the evaluation follows the tree
    assert holds("true or false and false") is True
    assert holds("(true or false) and false") is False
    assert holds("not false and false") is False
    assert holds("not (false and false)") is True


def test_string_escapes() -> None:
    event = {"s": 'a"b\'c\\d\ne\tf\u00e9/'}
    assert holds(r's == "a\"b\'c\\d\ne\tf\u00e9\/"', event) is True
    assert holds(r"s == 'a\"b\'c\\d\ne\tf\xe9/'", event) is True
    assert holds(r'x == "\x41\u0042"', {"x": "AB"}) is True


@pytest.mark.parametrize(("literal", "value"), [
    ("42", 42), ("-7", -7), ("1.5", 1.5), ("-0.25", -0.25), ("1e3", 1000.0), ("2.5E-1", 0.25),
    ("true", True), ("false", False), ("null", None), ('"x"', "x"), ("'y'", "y"), ("[]", ()),
    ('[1, "a", [true, null],]', (1, "a", (True, None))),
])
def test_literals(literal: str, value: Any) -> None:
    node = parse(f"x == {literal}")
    assert isinstance(node, Compare) and node.right == Literal(value)


def test_a_condition_sees_the_event_as_it_is_now() -> None:
    condition = compile_condition("n > 1")
    event = {"n": 1}
    assert condition(event) is False
    event["n"] = 2
    assert condition(event) is True
