from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.codecs.parsers.key_value import KeyValueParser


def test_default_separators_quoted_values_and_parts_without_a_value() -> None:
    parse = KeyValueParser().parse
    assert parse('user=alice action=login note="two words" junk ok=yes') == {
        "user": "alice", "action": "login", "note": "two words", "ok": "yes"}
    assert parse("a=b=c") == {"a": "b=c"}
    assert parse("no pairs here") is None


def test_configured_separators() -> None:
    parse = KeyValueParser(field_split="&", value_split=":").parse
    assert parse('a:1&b:"x&y"&c:') == {"a": "1", "b": "x&y", "c": ""}
    with pytest.raises(ValueError):
        KeyValueParser(field_split="=", value_split="=")


SEPARATORS = st.sampled_from([(" ", "="), (",", ":"), ("; ", "=>"), ("|", "=")])
SAFE = st.text(st.characters(blacklist_characters='"\\ ,:;|=>', blacklist_categories=("Cs",)), min_size=1,
               max_size=10)


@settings(max_examples=300, deadline=None)
@given(SEPARATORS, st.dictionaries(SAFE, st.text(st.characters(blacklist_categories=("Cs",)), max_size=15),
                                   min_size=1, max_size=6))
def test_round_trip(separators: tuple[str, str], fields: dict[str, str]) -> None:
    fs, vs = separators
    line = fs.join(f'{k}{vs}"{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                   for k, v in fields.items())
    assert KeyValueParser(fs, vs).parse(line) == fields


@settings(max_examples=300, deadline=None)
@given(SEPARATORS, st.text(max_size=300))
def test_any_line_gives_fields_or_none(separators: tuple[str, str], line: str) -> None:
    result = KeyValueParser(*separators).parse(line)
    assert result is None or all(isinstance(v, str) for v in result.values())
