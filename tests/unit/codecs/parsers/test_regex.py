from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.codecs.parsers.regex import RegexParser

APACHE = r'^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)$'


def test_fluent_bit_named_groups_and_python_ones_both_name_fields() -> None:
    # Fluent Bit's own apache parser regex, with (?<name>...) groups.
    line = '192.168.2.20 - - [28/Jul/2006:10:27:10 -0300] "GET /cgi-bin/try/ HTTP/1.0" 200 3395'
    assert RegexParser(APACHE).parse(line) == {
        "host": "192.168.2.20", "user": "-", "time": "28/Jul/2006:10:27:10 -0300", "method": "GET",
        "path": "/cgi-bin/try/", "code": "200", "size": "3395"}
    assert RegexParser(r"(?P<level>[A-Z]+): (?P<msg>.*)").parse("x ERROR: disk full") == {
        "level": "ERROR", "msg": "disk full"}  # searched, not anchored


def test_a_group_that_took_no_part_is_left_out_and_no_match_is_none() -> None:
    parser = RegexParser(r"(?P<a>\d+)(?: (?P<b>\w+))?")
    assert parser.parse("12") == {"a": "12"}
    assert parser.parse("none") is None


def test_raw_bytes_are_matched_without_decoding_and_bad_utf8_is_replaced() -> None:
    parser = RegexParser(r"(?P<k>\w+)=(?P<v>\S+)")
    assert parser.parse_bytes(b"k=\xff\xfe") == {"k": "k", "v": "\ufffd\ufffd"}
    assert RegexParser(r"(?P<k>[^=]+)=(?P<v>.+)").parse("é=ü") == {"k": "é", "v": "ü"}  # RE2 reads \w as ASCII


@pytest.mark.parametrize("pattern", [r"(?P<a>x)\1", r"(?P<a>x)(?=y)", r"no groups", r"(?P<a>"])
def test_what_re2_cannot_do_or_a_regex_without_fields_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="regex"):
        RegexParser(pattern)


def test_a_catastrophic_backtracking_pattern_finishes_at_once() -> None:
    # The classic ReDoS (a+)+$ against a long run of a's and a mismatch.
    assert RegexParser(r"^(?P<x>(a+)+)$").parse("a" * 100_000 + "!") is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_line_gives_fields_or_none(line: str) -> None:
    result = RegexParser(APACHE).parse(line)
    assert result is None or set(result) <= {"host", "user", "time", "method", "path", "code", "size"}


KEY_VALUE = r"(?P<k>[^=]*)=(?P<v>[^;]*)(?:;(?P<rest>.*))?"


@pytest.mark.parametrize("line", ["a=b;c", "größe=1 µs;🙂", "a=b", "x=é;", "=\u00e9\U0001f600=;;"])
def test_ascii_and_wider_lines_are_cut_at_the_same_places_as_text_and_as_bytes(line: str) -> None:
    # An ASCII line is cut as text at RE2's byte offsets; any other line must not be.
    found = re.search(KEY_VALUE, line)
    assert found is not None
    expected = {k: v for k, v in found.groupdict().items() if v is not None}
    parser = RegexParser(KEY_VALUE)
    assert parser.parse(line) == expected
    assert parser.parse_bytes(line.encode()) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_text_and_bytes_give_the_fields_python_re_gives(line: str) -> None:
    found = re.search(KEY_VALUE, line)
    expected = None if found is None else {k: v for k, v in found.groupdict().items() if v is not None}
    parser = RegexParser(KEY_VALUE)
    assert parser.parse(line) == expected
    assert parser.parse_bytes(line.encode()) == expected
