from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.codecs.parsers.logfmt import LogfmtParser

parse = LogfmtParser().parse


def test_pairs_quoted_values_escapes_and_bare_keys() -> None:
    line = r'at=info method=GET path=/ msg="a \"quoted\" text" empty= quoted_empty="" cached took=12ms'
    assert parse(line) == {"at": "info", "method": "GET", "path": "/", "msg": 'a "quoted" text', "empty": "",
                           "quoted_empty": "", "cached": True, "took": "12ms"}


def test_an_open_quote_runs_to_the_end_and_an_empty_line_does_not_parse() -> None:
    assert parse('a=1 b="x y') == {"a": "1", "b": "x y"}
    assert parse("   ") is None
    assert parse("") is None


def test_many_open_quotes_stay_linear() -> None:
    assert len(parse('a="\\ ' * 20_000) or {}) >= 1


def encode(fields: dict[str, str]) -> str:
    def value(v: str) -> str:
        if v and not any(c in '="\\' or c.isspace() for c in v):
            return v
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return " ".join(f"{k}={value(v)}" for k, v in fields.items())


KEYS = st.text(st.characters(blacklist_characters=' ="', blacklist_categories=("Zs", "Cc", "Zl", "Zp", "Cs")),
               min_size=1, max_size=10).filter(lambda k: not any(c.isspace() for c in k))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, st.text(st.characters(blacklist_categories=("Cs",)), max_size=20), max_size=8))
def test_round_trip(fields: dict[str, str]) -> None:
    assert parse(encode(fields)) == (fields or None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_line_gives_fields_or_none(line: str) -> None:
    result = parse(line)
    assert result is None or (result and all(isinstance(k, str) and k for k in result))
