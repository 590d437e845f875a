"""Conformance: container log lines, with inputs and expected outputs taken from the upstream test suites.

Sources (each case's id names the file and the test it comes from):

- kubelet: kubernetes/kubernetes ``pkg/kubelet/kuberuntime/logs/logs_test.go``, ``TestParseLog``
- Vector: vectordotdev/vector ``src/sources/kubernetes_logs/parser/docker.rs`` (``cases``, ``test_parsing_invalid``)
  and ``parser/cri.rs`` (``cases``, ``byte_cases``)
- Fluent Bit: fluent/fluent-bit ``tests/internal/multiline.c`` (``docker_input``/``docker_output``,
  ``cri_input``/``cri_output``)

Where the agent's contract differs on purpose from an upstream parser, the case says so:

- A line that does not parse is dropped by Vector and the kubelet; the agent keeps it, raw, with ``parse_error``.
- The agent emits a record only when it is complete (``F``, or a Docker ``log`` ending in ``\\n``); a piece that is
  the container's last output comes out on flush, marked ``partial``. Vector emits every piece and marks it.
- The message of a complete line has no trailing ``\\n`` (the kubelet keeps it for CRI ``F`` lines).
"""

from __future__ import annotations

import inspect
from datetime import datetime
from itertools import accumulate
from typing import Any

import orjson
import pytest

from agent.codecs.container import CriDecoder, DockerDecoder, LineDecoder, detect_format
from agent.core.batch import Kind
from agent.sinks.elasticsearch.encoder import IndexTemplate, bulk_body

EXTRA = {"file": "/var/log/containers/app.log"}
LIMIT = 1 << 20
KUBELET = "kubelet logs_test.go TestParseLog"
VECTOR_DOCKER = "vector parser/docker.rs"
VECTOR_CRI = "vector parser/cri.rs"
FLUENT_BIT = "fluent-bit tests/internal/multiline.c"


def decode(decoder: LineDecoder, lines: list[bytes], out: list[dict[str, Any]]) -> None:
    """``lines`` as the first read of a file. Takes either shape of ``decode``'s second argument: the offset of
    the first line, or (since issue 8.6) the offset of every line and of the end."""
    starts = list(accumulate((len(line) + 1 for line in lines), initial=0))
    by_line = "starts" in inspect.signature(decoder.decode).parameters
    decoder.decode(lines, starts if by_line else 0, out)  # type: ignore[arg-type]


def run(decoder: LineDecoder, lines: list[bytes], flush: bool = True) -> list[dict[str, Any]]:
    """Decode ``lines`` as one read of a file, then (if ``flush``) take what is still held; offsets dropped."""
    out: list[dict[str, Any]] = []
    decode(decoder, lines, out)
    if flush:
        decoder.flush(out)
    for event in out:
        event.pop("offset")
        event.pop("file")
    return out


def long_string(base: str, size: int) -> str:
    """``base`` repeated and cut to ``size`` characters (Vector's ``make_long_string``)."""
    return (base * (size // len(base) + 1))[:size]


def docker(log: str, stream: str, time: str) -> bytes:
    return orjson.dumps({"log": log, "stream": stream, "time": time})


# -- Docker json-file ---------------------------------------------------------------------------------------------

T_VECTOR = "2016-10-05T00:00:30.082640485Z"
T_KUBELET = "2016-10-20T18:39:20.57606443Z"

DOCKER_CASES = [
    pytest.param(b'{"log":"docker stdout test log","stream":"stdout","time":"2016-10-20T18:39:20.57606443Z"}',
                 [{"message": "docker stdout test log", "stream": "stdout", "time": T_KUBELET}],
                 id=f"{KUBELET}: Docker log format stdout"),
    pytest.param(b'{"log":"docker stderr test log","stream":"stderr","time":"2016-10-20T18:39:20.57606443Z"}',
                 [{"message": "docker stderr test log", "stream": "stderr", "time": T_KUBELET}],
                 id=f"{KUBELET}: Docker log format stderr"),
    pytest.param(b'{"log": "The actual log line\\n", "stream": "stderr", "time": "2016-10-05T00:00:30.082640485Z"}',
                 [{"message": "The actual log line", "stream": "stderr", "time": T_VECTOR}],
                 id=f"{VECTOR_DOCKER} cases: a complete line"),
    pytest.param(b'{"log": "A line without newline chan at the end", "stream": "stdout", '
                 b'"time": "2016-10-05T00:00:30.082640485Z"}',
                 [{"message": "A line without newline chan at the end", "stream": "stdout", "time": T_VECTOR}],
                 id=f"{VECTOR_DOCKER} cases: a line without newline at the end"),
    pytest.param(docker(long_string("partial ", 16 * 1024), "stdout", T_VECTOR),
                 [{"message": long_string("partial ", 16 * 1024), "stream": "stdout", "time": T_VECTOR}],
                 id=f"{VECTOR_DOCKER} cases: a 16 KiB piece (partial)"),
    pytest.param(docker(long_string("non-partial ", 16 * 1024 - 1) + "\n", "stdout", T_VECTOR),
                 [{"message": long_string("non-partial ", 16 * 1024 - 1), "stream": "stdout", "time": T_VECTOR}],
                 id=f"{VECTOR_DOCKER} cases: 16 KiB with its newline (not partial)"),
]


@pytest.mark.parametrize(("line", "expected"), DOCKER_CASES)
def test_docker_line(line: bytes, expected: list[dict[str, Any]]) -> None:
    assert detect_format(line) == "docker"
    out = run(DockerDecoder(EXTRA, LIMIT), [line])
    # upstream's fields; whether the agent marks a held piece "partial" is checked below
    assert [{k: e[k] for k in ("message", "stream", "time")} for e in out] == expected
    assert not any("parse_error" in e for e in out)


def test_docker_piece_without_newline_is_held_until_flush_then_marked_partial() -> None:
    """vector parser/docker.rs cases: the 16 KiB piece is ``partial``; the agent holds it, then emits it so marked."""
    decoder = DockerDecoder(EXTRA, LIMIT)
    assert run(decoder, [docker(long_string("partial ", 16 * 1024), "stdout", T_VECTOR)], flush=False) == []
    held: list[dict[str, Any]] = []
    decoder.flush(held)
    assert [(e["message"], e.get("partial")) for e in held] == [(long_string("partial ", 16 * 1024), True)]


def test_docker_16k_pieces_are_joined_with_the_first_piece_time() -> None:
    """vector parser/docker.rs cases (the 16 KiB split threshold), joined as the kubelet's reader joins them."""
    first, second = long_string("partial ", 16 * 1024), long_string("more ", 16 * 1024)
    lines = [docker(first, "stdout", T_VECTOR), docker(second, "stdout", "2016-10-05T00:00:31Z"),
             docker("end\n", "stdout", "2016-10-05T00:00:32Z")]
    out = run(DockerDecoder(EXTRA, LIMIT), lines, flush=False)
    assert out == [{"message": first + second + "end", "stream": "stdout", "time": T_VECTOR}]


INVALID_DOCKER = [
    pytest.param(b"", id=f"{VECTOR_DOCKER} test_parsing_invalid: empty string"),
    pytest.param(b"{", id=f"{VECTOR_DOCKER} test_parsing_invalid: incomplete"),
    pytest.param(b"hello world", id=f"{VECTOR_DOCKER} test_parsing_invalid: random non-JSON text"),
    pytest.param(b"123", id=f"{VECTOR_DOCKER} test_parsing_invalid: JSON non-object"),
    pytest.param(b"{}", id=f"{VECTOR_DOCKER} test_parsing_invalid: empty JSON object"),
    pytest.param(b'{"log": "Hello world", "stream": "stdout"}', id=f"{VECTOR_DOCKER} test_parsing_invalid: no timestamp"),
    pytest.param(b'{"log": "Hello world", "stream": "stdout", "time": 123}',
                 id=f"{VECTOR_DOCKER} test_parsing_invalid: timestamp not a string"),
    pytest.param(b'{"log": "Hello world", "stream": "stdout", "time": ""}',
                 id=f"{VECTOR_DOCKER} test_parsing_invalid: empty timestamp"),
    pytest.param(b'{"log": "Hello world", "stream": "stdout", "time": "qwerty"}',
                 id=f"{VECTOR_DOCKER} test_parsing_invalid: invalid timestamp"),
    pytest.param(b'{"stream": "stderr", "time": "2016-10-05T00:00:30.082640485Z"}',
                 id=f"{VECTOR_DOCKER} test_parsing_invalid: no log field"),
    pytest.param(b'{"log": 123, "stream": "stderr", "time": "2016-10-05T00:00:30.082640485Z"}',
                 id=f"{VECTOR_DOCKER} test_parsing_invalid: log is not a string"),
]


@pytest.mark.parametrize("line", INVALID_DOCKER)
def test_docker_invalid_line_is_kept_raw_with_parse_error(line: bytes) -> None:
    """Vector drops these lines; the agent keeps each one, raw, marked, counted, and never with its bad ``time``."""
    before, after = docker("before\n", "stdout", T_VECTOR), docker("after\n", "stdout", T_VECTOR)
    decoder = DockerDecoder(EXTRA, LIMIT)
    out = run(decoder, [before, line, after])
    assert [e["message"] for e in out] == ["before", line.decode(), "after"]
    bad = out[1]
    assert bad["parse_error"]
    assert "time" not in bad and "partial" not in bad
    assert decoder.errors == 1


BAD_TIMES = [pytest.param(*case.values, id=case.id) for case in INVALID_DOCKER[5:9]] + [
    pytest.param(b'{"log":"x\\n","stream":"stdout"}', id="issue 15.4: a complete line without time")]


@pytest.mark.parametrize("line", BAD_TIMES)
def test_an_invalid_docker_time_reaches_neither_the_index_nor_timestamp(line: bytes) -> None:
    """Issue 15.4 from vector test_parsing_invalid: such a ``time`` must not pick the index or set ``@timestamp``."""
    out: list[dict[str, Any]] = []
    decoder = DockerDecoder(EXTRA, LIMIT)
    decode(decoder, [line], out)
    decoder.flush(out)
    assert len(out) == 1
    index = IndexTemplate("logs-%Y.%m.%d").render(out[0])
    datetime.strptime(index, "logs-%Y.%m.%d")  # a real date, not the line's time
    body = bulk_body(Kind.LOGS, out, index, op="index", id_mode="none", routing=None, type_name=None)
    stamp = orjson.loads(body.splitlines()[1])["@timestamp"]
    assert isinstance(stamp, str)
    datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# -- CRI ----------------------------------------------------------------------------------------------------------

T_CRI = "2016-10-06T00:17:09.669794202Z"

CRI_CASES = [
    pytest.param(b"2016-10-20T18:39:20.57606443Z stdout F cri stdout test log",
                 [{"message": "cri stdout test log", "stream": "stdout", "time": T_KUBELET}],
                 id=f"{KUBELET}: CRI log format stdout"),
    pytest.param(b"2016-10-20T18:39:20.57606443Z stderr F cri stderr test log",
                 [{"message": "cri stderr test log", "stream": "stderr", "time": T_KUBELET}],
                 id=f"{KUBELET}: CRI log format stderr"),
    pytest.param(b"2016-10-20T18:39:20.57606443Z stdout P cri stdout partial test log",
                 [{"message": "cri stdout partial test log", "stream": "stdout", "time": T_KUBELET, "partial": True}],
                 id=f"{KUBELET}: Partial CRI log line"),
    pytest.param(b"2016-10-20T18:39:20.57606443Z stdout P:TAG1:TAG2 cri stdout partial test log",
                 [{"message": "cri stdout partial test log", "stream": "stdout", "time": T_KUBELET, "partial": True}],
                 id=f"{KUBELET}: Partial CRI log line with multiple log tags"),
    pytest.param(b"2016-10-06T00:17:09.669794202Z stdout F The content of the log entry 1",
                 [{"message": "The content of the log entry 1", "stream": "stdout", "time": T_CRI}],
                 id=f"{VECTOR_CRI} cases: F line"),
    pytest.param(b"2016-10-06T00:17:09.669794202Z stdout P First line of log entry 2",
                 [{"message": "First line of log entry 2", "stream": "stdout", "time": T_CRI, "partial": True}],
                 id=f"{VECTOR_CRI} cases: P line"),
    pytest.param(b"2016-10-06T00:17:10.113242941Z stderr F Last line of the log entry 2",
                 [{"message": "Last line of the log entry 2", "stream": "stderr",
                   "time": "2016-10-06T00:17:10.113242941Z"}],
                 id=f"{VECTOR_CRI} cases: F line on stderr"),
    pytest.param(b"2016-10-06T00:17:10.113242941Z stdout P " + long_string("very long message ", 16 * 1024).encode(),
                 [{"message": long_string("very long message ", 16 * 1024), "stream": "stdout",
                   "time": "2016-10-06T00:17:10.113242941Z", "partial": True}],
                 id=f"{VECTOR_CRI} cases: a 16 KiB P piece"),
    pytest.param(b"2021-08-05T17:35:26.640507539Z stdout P Hello World "
                 b"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\x9c\xd0\xb8\xd1",
                 [{"message": "Hello World Привет Ми\ufffd", "stream": "stdout",
                   "time": "2021-08-05T17:35:26.640507539Z", "partial": True}],
                 id=f"{VECTOR_CRI} byte_cases: invalid UTF-8 (the agent replaces the bad byte)"),
]


@pytest.mark.parametrize(("line", "expected"), CRI_CASES)
def test_cri_line(line: bytes, expected: list[dict[str, Any]]) -> None:
    assert detect_format(line) == "cri"
    decoder = CriDecoder(EXTRA, LIMIT)
    assert run(decoder, [line]) == expected
    assert decoder.errors == 0


def test_cri_unsupported_line_is_kept_raw_with_parse_error() -> None:
    """kubelet TestParseLog "Unsupported Log format": an error there; kept raw and marked here, nothing lost."""
    line = b"unsupported log format test log"
    assert detect_format(line) == "raw"
    decoder = CriDecoder(EXTRA, LIMIT)
    out = run(decoder, [b"2016-10-20T18:39:20.57606443Z stdout F before", line,
                        b"2016-10-20T18:39:20.57606443Z stdout F after"])
    assert [(e["message"], "parse_error" in e) for e in out] == [
        ("before", False), ("unsupported log format test log", True), ("after", False)]
    assert decoder.errors == 1


def test_cri_partials_with_tags_are_joined_up_to_the_f_line() -> None:
    """kubelet TestParseLog (``P:TAG1:TAG2``): the tags after ``P``/``F`` do not change the content."""
    lines = [b"2016-10-20T18:39:20.57606443Z stdout P:TAG1:TAG2 cri stdout ",
             b"2016-10-20T18:39:21.57606443Z stdout F:TAG1 partial test log"]
    assert run(CriDecoder(EXTRA, LIMIT), lines, flush=False) == [
        {"message": "cri stdout partial test log", "stream": "stdout", "time": T_KUBELET}]


def test_cri_pieces_of_stdout_and_stderr_are_joined_per_stream() -> None:
    """vector parser/cri.rs cases: stdout P, stdout P, then stderr F: stderr's line does not end stdout's record."""
    lines = [b"2016-10-06T00:17:09.669794202Z stdout P First line of log entry 2",
             b"2016-10-06T00:17:09.669794202Z stdout P Second line of the log entry 2",
             b"2016-10-06T00:17:10.113242941Z stderr F Last line of the log entry 2"]
    out = run(CriDecoder(EXTRA, LIMIT), lines)
    assert [(e["stream"], e["message"], e.get("partial", False)) for e in out] == [
        ("stderr", "Last line of the log entry 2", False),
        ("stdout", "First line of log entry 2Second line of the log entry 2", True)]


def test_fluent_bit_cri_multiline_interleaved_streams() -> None:
    """fluent-bit tests/internal/multiline.c cri_input -> cri_output (P/P/F per stream, stdout and stderr)."""
    cri_input = [
        "2019-05-07T18:57:50.904275087+00:00 stdout P 1a. some ",
        "2019-05-07T18:57:51.904275088+00:00 stdout P multiline ",
        "2019-05-07T18:57:52.904275089+00:00 stdout F log",
        "2019-05-07T18:57:50.904275087+00:00 stderr P 1b. some ",
        "2019-05-07T18:57:51.904275088+00:00 stderr P multiline ",
        "2019-05-07T18:57:52.904275089+00:00 stderr F log",
        "2019-05-07T18:57:53.904275090+00:00 stdout P 2a. another ",
        "2019-05-07T18:57:54.904275091+00:00 stdout P multiline ",
        "2019-05-07T18:57:55.904275092+00:00 stdout F log",
        "2019-05-07T18:57:53.904275090+00:00 stderr P 2b. another ",
        "2019-05-07T18:57:54.904275091+00:00 stderr P multiline ",
        "2019-05-07T18:57:55.904275092+00:00 stderr F log",
        "2019-05-07T18:57:56.904275093+00:00 stdout F 3a. non multiline 1",
        "2019-05-07T18:57:57.904275094+00:00 stdout F 4a. non multiline 2",
        "2019-05-07T18:57:56.904275093+00:00 stderr F 3b. non multiline 1",
        "2019-05-07T18:57:57.904275094+00:00 stderr F 4b. non multiline 2",
    ]
    cri_output = ["1a. some multiline log", "1b. some multiline log", "2a. another multiline log",
                  "2b. another multiline log", "3a. non multiline 1", "4a. non multiline 2",
                  "3b. non multiline 1", "4b. non multiline 2"]
    out = run(CriDecoder(EXTRA, LIMIT), [line.encode() for line in cri_input], flush=False)
    assert [e["message"] for e in out] == cri_output
    assert out[0]["time"] == "2019-05-07T18:57:50.904275087+00:00"  # the first piece's
    assert not any("parse_error" in e for e in out)


def test_fluent_bit_docker_mode_interleaved_streams() -> None:
    """fluent-bit tests/internal/multiline.c docker_input -> docker_output.

    Adapted: upstream's fourth record has a raw newline inside its JSON string (``"cc\\n"`` in C), which a file
    cannot hold on one line; it is written escaped here. Divergence, deliberate: Fluent Bit emits the held stderr
    piece ``dd`` when the non-JSON line arrives; the agent keeps that line raw with ``parse_error`` and goes on
    joining stderr's pieces, so ``dd`` and ``ee`` make one record.
    """
    t = "2021-02-01T16:45:03.0123{}z"  # lower-case "z": valid RFC 3339 (section 5.6)
    docker_input = [
        docker("aa\n", "stdout", t.format(1)), docker("aa\n", "stderr", t.format(1)),
        docker("bb", "stdout", t.format(2)), docker("cc\n", "stdout", t.format(3)),
        docker("dd", "stderr", t.format(3)),
        b"single line to force pending flush of the previous line",
        docker("ee\n", "stderr", t.format(4)),
    ]
    out = run(DockerDecoder(EXTRA, LIMIT), docker_input, flush=False)
    assert [(e["message"], e.get("stream"), "parse_error" in e) for e in out] == [
        ("aa", "stdout", False), ("aa", "stderr", False), ("bbcc", "stdout", False),
        ("single line to force pending flush of the previous line", None, True), ("ddee", "stderr", False)]
    assert [e.get("time") for e in out if "parse_error" not in e] == [
        t.format(1), t.format(1), t.format(2), t.format(3)]
