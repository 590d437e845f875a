"""The exposition parser: text 0.0.4 and OpenMetrics 1.0, against the format docs, prometheus_client's parser
on real pages, and fuzzing."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, Summary
from prometheus_client import generate_latest as text_page
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest as om_page
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families as text_families

from agent.prometheus import exposition
from agent.prometheus.exposition import ExpositionError, kind_of, parse_exposition

NODE_EXPORTER = Path(__file__).parent / "data" / "node_exporter.prom"

# The example of docs/instrumenting/exposition_formats.md (prometheus/docs).
DOCS_EXAMPLE = rb"""# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"""


def same(a: list, b: list) -> bool:
    """Sample lists equal, NaN equal to NaN."""
    return len(a) == len(b) and all(
        x[:2] == y[:2] and x[3] == y[3] and (x[2] == y[2] or (math.isnan(x[2]) and math.isnan(y[2])))
        for x, y in zip(a, b, strict=True)
    )


def flat(page: bytes, om: bool = False) -> list:
    """Our samples with labels as dicts (the reference parser does not keep the page's label order)."""
    return [(n, dict(labels), v, ts) for n, labels, v, ts in parse_exposition(page, om).samples]


def reference(page: bytes, om: bool = False) -> list:
    """prometheus_client's reading of the page, as (name, labels, value, timestamp in ms)."""
    out = []
    for family in (om_families if om else text_families)(page.decode()):
        for s in family.samples:
            ts = s.timestamp
            if ts is not None:  # text: float seconds of the page's ms; OpenMetrics: a Timestamp or float seconds
                ts = int(float(ts) * 1000) if om else round(ts * 1000)
            out.append((s.name, dict(s.labels), s.value, ts))
    return out


def test_the_docs_example_parses_to_every_sample_with_types() -> None:
    page = parse_exposition(DOCS_EXAMPLE, False)
    assert page.samples[:5] == [
        ("http_requests_total", (("method", "post"), ("code", "200")), 1027.0, 1395066363000),
        ("http_requests_total", (("method", "post"), ("code", "400")), 3.0, 1395066363000),
        (
            "msdos_file_access_time_seconds",
            (("path", "C:\\DIR\\FILE.TXT"), ("error", 'Cannot find file:\n"FILE.TXT"')),
            1.458255915e9,
            None,
        ),
        ("metric_without_timestamp_and_labels", (), 12.47, None),
        ("something_weird", (("problem", "division by zero"),), math.inf, -3982045),
    ]
    assert page.samples[5] == ("http_request_duration_seconds_bucket", (("le", "0.05"),), 24054.0, None)
    assert page.samples[-1] == ("rpc_duration_seconds_count", (), 2693.0, None)
    assert len(page.samples) == 5 + 8 + 7
    assert page.types == {
        "http_requests_total": "counter",
        "http_request_duration_seconds": "histogram",
        "rpc_duration_seconds": "summary",
    }
    assert same(flat(DOCS_EXAMPLE), reference(DOCS_EXAMPLE))


def assert_refused(page: bytes, om: bool, what: str) -> None:
    """The page is refused with an ExpositionError that names a line and says `what`."""
    with pytest.raises(ExpositionError, match=r"^line ") as caught:
        parse_exposition(page, om)
    assert what in str(caught.value)


def test_kind_of_finds_the_family_of_suffixed_samples() -> None:
    types = {
        "h": "histogram",
        "s": "summary",
        "c": "counter",
        "x_total": "counter",
        "g": "gauge",
        "gh": "gaugehistogram",
        "i": "info",
    }
    assert [kind_of(n, types) for n in ("h_bucket", "h_sum", "h_count", "h_created")] == ["histogram"] * 4
    assert [kind_of(n, types) for n in ("s", "s_sum", "s_count", "s_created")] == ["summary"] * 4
    assert [kind_of(n, types) for n in ("c_total", "c_created", "x_total")] == ["counter"] * 3
    assert [kind_of(n, types) for n in ("gh_bucket", "gh_gcount", "gh_gsum", "i_info")] == [
        "gaugehistogram", "gaugehistogram", "gaugehistogram", "info",
    ]
    assert kind_of("g", types) == "gauge"
    # A suffix that does not belong to the family's type, or no TYPE at all: untyped.
    assert [kind_of(n, types) for n in ("g_total", "g_bucket", "c_bucket", "s_bucket", "nothing", "h")] == [
        "untyped", "untyped", "untyped", "untyped", "untyped", "histogram",
    ]


@pytest.mark.parametrize(
    ("line", "value"),
    [("a NaN", math.nan), ("a +Inf", math.inf), ("a -Inf", -math.inf), ("a 1e3", 1000.0), ("a -0.5", -0.5),
     ("a 17", 17.0), ("a .5", 0.5), ("a inf", math.inf), ("a Infinity", math.inf), ("a nan", math.nan)],
)
def test_special_and_plain_values(line: str, value: float) -> None:
    [(_, _, got, _)] = parse_exposition(line.encode() + b"\n", False).samples
    assert got == value or (math.isnan(got) and math.isnan(value))


def test_whitespace_and_label_syntax_that_prometheus_accepts_in_text_0_0_4() -> None:
    page = (
        b'  a 1\n'  # indented
        b'b\t2\t3\n'  # tabs
        b'c {x = "1" , y="2",} 4\n'  # blanks in the label set, trailing comma
        b'd{x="1" y="2"} 5\n'  # no comma between pairs (Prometheus's parser allows it)
        b'e{} 6  \n'  # empty label set, trailing blanks
        b'f{x="}{,=\\t"}7\n'  # braces, comma and a kept unknown escape in a value; no blank before the value
        b'   \n'  # blanks only
        b'  # TYPE g gauge\n'
        b'#comment without a blank\n'
        b'# TYPE\n'  # a comment, not a TYPE line
        b'g 8'  # no final line end
    )
    got = parse_exposition(page, False)
    assert got.samples == [
        ("a", (), 1.0, None),
        ("b", (), 2.0, 3),
        ("c", (("x", "1"), ("y", "2")), 4.0, None),
        ("d", (("x", "1"), ("y", "2")), 5.0, None),
        ("e", (), 6.0, None),
        ("f", (("x", "}{,=\\t"),), 7.0, None),
        ("g", (), 8.0, None),
    ]
    assert got.types == {"g": "gauge"}


def test_help_escapes_and_odd_help_text_do_not_break_parsing() -> None:
    page = b'# HELP a Help with \\\\ and \\n and "quotes" and { braces } and # hashes\n# TYPE a gauge\na 1\n'
    assert parse_exposition(page, False).samples == [("a", (), 1.0, None)]


@pytest.mark.parametrize(
    ("page", "what"),
    [
        (b"a 1\r\nb 2\r\n", "line 1: invalid value '1\\r'"),  # Prometheus refuses CRLF pages too
        (b"a\n", "line 1: expected a value"),
        (b"a 1 2 3\n", "line 1: unexpected text after the timestamp"),
        (b"a 1_000\n", "invalid value"),
        ("a \u0663\n".encode(), "invalid value"),  # an Arabic-Indic digit: float() reads it, Go does not
        ("a 1\u00a0\n".encode(), "invalid value"),  # a no-break space: float() strips it, Go does not
        (b"a 0x10\n", "invalid value"),
        (b"a 1e999\n", "invalid value"),  # overflows to infinity: Go's ParseFloat refuses it
        (b"a -nan\n", "invalid value"),
        (b"ok 1\na{b=\"c\"\n", "line 2: unterminated label set"),
        (b'a{b="c} 1\n', "unterminated label value"),
        (b'a{b="c",,} 1\n', "expected a label name"),
        (b'a{,} 1\n', "expected a label name"),
        (b'a{b="1",b="2"} 1\n', "given twice"),
        (b'a{__name__="x"} 1\n', "given twice"),
        (b'a{1b="2"} 1\n', "expected a label name"),
        (b'a{b=c} 1\n', "expected a quoted value"),
        (b'a{b="1","} 1\n', "line 1"),
        (b"1a 1\n", "expected a metric name"),
        (b"a 1 1.5\n", "invalid timestamp"),
        (b"a 1 99999999999999999999\n", "out of range"),
        (b"# TYPE a gauges\n", "invalid metric type 'gauges'"),
        (b"# TYPE a counter \n", "invalid metric type 'counter '"),
        (b"# TYPE a\n", "invalid metric type ''"),
        (b"# TYPE a info\n", "invalid metric type 'info'"),  # OpenMetrics only
        (b"# HELP 1a x\n", "expected a metric name after # HELP"),
        (b"a{b=\"\xff\"} 1\n", "line 1: invalid UTF-8"),
    ],
)
def test_malformed_text_pages_name_the_line_and_the_fault(page: bytes, what: str) -> None:
    assert_refused(page, False, what)


def test_invalid_utf8_in_a_plain_comment_is_accepted_as_prometheus_does() -> None:
    assert parse_exposition(b"# caf\xe9\na 1\n", False).samples == [("a", (), 1.0, None)]
    with pytest.raises(ExpositionError, match="line 1: invalid UTF-8"):
        parse_exposition(b"# HELP a caf\xe9\na 1\n", False)


def test_openmetrics_page_with_eof_timestamps_in_seconds_exemplars_and_created() -> None:
    page = (
        b"# HELP foo A counter.\n"
        b"# TYPE foo counter\n"
        b"# UNIT foo_seconds seconds\n"
        b'foo_total{a="x"} 17 1520879607.789 # {trace_id="oHg5SJYRHA0"} 9.8 1520879607.789\n'
        b'foo_total{a="y"} 3 # {trace_id="KOO5S4vxi0o"} 0.67\n'
        b"foo_created 1520430000.123\n"
        b"bar 1.5 1520879607\n"
        b"# EOF\n"
    )
    got = parse_exposition(page, True)
    assert got.samples == [
        ("foo_total", (("a", "x"),), 17.0, 1520879607789),
        ("foo_total", (("a", "y"),), 3.0, None),
        ("foo_created", (), 1520430000.123, None),
        ("bar", (), 1.5, 1520879607000),
    ]
    assert got.types == {"foo": "counter"}
    assert kind_of("foo_total", got.types) == kind_of("foo_created", got.types) == "counter"
    assert kind_of("bar", got.types) == "untyped"
    assert parse_exposition(page.rstrip(b"\n"), True).samples == got.samples  # `# EOF` without a line end


@pytest.mark.parametrize(
    ("page", "what"),
    [
        (b"a 1\n", "does not end with # EOF"),
        (b"", "does not end with # EOF"),
        (b"a 1\n# EOF\n\n", "line 3: data after # EOF"),
        (b"a 1\n# EOF\nb 2\n# EOF\n", "line 2: data after # EOF"),
        (b"a 1\r\n# EOF\r\n", "does not end with # EOF"),
        (b"a 1\r\n# EOF\n", "line 1: invalid value"),
        (b"a 1\n\n# EOF\n", "line 2: a blank line"),
        (b"# a comment\n# EOF\n", "line 1: expected # HELP, # TYPE, # UNIT or # EOF"),
        (b"a  1\n# EOF\n", "expected a value"),
        (b"a 1 \n# EOF\n", "invalid timestamp"),
        (b'a{b="1" } 1\n# EOF\n', "expected ',' or '}'"),
        (b'a{b="1"c="2"} 1\n# EOF\n', "expected ',' or '}'"),
        (b"a 1 NaN\n# EOF\n", "invalid timestamp"),
        (b"a 1 # {x=\"1\"}\n# EOF\n", "expected a space and a value after the exemplar"),
        (b"a 1 # x\n# EOF\n", "invalid timestamp"),
        (b"# TYPE a untyped\n# EOF\n", "invalid metric type 'untyped'"),
        (b"# HELP a\n# EOF\n", "expected a space and text"),
        (b"# UNIT a_bytes seconds\n# EOF\n", "not a suffix"),
        (b"a 1\n# EOF \n", "does not end with # EOF"),
    ],
)
def test_malformed_openmetrics_pages(page: bytes, what: str) -> None:
    assert_refused(page, True, what)


def test_text_pages_may_end_without_eof_and_may_be_empty() -> None:
    assert parse_exposition(b"", False).samples == []
    assert parse_exposition(b"# only a comment\n", False).samples == []


def test_the_node_exporter_page_reads_as_prometheus_client_reads_it() -> None:
    data = NODE_EXPORTER.read_bytes()
    page = parse_exposition(data, False)
    assert len(page.samples) == 1490
    assert same(flat(data), reference(data))
    assert ("node_cpu_seconds_total", (("cpu", "47"), ("mode", "idle"))) in {s[:2] for s in page.samples}
    assert kind_of("node_cpu_seconds_total", page.types) == "counter"
    assert kind_of("go_gc_duration_seconds_sum", page.types) == "summary"


def test_a_second_parse_of_a_page_from_the_caches_gives_the_same_samples() -> None:
    data = NODE_EXPORTER.read_bytes()
    exposition._blocks.clear()
    exposition._shapes.clear()
    exposition._valid_names.clear()
    cold = parse_exposition(data, False).samples
    assert parse_exposition(data, False).samples == cold


def test_keys_name_series_and_a_known_series_is_read_for_its_value_only() -> None:
    data = NODE_EXPORTER.read_bytes()
    page = parse_exposition(data, False)
    assert len(page.keys) == len(page.samples) == 1490
    series_of = dict(zip(page.keys, (s[:2] for s in page.samples), strict=True))
    assert len(series_of) == len({s[:2] for s in page.samples}) == 1490  # one key per series
    assert page.keys[page.samples.index(("node_load1", (), 0.25, None))] == "node_load1"  # as written
    known = set(page.keys[:1000])
    again = parse_exposition(data, False, known)
    assert again.keys == page.keys
    assert again.samples[:1000] == [("", (), v, ts) for _, _, v, ts in page.samples[:1000]]
    assert again.samples[1000:] == page.samples[1000:]
    assert again.types == page.types


@pytest.mark.parametrize("value", ["1_0", "0x10", "\u0661", "infinit", "nan1", "1e999", "- 1", "1 x", "1}"])
@pytest.mark.parametrize("series", ["up", 'up{job="a b"}'])
def test_a_known_series_with_a_bad_value_is_refused_as_an_unknown_one(series: str, value: str) -> None:
    data = f"{series} 1\n{series} {value}\n".encode()
    known = {series: ("up", ())}
    assert _keyed(data, False, {}) == _keyed(data, False, known)
    assert isinstance(_keyed(data, False, known), str)


def _keyed(data: bytes, om: bool, known: dict[str, tuple]) -> list | str:
    """The page's samples read with ``known`` series (name and labels filled back in), or the error."""
    try:
        page = parse_exposition(data, om, known)
    except ExpositionError as exc:
        return str(exc)
    return [(*known[key], v, ts) if not name else (name, labels, v, ts)
            for key, (name, labels, v, ts) in zip(page.keys, page.samples, strict=True)]


class _Timestamped:
    """A custom collector: samples with timestamps (prometheus_client's own metrics have none)."""

    def collect(self) -> list:
        g = GaugeMetricFamily("stamped", "Has timestamps.", labels=["k"])
        g.add_metric(["a"], 1.5, timestamp=1700000000.25)
        g.add_metric(["b"], math.nan, timestamp=1700000001)
        return [g]


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    c = Counter("requests", "Requests with \\ and\nnewline in help.", ["path", "code"], registry=registry)
    c.labels('/a\\b"c\nd', "200").inc(3)
    c.labels("/", "500").inc(exemplar={"trace_id": "abc123"})
    g = Gauge("temperature", "A gauge.", ["room"], registry=registry)
    g.labels("kitchen").set(21.5)
    g.labels("cellar").set(-math.inf)
    h = Histogram("latency_seconds", "A histogram.", ["op"], buckets=(0.1, 1, 10), registry=registry)
    for v in (0.05, 0.5, 5, 50):
        h.labels("read").observe(v)
    h.labels("write").observe(0.2, exemplar={"trace_id": "xyz"})
    s = Summary("size_bytes", "A summary.", registry=registry)
    s.observe(1024)
    Info("build", "Build info.", registry=registry).info({"version": "1.2.3", "commit": "abc"})
    registry.register(_Timestamped())
    return registry


def test_prometheus_client_text_page_reads_the_same() -> None:
    data = text_page(_registry())
    assert same(flat(data), reference(data))
    page = parse_exposition(data, False)
    assert ("requests_total", (("code", "200"), ("path", '/a\\b"c\nd')), 3.0, None) in page.samples
    assert ("stamped", (("k", "a"),), 1.5, 1700000000250) in page.samples
    assert kind_of("latency_seconds_bucket", page.types) == "histogram"


def test_prometheus_client_openmetrics_page_reads_the_same() -> None:
    data = om_page(_registry())
    assert b" # {" in data  # the page has exemplars
    assert same(flat(data, om=True), reference(data, om=True))
    page = parse_exposition(data, True)
    assert ("stamped", (("k", "a"),), 1.5, 1700000000250) in page.samples
    assert kind_of("requests_total", page.types) == kind_of("requests_created", page.types) == "counter"
    assert kind_of("latency_seconds_created", page.types) == "histogram"
    assert kind_of("build_info", page.types) == "info"


# --- fuzzing ------------------------------------------------------------------------------------------

_SEEDS = [DOCS_EXAMPLE, text_page(_registry()), om_page(_registry())]


@st.composite
def _mutated_page(draw: st.DrawFn) -> tuple[bytes, bool]:
    seed = draw(st.sampled_from(range(len(_SEEDS))))
    data = bytearray(_SEEDS[seed])
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(st.sampled_from([b" ", b"\t", b"\r", b"\n", b"{", b"}", b'"', b"\\", b",", b"=", b"#", b"\xff", b"\x00",
                                      b"# EOF\n", b" # {", b"NaN", b"1e999", b"_", b"\xc2\xa0", b"\xd9\xa3", b"a"]))
        if op == "insert":
            data[at:at] = chunk
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at : at + len(chunk)] = chunk
    return bytes(data), seed == 2 or draw(st.booleans())


def _parses_or_refuses(data: bytes, om: bool) -> None:
    try:
        page = parse_exposition(data, om)
    except ExpositionError as exc:
        assert str(exc).startswith("line ")
        return
    for name, labels, value, ts in page.samples:
        assert isinstance(name, str) and name
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels)
        assert isinstance(value, float)
        assert ts is None or isinstance(ts, int)


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_parse_or_raise_only_exposition_error(data: bytes, om: bool) -> None:
    _parses_or_refuses(data, om)


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_page())
def test_mutated_valid_pages_parse_or_raise_only_exposition_error(case: tuple[bytes, bool]) -> None:
    data, om = case
    _parses_or_refuses(data, om)
    # Whatever the parser accepts from a text page, prometheus_client accepts with the same samples when
    # both read it (the reference is more lenient in places, so only this direction is checked).
    if not om:
        try:
            ours = flat(data)
        except ExpositionError:
            return
        try:
            theirs = reference(data)
        except Exception:
            return
        assert same(ours, theirs)


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_page())
def test_a_page_read_with_known_series_reads_as_without(case: tuple[bytes, bool]) -> None:
    """Known series (those of the valid pages, read as text and as OpenMetrics) change nothing a mutated page
    reads as: the same samples, or the same error."""
    data, om = case
    known = {}
    for seed in _SEEDS:
        for seed_om in (False, True):
            with contextlib.suppress(ExpositionError):
                page = parse_exposition(seed, seed_om)
                known.update(zip(page.keys, (s[:2] for s in page.samples), strict=True))
    plain, keyed = _keyed(data, om, {}), _keyed(data, om, known)
    assert plain == keyed if isinstance(plain, str) else same(plain, keyed)  # type: ignore[arg-type]


def test_a_huge_line_and_many_escapes_are_linear() -> None:
    value = "\\\\" * 200_000 + "x"
    page = f'a{{b="{value}",c="d"}} 1\n'.encode()
    [(_, labels, _, _)] = parse_exposition(page, False).samples
    assert labels == (("b", "\\" * 200_000 + "x"), ("c", "d"))
    with pytest.raises(ExpositionError, match="unterminated label value"):
        parse_exposition(b'a{b="' + b"\\\\" * 200_000 + b"\n", False)
