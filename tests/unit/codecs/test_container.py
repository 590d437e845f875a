from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.codecs.container import DECODERS, CriDecoder, DockerDecoder, LineDecoder, RawDecoder, detect_format

EXTRA = {"file": "/var/log/containers/a.log", "kubernetes": {"pod": "a", "namespace": "ns"}}
T0 = "2026-11-22T17:00:00.123456789Z"


def at(second: int, nanos: int = 0) -> str:
    """A Docker-style RFC3339Nano time: ``second`` seconds after 2026-11-22T17:00:00Z (under an hour)."""
    return f"2026-11-22T17:{second // 60:02d}:{second % 60:02d}.{nanos:09d}Z"
PIECE = 16 * 1024  # Docker's and containerd's split size


def docker(log: str, stream: str = "stdout", time: str = T0, **more: Any) -> bytes:
    return orjson.dumps({"log": log, "stream": stream, "time": time, **more})


def cri(content: bytes, stream: str = "stdout", tags: str = "F", time: str = T0) -> bytes:
    return f"{time} {stream} {tags} ".encode() + content


def starts(lines: list[bytes], start: int = 0) -> list[int]:
    """Offset of each line, then of the end."""
    out = [start]
    for line in lines:
        out.append(out[-1] + len(line) + 1)
    return out


def decode(decoder: LineDecoder, lines: list[bytes], start: int = 0) -> tuple[list[dict], list[int], int]:
    """The events (without their ``offset``), the offsets, and the safe offset."""
    out: list[dict] = []
    safe = decoder.decode(lines, starts(lines, start), out)
    return out, take_offsets(out), safe


def take_offsets(events: list[dict]) -> list[int]:
    """Every event's ``offset``, removed from it (KeyError if one has none)."""
    return [event.pop("offset") for event in events]


def docker_pieces(message: str, size: int = PIECE) -> list[str]:
    """``message`` as Docker writes it: ``size`` pieces without newline, the last one ending in one."""
    pieces = [message[i:i + size] for i in range(0, len(message), size)] or [""]
    pieces[-1] += "\n"
    return pieces


# detect_format


@pytest.mark.parametrize(("line", "expected"), [
    (docker("hi\n"), "docker"),
    (b'  {"log":"x"}', "docker"),
    (b'{"log":"a line torn', "docker"),
    (b"{not json", "raw"),
    (b'{"level":"info","msg":"an app writing its own JSON lines"}', "raw"),
    (cri(b"hello"), "cri"),
    (cri(b"", tags="P"), "cri"),
    (cri(b"", tags="F:x"), "cri"),
    (f"{T0} stderr F".encode(), "cri"),
    (b"2016-10-06T00:17:09.669794202+02:00 stdout P a b c", "cri"),
    (f"{T0} stdin F hello".encode(), "raw"),
    (b"2026-11-22 17:00:00 INFO started", "raw"),
    (b"hello world", "raw"),
    (b"", "raw"),
])
def test_detect_format(line: bytes, expected: str) -> None:
    assert detect_format(line) == expected


def test_decoders_by_format_name() -> None:
    assert DECODERS == {"docker": DockerDecoder, "cri": CriDecoder, "raw": RawDecoder}


# Docker json-file


def test_docker_full_lines_become_events_with_the_extra_fields() -> None:
    lines = [docker('{"level":"info"}\n'), docker("second\n", "stderr", "2026-11-22T17:00:01Z")]
    out, offsets, safe = decode(DockerDecoder(EXTRA, 1 << 20), lines, 100)
    assert out == [
        {**EXTRA, "message": '{"level":"info"}', "stream": "stdout", "time": T0},
        {**EXTRA, "message": "second", "stream": "stderr", "time": "2026-11-22T17:00:01Z"},
    ]
    assert out[0]["kubernetes"] is EXTRA["kubernetes"]  # shared, not copied
    assert offsets == starts(lines, 100)[:-1]
    assert safe == starts(lines, 100)[-1]


def test_docker_split_line_is_reassembled() -> None:
    message = "".join(chr(ord("a") + i % 26) for i in range(40_000))
    pieces = docker_pieces(message)
    assert len(pieces) == 3
    lines = [docker(piece, time=at(i)) for i, piece in enumerate(pieces)]
    out, offsets, safe = decode(DockerDecoder(EXTRA, 1 << 20), lines, 7)
    assert out == [{**EXTRA, "message": message, "stream": "stdout", "time": at(0)}]
    assert offsets == [7]
    assert safe == starts(lines, 7)[-1]


def test_docker_interleaved_partials_are_reassembled_per_stream() -> None:
    lines = [
        docker("out-1 ", "stdout", at(1)),
        docker("err-1 ", "stderr", at(2)),
        docker("out-2\n", "stdout", at(3)),
        docker("err-2 ", "stderr", at(4)),
        docker("err-3\n", "stderr", at(5)),
    ]
    out, offsets, _ = decode(DockerDecoder(EXTRA, 1 << 20), lines)
    assert [(e["message"], e["stream"], e["time"]) for e in out] == [
        ("out-1 out-2", "stdout", at(1)),
        ("err-1 err-2 err-3", "stderr", at(2)),
    ]
    assert offsets == [starts(lines)[0], starts(lines)[1]]


def test_docker_full_line_of_another_stream_passes_a_held_partial() -> None:
    lines = [docker("part ", "stdout"), docker("full\n", "stderr"), docker("end\n", "stdout")]
    decoder = DockerDecoder(EXTRA, 1 << 20)
    out, offsets, safe = decode(decoder, lines[:2])
    assert [e["message"] for e in out] == ["full"]
    assert offsets == [starts(lines)[1]]
    assert safe == 0
    out, offsets, safe = decode(decoder, lines[2:], starts(lines)[2])
    assert [e["message"] for e in out] == ["part end"]
    assert offsets == [0]
    assert safe == starts(lines)[-1]


def test_docker_safe_offset_stays_at_a_held_partial_until_it_completes() -> None:
    lines = [docker("a\n"), docker("b1"), docker("b2"), docker("b3\n"), docker("c\n")]
    offs = starts(lines, 1000)
    decoder = DockerDecoder(EXTRA, 1 << 20)
    out: list[dict] = []
    assert decoder.decode(lines[:2], offs[0:3], out) == offs[1]
    assert [e["message"] for e in out] == ["a"]
    assert decoder.decode(lines[2:3], offs[2:4], out) == offs[1]
    assert decoder.decode(lines[3:], offs[3:], out) == offs[5]
    assert [e["message"] for e in out] == ["a", "b1b2b3", "c"]


@pytest.mark.parametrize(("line", "reason"), [
    (b'{"log": "cut by the line splitter', "invalid JSON"),
    (b"plain text", "invalid JSON"),
    (b"", "invalid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'"log"', "not a JSON object"),
    (b"12", "not a JSON object"),
    (b'{"stream": "stdout", "time": "2026-11-22T17:00:00Z"}', "no log string"),
    (b'{"log": 5, "stream": "stdout"}', "no log string"),
    (b'{"log": null}', "no log string"),
    (b'{"log": "x\\n", "stream": ["stdout"]}', "stream is not a string"),
    (b'{"log": "\\ud800\\n", "stream": "stdout"}', "invalid JSON"),  # orjson refuses lone surrogates
])
def test_docker_malformed_line_is_kept_raw_and_counted(line: bytes, reason: str) -> None:
    decoder = DockerDecoder(EXTRA, 1 << 20)
    lines = [docker("before\n"), line, docker("after\n")]
    out, offsets, safe = decode(decoder, lines)
    assert out == [
        {**EXTRA, "message": "before", "stream": "stdout", "time": T0},
        {**EXTRA, "message": line.decode(), "parse_error": reason},
        {**EXTRA, "message": "after", "stream": "stdout", "time": T0},
    ]
    assert offsets == starts(lines)[:-1]
    assert safe == starts(lines)[-1]
    assert decoder.errors == 1


@pytest.mark.parametrize(("line", "reason"), [
    (b'{"log": "x\\n", "stream": "stdout"}', "no time"),
    (b'{"log": "x\\n", "stream": "stdout", "time": null}', "no time"),
    (b'{"log": "x", "stream": "stdout"}', "no time"),  # a piece of a split line
    (b'{"log": "x\\n", "stream": "stdout", "time": 123}', "time is not a string"),
    (b'{"log": "x\\n", "stream": "stdout", "time": ["2026-11-22T17:00:00Z"]}', "time is not a string"),
    (b'{"log": "x\\n", "stream": "stdout", "time": ""}', "time is not RFC 3339"),
    (b'{"log": "x\\n", "stream": "stdout", "time": "qwerty"}', "time is not RFC 3339"),
    (b'{"log": "x\\n", "stream": "stdout", "time": "2026-13-01T00:00:00Z"}', "time is not RFC 3339"),
    (b'{"log": "x\\n", "stream": "stdout", "time": "2026-02-30T00:00:00Z"}', "time is not RFC 3339"),
    (b'{"log": "x\\n", "stream": "stdout", "time": "2026-11-22T17:00:00"}', "time is not RFC 3339"),  # no offset
    (b'{"log": "x\\n", "stream": "stdout", "time": "2026-11-22 17:00:00Z"}', "time is not RFC 3339"),
    (b'{"log": "x\\n", "stream": "stdout", "time": "2026-11-22T17:00:00Z junk"}', "time is not RFC 3339"),
    (b'{"log": "x\\n", "stream": "stdout", "time": "2026-11-22T17:00:00Z\\n2026-11-22T17:00:00Z"}',
     "time is not RFC 3339"),
    (b'{"log": "x\\n", "stream": "stdout", "time": "1479737960"}', "time is not RFC 3339"),
])
def test_docker_line_without_an_rfc3339_time_is_kept_raw_and_counted(line: bytes, reason: str) -> None:
    """Issue 15.4: the kubelet rejects such lines; kept here as malformed lines are, and the bad time is not kept."""
    decoder = DockerDecoder(EXTRA, 1 << 20)
    lines = [docker("before\n"), docker("held ", "stderr"), line, docker("after\n"), docker("end\n", "stderr")]
    out, offsets, safe = decode(decoder, lines)
    assert out == [
        {**EXTRA, "message": "before", "stream": "stdout", "time": T0},
        {**EXTRA, "message": line.decode(), "parse_error": reason},
        {**EXTRA, "message": "after", "stream": "stdout", "time": T0},
        {**EXTRA, "message": "held end", "stream": "stderr", "time": T0},
    ]
    assert offsets == [starts(lines)[i] for i in (0, 2, 3, 1)]
    assert safe == starts(lines)[-1]
    assert decoder.errors == 1


@pytest.mark.parametrize("time", [
    "2016-10-20T18:39:20.57606443Z",  # the kubelet's test: RFC3339Nano trims trailing zeros
    "2026-11-22T17:00:00Z", "2026-11-22t17:00:00.1z", "2019-05-07T18:57:50.904275087+00:00",
    "2026-11-22T17:00:00.123-05:30", "2024-02-29T23:59:59.999999999Z",
])
def test_docker_rfc3339_times_are_kept_as_written(time: str) -> None:
    decoder = DockerDecoder(EXTRA, 1 << 20)
    out, _, _ = decode(decoder, [docker("x\n", time=time), docker("y", time=time), docker("z\n", time=T0)])
    assert [(e["message"], e["time"]) for e in out] == [("x", time), ("yz", time)]
    assert decoder.errors == 0


def test_docker_pieces_with_a_bad_time_are_kept_raw_and_the_record_goes_on() -> None:
    decoder = DockerDecoder(EXTRA, 1 << 20)
    lines = [docker("a"), docker("b", time="yesterday"), docker("c\n")]
    out, offsets, _ = decode(decoder, lines)
    assert [(e["message"], e.get("time"), e.get("parse_error")) for e in out] == [
        (lines[1].decode(), None, "time is not RFC 3339"), ("ac", T0, None)]
    assert offsets == [starts(lines)[1], 0]


def test_docker_malformed_line_does_not_disturb_a_held_partial() -> None:
    decoder = DockerDecoder(EXTRA, 1 << 20)
    lines = [docker("a"), b"garbage", docker("b\n")]
    out, offsets, _ = decode(decoder, lines)
    assert [(e["message"], "parse_error" in e) for e in out] == [("garbage", True), ("ab", False)]
    assert offsets == [starts(lines)[1], 0]


def test_docker_invalid_utf8_inside_the_log_is_replaced() -> None:
    line = b'{"log":"caf\xc3\xa9 \xff\xfe ok\\n","stream":"stdout","time":"2026-11-22T17:00:00Z"}'
    decoder = DockerDecoder(EXTRA, 1 << 20)
    out, _, _ = decode(decoder, [line])
    assert out == [{**EXTRA, "message": "café \ufffd\ufffd ok", "stream": "stdout", "time": "2026-11-22T17:00:00Z"}]
    assert decoder.errors == 0


def test_docker_invalid_utf8_in_a_malformed_line_is_replaced() -> None:
    decoder = DockerDecoder(EXTRA, 1 << 20)
    out, _, _ = decode(decoder, [b'{"log":"\xff', b"\x80\x81 binary \x00"])
    assert [e["message"] for e in out] == ['{"log":"\ufffd', "\ufffd\ufffd binary \x00"]
    assert decoder.errors == 2


def test_docker_attrs_are_kept() -> None:
    attrs = {"tag": "web", "com.example.team": "shop"}
    lines = [docker("x\n", attrs=attrs), docker("y", attrs=attrs), docker("z\n", attrs={"other": "1"})]
    out, _, _ = decode(DockerDecoder(EXTRA, 1 << 20), lines)
    assert out == [
        {**EXTRA, "message": "x", "stream": "stdout", "time": T0, "attrs": attrs},
        {**EXTRA, "message": "yz", "stream": "stdout", "time": T0, "attrs": attrs},
    ]


def test_docker_record_without_stream_is_kept() -> None:
    lines = [f'{{"log":"{log}","time":"{at(i)}"}}'.encode() for i, log in enumerate(["a\\n", "b", "c\\n"])]
    out, _, _ = decode(DockerDecoder(EXTRA, 1 << 20), lines)
    assert out == [{**EXTRA, "message": "a", "time": at(0)}, {**EXTRA, "message": "bc", "time": at(1)}]


def test_docker_huge_message_is_cut_at_max_message_bytes_with_bounded_memory() -> None:
    limit = 100_000
    decoder = DockerDecoder(EXTRA, limit)
    pieces = docker_pieces("x" * (10 * 1024 * 1024))
    out: list[dict] = []
    offset = 0
    for piece in pieces:
        line = docker(piece)
        decoder.decode([line], starts([line], offset), out)
        offset += len(line) + 1
        held = decoder._held.get("stdout")
        assert held is None or (held.size <= limit and sum(map(len, held.pieces)) <= limit)
    decoder.decode([docker("next\n")], starts([docker("next\n")], offset), out)
    assert [(len(e["message"]), e.get("truncated")) for e in out] == [(limit, True), (4, None)]
    assert decoder.truncated == 1


def test_docker_truncation_does_not_split_a_utf8_character() -> None:
    decoder = DockerDecoder(EXTRA, 10)
    out, _, _ = decode(decoder, [docker("abcdefgh"), docker("éé\n")])  # the cut falls inside the second é
    assert out[0]["message"] == "abcdefghé"
    assert out[0]["truncated"] is True


def test_docker_flush_emits_held_partials_in_file_order() -> None:
    decoder = DockerDecoder(EXTRA, 1 << 20)
    lines = [docker("out", "stdout", at(1)), docker("err", "stderr", at(2)), docker("more", "stdout", at(3))]
    out, _, safe = decode(decoder, lines)
    assert (out, safe) == ([], 0)
    decoder.flush(out)
    offsets = take_offsets(out)
    assert out == [
        {**EXTRA, "message": "outmore", "stream": "stdout", "time": at(1), "partial": True},
        {**EXTRA, "message": "err", "stream": "stderr", "time": at(2), "partial": True},
    ]
    assert offsets == [0, starts(lines)[1]]
    assert decoder.decode([], [500], out) == 500


# CRI


def test_cri_full_lines() -> None:
    lines = [cri(b"hello world"), cri(b"oops", "stderr", time="2026-11-22T17:00:01Z")]
    out, offsets, safe = decode(CriDecoder(EXTRA, 1 << 20), lines, 3)
    assert out == [
        {**EXTRA, "message": "hello world", "stream": "stdout", "time": T0},
        {**EXTRA, "message": "oops", "stream": "stderr", "time": "2026-11-22T17:00:01Z"},
    ]
    assert out[0]["kubernetes"] is EXTRA["kubernetes"]
    assert offsets == starts(lines, 3)[:-1]
    assert safe == starts(lines, 3)[-1]


def test_cri_partials_are_reassembled_per_stream() -> None:
    lines = [
        cri(b"out-1 ", tags="P", time=at(1)),
        cri(b"err-1 ", "stderr", "P", at(2)),
        cri(b"out-2 ", tags="P", time=at(3)),
        cri(b"err-2", "stderr", "F", at(4)),
        cri(b"out-3", tags="F", time=at(5)),
        cri(b"single", time=at(6)),
    ]
    decoder = CriDecoder(EXTRA, 1 << 20)
    out, offsets, safe = decode(decoder, lines[:3])
    assert (out, safe) == ([], 0)
    out, offsets, safe = decode(decoder, lines[3:], starts(lines)[3])
    assert [(e["message"], e["stream"], e["time"]) for e in out] == [
        ("err-1 err-2", "stderr", at(2)),
        ("out-1 out-2 out-3", "stdout", at(1)),
        ("single", "stdout", at(6)),
    ]
    assert offsets == [starts(lines)[1], 0, starts(lines)[5]]
    assert safe == starts(lines)[-1]


def test_cri_empty_content() -> None:
    lines = [cri(b""), f"{T0} stderr F".encode(), cri(b"", tags="P"), f"{T0} stdout F".encode()]
    decoder = CriDecoder(EXTRA, 1 << 20)
    out, _, _ = decode(decoder, lines)
    assert [(e["message"], e["stream"]) for e in out] == [("", "stdout"), ("", "stderr"), ("", "stdout")]
    assert decoder.errors == 0


def test_cri_extra_tags_are_accepted() -> None:
    lines = [cri(b"a", tags="F:x"), cri(b"b", tags="P:y:z"), cri(b"c", tags="F:q")]
    out, _, _ = decode(CriDecoder(EXTRA, 1 << 20), lines)
    assert [e["message"] for e in out] == ["a", "bc"]


def test_cri_content_keeps_its_spaces() -> None:
    out, _, _ = decode(CriDecoder(EXTRA, 1 << 20), [cri(b"  two  spaces  ")])
    assert out[0]["message"] == "  two  spaces  "


@pytest.mark.parametrize("line", [
    b"",
    b"just text",
    f"{T0} stdout".encode(),
    f"{T0} stdin F hello".encode(),
    f"{T0} stdout X hello".encode(),
    f"{T0} stdout  F hello".encode(),
    f"{T0} stdout FP hello".encode(),
])
def test_cri_malformed_line_is_kept_raw_and_counted(line: bytes) -> None:
    decoder = CriDecoder(EXTRA, 1 << 20)
    out, _, _ = decode(decoder, [cri(b"before"), line, cri(b"after")])
    assert out[1] == {**EXTRA, "message": line.decode(), "parse_error": "not a CRI line"}
    assert [e["message"] for e in out[::2]] == ["before", "after"]
    assert decoder.errors == 1


@pytest.mark.parametrize(("time", "tags"), [("qwerty", "F"), ("2026-11-22", "F"), ("2026-13-01T00:00:00Z", "F"),
                                            ("qwerty", "P")])
def test_cri_line_whose_time_is_not_rfc3339_is_kept_raw_and_counted(time: str, tags: str) -> None:
    """The kubelet rejects such lines (its CRI parser reads the time with RFC 3339 Nano); a bad time picks no index."""
    decoder = CriDecoder(EXTRA, 1 << 20)
    line = f"{time} stdout {tags} hello".encode()
    out, _, _ = decode(decoder, [cri(b"before"), line, cri(b"after")])
    assert out[1] == {**EXTRA, "message": line.decode(), "parse_error": "time is not RFC 3339"}
    assert [e["message"] for e in out[::2]] == ["before", "after"]
    assert decoder.errors == 1


def test_cri_invalid_utf8_is_replaced_and_a_character_split_over_pieces_survives() -> None:
    euro = "€".encode()
    lines = [cri(b"bad \xff", tags="F"), cri(b"price 5" + euro[:1], tags="P"), cri(euro[1:] + b"!", tags="F")]
    out, _, _ = decode(CriDecoder(EXTRA, 1 << 20), lines)
    assert [e["message"] for e in out] == ["bad \ufffd", "price 5€!"]
    out, _, _ = decode(CriDecoder(EXTRA, 1 << 20), [b"\xff\xfe stdout F x"])  # no time: kept raw, replaced
    assert out == [{**EXTRA, "message": "\ufffd\ufffd stdout F x", "parse_error": "time is not RFC 3339"}]


def test_cri_huge_message_is_cut_at_max_message_bytes() -> None:
    limit = 50_000
    decoder = CriDecoder(EXTRA, limit)
    out: list[dict] = []
    for _ in range(100):
        decoder.decode([cri(b"y" * PIECE, tags="P")], [0, 0], out)
        assert decoder._held["stdout"].size <= limit
    decoder.decode([cri(b"end"), cri(b"next")], [0, 0, 0], out)
    assert [(len(e["message"]), e.get("truncated")) for e in out] == [(limit, True), (4, None)]
    assert decoder.truncated == 1


def test_cri_flush_marks_partial() -> None:
    decoder = CriDecoder(EXTRA, 1 << 20)
    out, _, _ = decode(decoder, [cri(b"a", tags="P", time=at(1)), cri(b"b", tags="P", time=at(2))])
    decoder.flush(out)
    assert take_offsets(out) == [0]
    assert out == [{**EXTRA, "message": "ab", "stream": "stdout", "time": at(1), "partial": True}]
    decoder.flush(out)
    assert len(out) == 1


# a held record that nothing completes in time (issue 15.5)

PARTS: dict[str, Callable[[str, str, bool], bytes]] = {
    "docker": lambda text, stream, last: docker(text + "\n" if last else text, stream),
    "cri": lambda text, stream, last: cri(text.encode(), stream, "F" if last else "P"),
}


@pytest.mark.parametrize("fmt", ["docker", "cri"])
def test_flush_expired_emits_the_records_no_line_extended_since_the_deadline(
        fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    part = PARTS[fmt]
    clock = [100.0]
    monkeypatch.setattr("agent.codecs.container.monotonic", lambda: clock[0])
    decoder = DECODERS[fmt](EXTRA, 1 << 20)
    lines = [part("out-1 ", "stdout", False), part("err-1 ", "stderr", False)]
    out, _, safe = decode(decoder, lines[:1])
    clock[0] = 102.0
    more, _, _ = decode(decoder, lines[1:], starts(lines)[1])
    assert (out + more, safe) == ([], 0)
    assert decoder.flush_expired(100.0, out) is None  # extended at 100.0: not before the deadline
    assert out == []
    assert decoder.flush_expired(101.0, out) == starts(lines)[1]  # stderr's record is still held
    assert take_offsets(out) == [0]
    assert [(e["message"], e["stream"], e["partial"]) for e in out] == [("out-1 ", "stdout", True)]
    # stdout is free again: its next record is on its own, not glued onto the emitted part
    after = [part("out-2", "stdout", True), part("err-2", "stderr", True)]
    out, offsets, safe = decode(decoder, after, starts(lines)[2])
    assert [(e["message"], e.get("partial")) for e in out] == [("out-2", None), ("err-1 err-2", None)]
    assert offsets == [starts(lines)[2], starts(lines)[1]]
    assert safe == starts(lines + after)[-1]


@pytest.mark.parametrize("fmt", ["docker", "cri"])
def test_flush_expired_of_the_last_record_makes_the_end_of_the_lines_safe(
        fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    part = PARTS[fmt]
    monkeypatch.setattr("agent.codecs.container.monotonic", lambda: 5.0)
    decoder = DECODERS[fmt](EXTRA, 1 << 20)
    lines = [part("done", "stdout", True), part("Password: ", "stderr", False)]
    out, _, safe = decode(decoder, lines, 1000)
    assert safe == 1000 + starts(lines)[1]
    assert decoder.flush_expired(6.0, out) == 1000 + starts(lines)[-1]
    assert [(e["message"], e.get("partial")) for e in out] == [("done", None), ("Password: ", True)]
    assert decoder.flush_expired(6.0, out) is None


def test_raw_flush_expired_has_nothing_to_emit() -> None:
    out: list[dict] = []
    assert RawDecoder(EXTRA, 1 << 20).flush_expired(1e18, out) is None
    assert out == []


# raw


def test_raw_lines() -> None:
    lines = [b"one", b"", b"caf\xc3\xa9 \xff"]
    decoder = RawDecoder(EXTRA, 1 << 20)
    out, offsets, safe = decode(decoder, lines, 10)
    assert out == [{**EXTRA, "message": "one"}, {**EXTRA, "message": ""}, {**EXTRA, "message": "café \ufffd"}]
    assert offsets == starts(lines, 10)[:-1]
    assert safe == starts(lines, 10)[-1]
    assert decoder.decode([], [10], out) == 10
    decoder.flush(out)
    assert len(out) == 3


# the events' keys: the fast paths copy a template of them; the slow path builds them, in the same order

OVERLAPPING = {"offset": -1, "file": "/f.log", "message": "from extra", "inode": 7}


@pytest.mark.parametrize("extra", [EXTRA, OVERLAPPING, {}])
def test_fast_path_events_have_the_slow_paths_keys_in_the_same_order(extra: dict[str, Any]) -> None:
    lines = [docker("a\n"), docker("b\n", attrs={"tag": "x"}), docker("c", "stderr"), docker("d\n", "stderr"),
             docker("e\n", attrs={"tag": "y"})]
    decoder = DockerDecoder(extra, 1 << 20)
    out: list[dict] = []
    decoder.decode(lines, starts(lines), out)  # a, b and e on the fast path; c + d reassembled (slow path)
    fast = [{**extra, "message": "a", "stream": "stdout", "time": T0, "offset": 0},
            {**extra, "message": "b", "stream": "stdout", "time": T0, "attrs": {"tag": "x"},
             "offset": starts(lines)[1]},
            {**extra, "message": "cd", "stream": "stderr", "time": T0, "offset": starts(lines)[2]},
            {**extra, "message": "e", "stream": "stdout", "time": T0, "attrs": {"tag": "y"},
             "offset": starts(lines)[4]}]
    assert [list(event.items()) for event in out] == [list(event.items()) for event in fast]


@pytest.mark.parametrize("extra", [EXTRA, OVERLAPPING, {}])
def test_cri_and_raw_events_keep_the_extra_fields_first_in_their_order(extra: dict[str, Any]) -> None:
    out: list[dict] = []
    CriDecoder(extra, 1 << 20).decode([cri(b"hi")], [0, 100], out)
    RawDecoder(extra, 1 << 20).decode([b"raw"], [100, 104], out)
    assert [list(event.items()) for event in out] == [
        list({**extra, "message": "hi", "stream": "stdout", "time": T0, "offset": 0}.items()),
        list({**extra, "message": "raw", "offset": 100}.items())]
    assert "offset" not in extra or extra["offset"] == -1  # the decoders never write into extra


# the Docker fast path (all lines of a read at once) and the slow path (one line alone) read every line alike

JSON_STRINGS = st.one_of(
    st.text(max_size=6).map(lambda t: orjson.dumps(t)),
    st.sampled_from([b'"a\\n"', b'"\\ud83d\\ude00\\n"', b'"\\udc00\\n"', b'"\\ud800"', b'"a\\u0000\\n"',
                     b'"a\\x\\n"', b'"a\x01\\n"', b'"\xed\xa0\x80\\n"', b'"\xc3\xa9\\n"', b'"\xff\\n"',
                     b'"stdout"', b'"stderr"', f'"{T0}"'.encode(), b'"2026-11-22 17:00:00Z"', b'"\\/\\n"']))
JSON_VALUES = st.one_of(JSON_STRINGS, st.sampled_from([b"null", b"5", b"1e999", b"NaN", b"123456789012345678901234567890",
                                                     b"[1,}", b'{"a":[1,2]}', b"[" * 1100 + b"]" * 1100, b"{}", b"true"]))
DOCKER_KEYS = st.sampled_from([b'"log"', b'"stream"', b'"time"', b'"attrs"', b'"other"', b'"lo\\u0067"'])


@st.composite
def docker_like_lines(draw: st.DrawFn) -> bytes:
    """Mostly well-formed Docker lines with odd values, keys, duplicates, escapes, bytes and whitespace."""
    log = draw(st.one_of(st.text(max_size=6).map(lambda t: orjson.dumps(t + "\n")), JSON_STRINGS))
    fields = [(b'"log"', log), (b'"stream"', draw(st.sampled_from([b'"stdout"', b'"stderr"']))),
              (b'"time"', f'"{T0}"'.encode())]
    for _ in range(draw(st.integers(0, 2))):
        fields.insert(draw(st.integers(0, len(fields))), (draw(DOCKER_KEYS), draw(JSON_VALUES)))
    if draw(st.integers(0, 3)) == 0:
        del fields[draw(st.integers(0, len(fields) - 1))]
    line = b"{" + b",".join(key + draw(st.sampled_from([b":", b" : "])) + value for key, value in fields) + b"}"
    if draw(st.integers(0, 3)) == 0:  # now and then something around it
        line = draw(st.sampled_from([b" ", b"\xef\xbb\xbf", b"["])) + line + draw(
            st.sampled_from([b"", b" \t\r", b"\x0c", b"\x00", b",", b"]", b"{}"]))
    return line


def test_docker_attrs_of_any_json_value_are_kept_as_orjson_reads_them() -> None:
    values = [None, [1, "a"], "text", 1.5, {"a": {"b": None}}]
    lines = [docker("x\n", attrs=value) for value in values]
    lines.append(docker("x\n")[:-1] + b',"attrs":123456789012345678901234567890}')  # past 64 bits: orjson reads it
    values.append(orjson.loads(lines[-1])["attrs"])
    out, _, _ = decode(DockerDecoder(EXTRA, 1 << 20), lines)
    assert out == [{**EXTRA, "message": "x", "stream": "stdout", "time": T0, "attrs": value} for value in values]


@settings(max_examples=500)
@given(st.lists(docker_like_lines(), min_size=1, max_size=6))
def test_docker_fast_path_gives_what_the_slow_path_gives_for_any_line(lines: list[bytes]) -> None:
    fast, slow = DockerDecoder(EXTRA, 1 << 20), DockerDecoder(EXTRA, 1 << 20)
    offs = starts(lines)
    by_fast: list[dict] = []
    fast.decode(lines, offs, by_fast)
    fast.flush(by_fast)
    by_slow: list[dict] = []
    for line, pos in zip(lines, offs, strict=False):
        slow._line(line, pos, by_slow)  # orjson, each line on its own
    slow.flush(by_slow)
    # known (not changed here): the slow path drops "attrs": null, the fast path keeps it
    assert [[item for item in event.items() if item != ("attrs", None)] for event in by_fast] == [
        list(event.items()) for event in by_slow]
    assert (fast.errors, fast.truncated) == (slow.errors, slow.truncated)


# properties

STREAMS = ("stdout", "stderr")


def build_file(data: st.DataObject, records: list[tuple[str, Any, list[int]]],
               line: Callable[[str, Any, bool, int, int], bytes], split: Callable[[Any, list[int]], list[Any]]
               ) -> tuple[list[bytes], list[int]]:
    """Lines for ``records`` (stream, message, cut points), each split into pieces, the two streams interleaved.

    Returns the lines and, for each line, the index of its record, or ~index on the first line of a record.
    """
    queues: dict[str, list[tuple[bytes, int]]] = {stream: [] for stream in STREAMS}
    for index, (stream, message, cuts) in enumerate(records):
        pieces = split(message, cuts)
        for number, piece in enumerate(pieces):
            tag = ~index if number == 0 else index
            queues[stream].append((line(stream, piece, number == len(pieces) - 1, index, number), tag))
    lines: list[bytes] = []
    owners: list[int] = []
    while queues["stdout"] or queues["stderr"]:
        stream = data.draw(st.sampled_from([s for s in STREAMS if queues[s]]))
        line_bytes, tag = queues[stream].pop(0)
        lines.append(line_bytes)
        owners.append(tag)
    return lines, owners


def split_at(message: Any, cuts: list[int]) -> list[Any]:
    points = sorted({c for c in cuts if c <= len(message)})
    return [message[a:b] for a, b in zip([0, *points], [*points, len(message)], strict=True)]


def check_any_chunking(data: st.DataObject, make: Callable[[], LineDecoder], records: list[tuple[str, Any, list[int]]],
                       lines: list[bytes], owners: list[int], expected: list[str]) -> None:
    offs = starts(lines)
    first_line = {~tag: i for i, tag in enumerate(owners) if tag < 0}
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(lines)), max_size=8))))
    decoder = make()
    out: list[dict] = []
    for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True):
        safe = decoder.decode(lines[a:b], offs[a:b + 1], out)
        assert safe in offs[:b + 1]
        emitted = Counter(e["stream"] for e in out)
        pending = [i for i, (stream, _, _) in enumerate(records)
                   if sum(r[0] == stream for r in records[:i]) >= emitted[stream] and first_line[i] < b]
        for i in pending:  # never checkpoint past a record not yet emitted
            assert safe <= offs[first_line[i]]
        again: list[dict] = []  # and re-reading from the safe offset produces each of them again
        make().decode(lines[offs.index(safe):], offs[offs.index(safe):], again)
        assert not Counter(expected[i] for i in pending) - Counter(e["message"] for e in again)
    decoder.flush(out)
    for stream in STREAMS:
        assert [e["message"] for e in out if e["stream"] == stream] == [
            expected[i] for i, record in enumerate(records) if record[0] == stream]
        assert [e["offset"] for e in out if e["stream"] == stream] == [  # where each record's first line starts
            offs[first_line[i]] for i, record in enumerate(records) if record[0] == stream]
    assert not any("partial" in e or "parse_error" in e or "truncated" in e for e in out)


texts = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=30)
cut_lists = st.lists(st.integers(0, 30), max_size=4)


@given(st.lists(st.tuples(st.sampled_from(STREAMS), texts, cut_lists), max_size=12), st.data())
def test_docker_any_split_and_chunking_yields_the_messages(records: list[tuple[str, str, list[int]]],
                                                           data: st.DataObject) -> None:
    def line(stream: str, piece: str, last: bool, index: int, number: int) -> bytes:
        return docker(piece + "\n" if last else piece, stream, at(index, number))

    lines, owners = build_file(data, records, line, split_at)
    check_any_chunking(data, lambda: DockerDecoder(EXTRA, 1 << 20), records, lines, owners, [m for _, m, _ in records])


@given(st.lists(st.tuples(st.sampled_from(STREAMS), st.binary(max_size=30).filter(lambda b: b"\n" not in b),
                          cut_lists), max_size=12), st.data())
def test_cri_any_split_and_chunking_yields_the_messages(records: list[tuple[str, bytes, list[int]]],
                                                        data: st.DataObject) -> None:
    def line(stream: str, piece: bytes, last: bool, index: int, number: int) -> bytes:
        return cri(piece, stream, "F" if last else "P", f"2026-11-22T17:00:{index:02d}.{number}Z")

    lines, owners = build_file(data, records, line, split_at)
    expected = [m.decode("utf-8", "replace") for _, m, _ in records]
    check_any_chunking(data, lambda: CriDecoder(EXTRA, 1 << 20), records, lines, owners, expected)


@given(st.sampled_from(sorted(DECODERS)), st.lists(st.binary(max_size=80), max_size=20), st.integers(1, 40))
def test_decode_never_raises_on_arbitrary_lines(fmt: str, lines: list[bytes], limit: int) -> None:
    decoder = DECODERS[fmt](EXTRA, limit)
    out: list[dict] = []
    safe = decoder.decode(lines, starts(lines), out)
    assert 0 <= safe <= starts(lines)[-1]
    decoder.flush(out)
    assert len(take_offsets(out)) == len(out) <= len(lines)
    assert all(isinstance(e["message"], str) for e in out)
    orjson.dumps(out)  # every event is serialisable


def cut_decode(decoder: LineDecoder, lines: list[bytes], cut: list[int], limit: int) -> list[dict]:
    """Decode ``lines`` as the line splitter hands them over when the lines at ``cut`` were longer than ``limit``."""
    offs = starts(lines)
    out: list[dict] = []
    assert decoder.decode_cut([line[:limit] if i in cut else line for i, line in enumerate(lines)], offs, cut,
                              out) == offs[-1]
    return out


@pytest.mark.parametrize("fmt", sorted(DECODERS))
def test_an_event_of_a_line_the_splitter_cut_says_truncated(fmt: str) -> None:
    make = {"docker": lambda m: docker(m + "\n"), "cri": lambda m: cri(m.encode()), "raw": lambda m: m.encode()}[fmt]
    lines = [make("short"), make("a long line " + "x" * 100), make("after"), make("y" * 100)]
    out = cut_decode(DECODERS[fmt](EXTRA, 1 << 20), lines, [1, 3], 40)
    assert [e.get("truncated", False) for e in out] == [False, True, False, True]
    assert [e["offset"] for e in out] == starts(lines)[:-1]
    assert out[2]["message"] == "after"


def test_a_cri_record_with_a_cut_piece_says_truncated_and_keeps_its_other_pieces() -> None:
    lines = [cri(b"one ", tags="P"), cri(b"z" * 100, tags="P"), cri(b"three"), cri(b"next")]
    out = cut_decode(CriDecoder(EXTRA, 1 << 20), lines, [1], 60)
    assert [(e["message"][:4], e["message"][-5:], e.get("truncated", False)) for e in out] == [
        ("one ", "three", True), ("next", "next", False)]
