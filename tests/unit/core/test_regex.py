"""User regexes: RE2 (linear time), Fluent Bit's (?<name>...) groups, clear refusals of what RE2 cannot do."""

from __future__ import annotations

import pytest

from agent.core.regex import compile_user_regex, searcher


def test_fluent_bit_named_groups_read_as_python_ones() -> None:
    regex = compile_user_regex(r"^(?<host>[^ ]*) - (?P<user>[^ ]*)")
    assert regex.groupindex == {"host": 1, "user": 2}
    match = regex.search("127.0.0.1 - frank")
    assert match is not None and match.group("host") == "127.0.0.1" and match.group("user") == "frank"


@pytest.mark.parametrize("pattern", [r"[(?<x>a)]", r"\Q(?<x>a)\E", r"\(?<x>a\)", r"[]](?<y>b)"])
def test_group_syntax_inside_classes_escapes_and_quotes_is_left_alone(pattern: str) -> None:
    regex = compile_user_regex(pattern)
    assert "x" not in regex.groupindex


@pytest.mark.parametrize(("pattern", "named"), [
    (r"(a)\1", "backreference \\1"),
    (r"(?P<n>a)(?P=n)", "named backreference"),
    (r"\k<n>", "named backreference"),
    (r"foo(?=bar)", "lookahead"),
    (r"foo(?!bar)", "negative lookahead"),
    (r"(?<=foo)bar", "lookbehind"),
    (r"(?<!foo)bar", "negative lookbehind"),
    (r"a++", "possessive quantifier ++"),
    (r"a{2}+", "possessive quantifier {2}+"),
    (r"(?>a|ab)c", "atomic group"),
    (r"a\Z", "\\Z"),
    (r"\C", "\\C"),
])
def test_what_re2_cannot_do_is_refused_naming_the_construct(pattern: str, named: str) -> None:
    with pytest.raises(ValueError, match="not supported") as info:
        compile_user_regex(pattern)
    assert named in str(info.value)
    assert repr(pattern) in str(info.value)


def test_a_syntax_error_is_a_value_error_with_re2s_reason() -> None:
    with pytest.raises(ValueError, match=r"not a valid RE2 regex: missing \)"):
        compile_user_regex("(a")


def test_a_group_name_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'a' is used twice"):
        compile_user_regex(r"(?<a>x)|(?P<a>y)")


@pytest.mark.timeout(10)
def test_a_published_redos_pattern_finishes_at_once() -> None:
    # (a+)+$ : the classic catastrophic-backtracking case (OWASP ReDoS page); Python's re takes
    # exponential time on this input, RE2 linear.
    text = "a" * 50_000 + "!"
    regex = compile_user_regex(r"(a+)+$")
    assert regex.search(text) is None
    assert searcher(regex)(text) is False
    assert searcher(compile_user_regex(r"^(([a-z])+.)+[A-Z]([a-z])+$"))(text) is False


def test_searcher_finds_a_match_anywhere_and_reads_undecodable_text() -> None:
    search = searcher(compile_user_regex(r"err(or)?"))
    assert search("an error here") is True
    assert search("all fine") is False
    assert search("bad \udcff byte, error") is True  # a lone surrogate from a lenient decode
    assert searcher(compile_user_regex("é+$"))("café") is True
