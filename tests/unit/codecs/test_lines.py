from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.codecs.lines import LineSplitter


def split_all(data: bytes, cuts: list[int], limit: int = 1 << 20) -> tuple[list[bytes], int]:
    splitter = LineSplitter(limit)
    lines: list[bytes] = []
    start = 0
    for cut in sorted(set(cuts)):
        lines += splitter.feed(data[start:cut])
        start = cut
    lines += splitter.feed(data[start:])
    lines += splitter.flush()
    return lines, splitter.truncated


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=20))
def test_any_chunking_yields_the_same_lines(data: bytes, cuts: list[int]) -> None:
    lines, _ = split_all(data, [c for c in cuts if c <= len(data)])
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert lines == expected


@given(st.lists(st.binary(max_size=300).filter(lambda b: b"\n" not in b), max_size=30),
       st.lists(st.integers(0, 10_000), max_size=10))
def test_long_lines_are_cut_to_the_bound_and_counted(lines_in: list[bytes], cuts: list[int]) -> None:
    data = b"".join(line + b"\n" for line in lines_in)
    lines, truncated = split_all(data, [c for c in cuts if c <= len(data)], limit=100)
    assert lines == [line[:100] for line in lines_in]
    assert truncated == sum(len(line) > 100 for line in lines_in)


def test_a_huge_line_without_newline_never_grows_the_partial_past_the_bound() -> None:
    splitter = LineSplitter(1024)
    out: list[bytes] = []
    for _ in range(1000):  # 64 MB of one line, fed in 64 KiB chunks
        out += splitter.feed(b"a" * 65536)
        assert len(splitter._partial) <= 1024
    out += splitter.feed(b"tail\nnext\n")
    assert out == [b"a" * 1024, b"next"]
    assert splitter.truncated == 1


@given(st.lists(st.binary(max_size=60).filter(lambda b: b"\n" not in b), max_size=20),
       st.lists(st.integers(0, 1300), max_size=12), st.integers(1, 40), st.integers(0, 10_000))
def test_starts_are_where_each_line_begins_in_the_stream_even_after_cut_lines(
        lines_in: list[bytes], cuts: list[int], limit: int, origin: int) -> None:
    data = b"".join(line + b"\n" for line in lines_in)
    where = [origin + sum(len(line) + 1 for line in lines_in[:i]) for i in range(len(lines_in) + 1)]
    splitter = LineSplitter(limit, offset=origin)
    got: list[tuple[bytes, int, bool]] = []
    start = 0
    for cut in [*sorted({c for c in cuts if c <= len(data)}), len(data)]:
        lines = splitter.feed(data[start:cut])
        start = cut
        starts = splitter.starts(lines)
        assert len(starts) == len(lines) + 1
        got += [(line, pos, i in splitter.cut) for i, (line, pos) in enumerate(zip(lines, starts, strict=False))]
        # where reading may resume: a line start, never past a line not returned whole, never inside one
        assert starts[-1] in where and (not got or starts[-1] >= got[-1][1])
    assert got == [(line[:limit], pos, len(line) > limit) for line, pos in zip(lines_in, where, strict=False)]
    assert splitter.offset == origin + len(data)


def test_a_line_cut_while_its_rest_is_still_unread_resumes_at_its_start() -> None:
    splitter = LineSplitter(4, offset=100)
    assert splitter.feed(b"ab\nlong line") == [b"ab", b"long"]
    assert splitter.starts([b"ab", b"long"]) == [100, 103, 103]  # a restart re-reads the cut line, not its middle
    assert splitter.cut == [1]
    assert splitter.feed(b" goes on") == [] and splitter.starts([]) == [103]
    assert splitter.feed(b"\nnext\n") == [b"next"] and splitter.starts([b"next"]) == [121, 126]
    assert splitter.cut == []


def test_a_line_longer_than_the_bound_is_cut_when_its_start_came_in_an_earlier_feed() -> None:
    splitter = LineSplitter(8)
    assert splitter.feed(b"ab\n123456") == [b"ab"]
    assert splitter.feed(b"789\nxy\n") == [b"12345678", b"xy"]  # this chunk is shorter than the bound
    assert splitter.cut == [0] and splitter.truncated == 1
    assert splitter.starts([b"12345678", b"xy"]) == [3, 13, 16]


def test_a_line_longer_than_the_bound_inside_one_chunk_is_cut_after_a_short_first_line() -> None:
    splitter = LineSplitter(8)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\n1234567890\nxy\n") == [b"abc", b"12345678", b"xy"]
    assert splitter.cut == [1] and splitter.truncated == 1
