"""Errors: every mistake is an ExprError (a ValueError) with a 1-based column, located in a config file."""

from __future__ import annotations

import msgspec
import pytest

from agent.config.load import convert, parse_document
from agent.core.errors import ConfigError
from agent.expr import ExprError, compile_condition


@pytest.mark.parametrize(("text", "column", "says"), [
    ("", 1, "empty condition"),
    ("level ==", 9, "expected a field or a value, got the end"),
    ('level == "ERROR" and', 21, "got the end"),
    ("(a == 1", 8, "expected ')'"),
    ("a == 1)", 7, "unbalanced ')'"),
    ("a == 1 == 2", 8, "do not chain"),
    ("a = 1", 3, "unexpected character '='"),
    ('a == "open', 6, "unterminated string"),
    ("a =~ /open", 6, "unterminated regex"),
    ('a =~ "(?<=x)y"', 6, "lookbehind (?<=...) is not supported"),
    ("a =~ /(x)\\1/", 6, "backreference \\1 is not supported"),
    ("a =~ b", 6, "must be a regex"),
    ("a == /x/", 6, "goes on the right of =~"),
    ('"text"', 7, "expected a comparison"),
    ("a == 1 b == 2", 8, "expected 'and', 'or' or the end"),
    ("a in [1, b]", 10, "a list holds values"),
    ("a in [1 2]", 9, "expected ',' or ']'"),
    ("a in [1,", 6, "unterminated list"),
    ('x == "\\u12"', 7, "\\u needs 4 hex digits"),
    ("exists(1)", 1, "takes a field path"),
    ("and == 1", 1, "expected a field or a value, got 'and'"),
    ("a == 1e999", 6, "out of range"),
    ("a == 1" + "0" * 5000, 6, "too long"),
    ("a ==\n  b ==", 5, "do not chain"),
])
def test_errors_name_their_column(text: str, column: int, says: str) -> None:
    with pytest.raises(ExprError) as info:
        compile_condition(text)
    assert info.value.column == column, str(info.value)
    assert says in info.value.message


def test_a_multi_line_condition_counts_lines_too() -> None:
    with pytest.raises(ExprError) as info:
        compile_condition('level == "x"\n  and\n  status >')
    assert (info.value.line, info.value.column) == (3, 11)
    assert str(info.value).startswith("line 3, column 11: ")
    assert info.value.located(14).startswith("line 16, column 11: ")


def test_located_gives_line_and_column_from_the_keys_line() -> None:
    error = ExprError("expected ')'", 8)
    assert str(error) == "column 8: expected ')'"
    assert error.located(12) == "line 12, column 8: expected ')'"
    assert error.located(None) == "column 8: expected ')'"


def test_nesting_is_bounded_with_an_error_not_a_recursion_error() -> None:
    for text in ("(" * 5000 + "a" + ")" * 5000, "not " * 5000 + "a", "a in " + "[" * 5000):
        with pytest.raises(ExprError, match="nested more than"):
            compile_condition(text)


class _Filter(msgspec.Struct, forbid_unknown_fields=True):
    condition: str

    def __post_init__(self) -> None:
        compile_condition(self.condition)


class _Doc(msgspec.Struct):
    transforms: dict[str, _Filter]


def test_raised_from_a_config_struct_it_becomes_a_config_error_with_file_line_and_column() -> None:
    text = 'transforms:\n  errors_only:\n    condition: level == "ERROR" and\n'
    data, lines = parse_document(text, file="pipeline.yaml")
    with pytest.raises(ConfigError) as info:
        convert(data, _Doc, file="pipeline.yaml", lines=lines)
    assert str(info.value) == ("pipeline.yaml:2: transforms.errors_only: column 21: expected a field or a value, "
                               "got the end")


@pytest.mark.parametrize("text", ["a[", "exists(a[", "x == 1 and b["])
def test_a_path_cut_off_after_a_bracket_is_an_expr_error(text: str) -> None:
    with pytest.raises(ExprError, match="expected an index or a quoted key"):
        compile_condition(text)


@pytest.mark.parametrize(("text", "column", "says"), [
    ('level =~ /error/i', 17, "flags go inside the regex: /(?i)..."),
    ('level =~ /error/is and a', 17, "flags go inside the regex: /(?is)..."),
    ('a == 1 && b == 2', 8, "unexpected character '&': write 'and'"),
    ('a == 1 || b == 2', 8, "unexpected character '|': write 'or'"),
    ('a=1', 2, "unexpected character '=': compare with '=='"),
    ('!exists(a)', 1, "unexpected character '!': write 'not'"),
])
def test_what_other_languages_write_gets_this_ones_spelling(text: str, column: int, says: str) -> None:
    """Trial finding: Vector's &&, ||, ! and = and a /regex/i flag each got a bare 'unexpected character' or
    'expected and, or or the end, got i'."""
    with pytest.raises(ExprError) as info:
        compile_condition(text)
    assert (info.value.column, info.value.message) == (column, says)
