from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.codecs.parsers.csv import CsvParser


def test_columns_name_values_extra_ones_are_numbered_and_short_lines_set_what_they_have() -> None:
    parse = CsvParser(["ts", "level", "msg"]).parse
    assert parse('2024-05-01,ERROR,"disk full, again"') == {"ts": "2024-05-01", "level": "ERROR",
                                                             "msg": "disk full, again"}
    assert parse("a,b,c,d") == {"ts": "a", "level": "b", "msg": "c", "column4": "d"}
    assert parse("a") == {"ts": "a"}
    assert parse("") is None
    assert parse('a,"open') == {"ts": "a", "level": "open"}  # an open quote ends with its line


def test_another_delimiter() -> None:
    assert CsvParser(["a", "b"], delimiter=";").parse("1;2,3") == {"a": "1", "b": "2,3"}


NO_NEWLINES = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=15)


@settings(max_examples=300, deadline=None)
@given(st.lists(NO_NEWLINES, min_size=1, max_size=8))
def test_round_trip(values: list[str]) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="", quoting=csv.QUOTE_ALL).writerow(values)
    columns = [f"c{i}" for i in range(len(values))]
    assert CsvParser(columns).parse(out.getvalue()) == dict(zip(columns, values, strict=True))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_line_gives_fields_or_none(line: str) -> None:
    result = CsvParser(["a"]).parse(line)
    assert result is None or all(isinstance(v, str) for v in result.values())


def test_a_value_longer_than_the_csv_modules_default_limit_parses() -> None:
    # csv's default field_size_limit (131072) made a line with one 200 KB value "not CSV".
    long = "x" * 200_000
    assert CsvParser(["a", "b"]).parse(f'{long},"{long}"') == {"a": long, "b": long}
