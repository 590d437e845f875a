"""Field paths: parsed once into key tuples, then read, written and removed on nested dicts and lists."""

from __future__ import annotations

from typing import Any

import pytest

from agent.expr import ExprError
from agent.expr.paths import compile_getter, delete_field, format_path, get_field, has_field, parse_path, set_field


@pytest.mark.parametrize(("text", "keys"), [
    ("message", ("message",)),
    (".message", ("message",)),
    ("kubernetes.labels.app", ("kubernetes", "labels", "app")),
    ('"odd key".x', ("odd key", "x")),
    ('."odd key"', ("odd key",)),
    ('labels["app.kubernetes.io/name"]', ("labels", "app.kubernetes.io/name")),
    ("tags[0]", ("tags", 0)),
    ("tags[-1].name", ("tags", -1, "name")),
    ("@timestamp", ("@timestamp",)),
    ("x-request-id", ("x-request-id",)),
    (".not", ("not",)),
    ("a.in", ("a", "in")),
    ("événement.clé", ("événement", "clé")),
])
def test_parse_path(text: str, keys: tuple[Any, ...]) -> None:
    assert parse_path(text) == keys
    assert parse_path(format_path(keys)) == keys


@pytest.mark.parametrize(("text", "column"), [
    ("", 1), ("a.", 3), ("a..b", 3), ("a[", 3), ("a[x]", 3), ("a[0", 4), ("a b", 3), ("not", 1), ("a[1.5]", 3),
])
def test_a_bad_path_is_an_expr_error_with_its_column(text: str, column: int) -> None:
    with pytest.raises(ExprError) as info:
        parse_path(text)
    assert info.value.column == column
    assert isinstance(info.value, ValueError)


EVENT = {"a": {"b": {"c": 1}, "list": [{"x": 1}, {"x": 2}], "text": "abc", "null": None}}


@pytest.mark.parametrize(("path", "expected"), [
    (("a", "b", "c"), 1),
    (("a", "list", 1, "x"), 2),
    (("a", "list", -1, "x"), 2),
    (("a", "list", 2, "x"), "absent"),
    (("a", "list", "x"), "absent"),     # a key into a list
    (("a", "text", 0), "absent"),       # an index into a string is not a character
    (("a", "text", "x"), "absent"),
    (("a", "null", "x"), "absent"),
    (("a", "null"), None),
    (("z",), "absent"),
    (("a", "b", "c", "d"), "absent"),
])
def test_get_field_and_compiled_getters_agree(path: tuple[Any, ...], expected: Any) -> None:
    assert get_field(EVENT, path, "absent") == expected
    assert compile_getter(path)(EVENT) == (None if expected == "absent" else expected)
    assert has_field(EVENT, path) is (expected != "absent")


def test_set_field_creates_dicts_on_the_way() -> None:
    event: dict[str, Any] = {"a": {"keep": 1}}
    assert set_field(event, ("a", "b", "c"), 5) is True
    assert set_field(event, ("top",), "v") is True
    assert event == {"a": {"keep": 1, "b": {"c": 5}}, "top": "v"}


def test_set_field_into_lists_and_where_the_way_is_blocked() -> None:
    event: dict[str, Any] = {"tags": ["a", "b"], "text": "s", "items": [{"x": 1}]}
    assert set_field(event, ("tags", -1), "z") is True
    assert set_field(event, ("items", 0, "y"), 2) is True
    assert event["tags"] == ["a", "z"] and event["items"] == [{"x": 1, "y": 2}]
    assert set_field(event, ("tags", 5), "no") is False       # out of range
    assert set_field(event, ("text", "x"), 1) is False        # a string on the way is not overwritten
    assert set_field(event, ("missing", 0), 1) is False       # no list is invented for an index
    assert set_field(event, (), 1) is False
    assert event == {"tags": ["a", "z"], "text": "s", "items": [{"x": 1, "y": 2}]}


def test_delete_field() -> None:
    event: dict[str, Any] = {"a": {"b": 1, "c": 2}, "tags": ["x", "y"]}
    assert delete_field(event, ("a", "b")) is True
    assert delete_field(event, ("a", "b")) is False
    assert delete_field(event, ("tags", 0)) is True
    assert delete_field(event, ("tags", 3)) is False
    assert delete_field(event, ("nope", "x")) is False
    assert event == {"a": {"c": 2}, "tags": ["y"]}
