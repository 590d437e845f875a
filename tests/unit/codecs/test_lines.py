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
