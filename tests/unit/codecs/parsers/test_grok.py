"""Grok against the Logstash docs' own examples (grok filter plugin reference), plus the library and errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.codecs.parsers.grok import GrokParser, non_capturing
from agent.codecs.parsers.grok_patterns import PATTERNS

POSTFIX = ("Jan  1 06:25:43 mailserver14 postfix/cleanup[21403]: BEF25A72965: "
           "message-id=<20130101142543.5828399CCAF@mailserver14.example.com>")
POSTFIX_FIELDS = {"timestamp": "Jan  1 06:25:43", "logsource": "mailserver14", "program": "postfix/cleanup",
                  "pid": "21403", "queue_id": "BEF25A72965",
                  "syslog_message": "message-id=<20130101142543.5828399CCAF@mailserver14.example.com>"}


def test_the_docs_http_request_example() -> None:
    # "Grok Basics": 55.3.244.1 GET /index.html 15824 0.043
    grok = GrokParser("%{IP:client} %{WORD:method} %{URIPATHPARAM:request} %{NUMBER:bytes} %{NUMBER:duration}")
    assert grok.parse("55.3.244.1 GET /index.html 15824 0.043") == {
        "client": "55.3.244.1", "method": "GET", "request": "/index.html", "bytes": "15824", "duration": "0.043"}


def test_the_docs_custom_pattern_examples_inline_and_from_patterns() -> None:
    # "Custom Patterns": an inline named capture, and POSTFIX_QUEUEID from a patterns file.
    inline = GrokParser(r"%{SYSLOGBASE} (?<queue_id>[0-9A-F]{10,11}): %{GREEDYDATA:syslog_message}")
    assert inline.parse(POSTFIX) == POSTFIX_FIELDS
    named = GrokParser("%{SYSLOGBASE} %{POSTFIX_QUEUEID:queue_id}: %{GREEDYDATA:syslog_message}",
                       {"POSTFIX_QUEUEID": "[0-9A-F]{10,11}"})
    assert named.parse(POSTFIX) == POSTFIX_FIELDS


def test_the_docs_semantic_types_convert() -> None:
    # "%{NUMBER:num:int}" converts the capture to an integer; float likewise.
    grok = GrokParser("%{NUMBER:num:int} %{NUMBER:ratio:float} %{WORD:word:int}")
    assert grok.parse("3 3.44 abc") == {"num": 3, "ratio": 3.44, "word": "abc"}  # what does not convert stays text


def test_combined_and_common_apache_logs() -> None:
    line = ('127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
            '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"')
    common = {"clientip": "127.0.0.1", "ident": "-", "auth": "frank", "timestamp": "10/Oct/2000:13:55:36 -0700",
              "verb": "GET", "request": "/apache_pb.gif", "httpversion": "1.0", "response": "200", "bytes": "2326"}
    assert GrokParser("%{COMBINEDAPACHELOG}").parse(line) == {
        **common, "referrer": '"http://www.example.com/start.html"', "agent": '"Mozilla/4.08 [en] (Win98; I ;Nav)"'}
    assert GrokParser("^%{COMMONAPACHELOG}$").parse(line.rsplit(" \"http", 1)[0]) == common
    assert GrokParser("%{HTTPDATE:t}").parse("[10/Oct/2000:13:55:36 -0700]") == {"t": "10/Oct/2000:13:55:36 -0700"}


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    ("%{TIMESTAMP_ISO8601:t}", "at 2024-05-01T12:00:00.123+02:00 ok", "2024-05-01T12:00:00.123+02:00"),
    ("%{TIMESTAMP_ISO8601:t}", "2024-05-01 12:00:00,5Z", "2024-05-01 12:00:00,5Z"),
    ("%{LOGLEVEL:t}", "[WARNING] disk", "WARNING"),
    ("%{IP:t}", "from 2001:db8::1 port", "2001:db8::1"),
    ("%{IP:t} ", "from 192.168.1.255 port", "192.168.1.255"),
    ("%{HOSTNAME:t}", "web-1.example.com", "web-1.example.com"),
    ("%{NUMBER:t}", "took -12.5 ms", "-12.5"),
    ("%{WORD:t} ", "hello world", "hello"),
    ("a%{DATA:t}b", "aXbYb", "X"),
    ("a%{GREEDYDATA:t}b", "aXbYb", "XbY"),
])
def test_library_patterns_match_what_logstash_matches(pattern: str, text: str, expected: str) -> None:
    assert GrokParser(pattern).parse(text) == {"t": expected}


def test_every_library_pattern_compiles_for_re2() -> None:
    for name in PATTERNS:
        GrokParser(f"%{{{name}:x}}")


def test_unnamed_groups_capture_nothing_and_a_field_in_two_branches_takes_the_one_that_matched() -> None:
    assert non_capturing(r"(a)\(b[(]c[[:alpha:](])(?P<n>d)") == r"(?:a)\(b[(]c[[:alpha:](])(?P<n>d)"
    grok = GrokParser("(?:%{INT:n:int}|%{WORD:w})")
    assert grok.parse("42") == {"n": 42}
    assert grok.parse("abc") == {"w": "abc"}
    assert grok.parse("!!") is None


@pytest.mark.parametrize(("pattern", "patterns", "message"), [
    ("%{NOPE:x}", {}, "not defined"),
    ("%{A:x}", {"A": "%{B}", "B": "%{A}"}, "refers to itself"),
    ("%{WORD:x:date}", {}, "only to int or float"),
    (r"%{WORD:x} (?=y)", {}, "lookahead"),
    (r"(?<a>x)\1", {}, "backreference"),
])
def test_what_cannot_compile_is_a_clear_error(pattern: str, patterns: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GrokParser(pattern, patterns)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_line_gives_fields_or_none_and_never_raises(line: str) -> None:
    grok = GrokParser("%{SYSLOGBASE} %{GREEDYDATA:msg}|%{COMBINEDAPACHELOG}|%{IP:ip} %{NUMBER:n:int}")
    result = grok.parse(line)
    assert result is None or isinstance(result, dict)
    assert grok.parse_bytes(line.encode("utf-8", "surrogatepass")) == result


def test_a_backtracking_bomb_finishes_at_once() -> None:
    grok = GrokParser("^%{DATA:a}%{DATA:b}%{DATA:c}x$")
    assert grok.parse("a" * 50_000) is None  # exponential for a backtracking engine; linear on RE2


def test_a_field_reference_nests_as_in_logstash_and_a_dotted_name_is_one_key() -> None:
    # Logstash's ECS patterns name fields [source][address]; a dotted name stays one key there.
    grok = GrokParser("%{IPORHOST:[source][address]} %{WORD:[http][request][method]} %{INT:[status]:int} "
                      "%{WORD:url.path}")
    fields = {"source": {"address": "10.0.0.1"}, "http": {"request": {"method": "GET"}}, "status": 200,
              "url.path": "index"}
    assert grok.parse("10.0.0.1 GET 200 index") == fields
    assert grok.parse_bytes(b"10.0.0.1 GET 200 index") == fields
    assert grok.parse("no match") is None
    assert GrokParser("%{WORD:a} %{WORD:[a][b]}").parse("x y") == {"a": "x", "[a][b]": "y"}  # blocked: kept flat
