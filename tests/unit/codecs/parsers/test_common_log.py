from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.codecs.parsers.common_log import AccessLogParser

parse = AccessLogParser().parse
COMMON = '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'


def test_common_and_combined_from_the_apache_docs() -> None:
    # mod_log_config's examples of the Common and Combined Log Formats.
    fields = {"host": "127.0.0.1", "user": "frank", "timestamp": "10/Oct/2000:13:55:36 -0700",
              "request": "GET /apache_pb.gif HTTP/1.0", "method": "GET", "path": "/apache_pb.gif",
              "protocol": "HTTP/1.0", "status": 200, "size": 2326}
    assert parse(COMMON) == fields
    assert parse(COMMON + ' "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"') == {
        **fields, "referrer": "http://www.example.com/start.html", "agent": "Mozilla/4.08 [en] (Win98; I ;Nav)"}


def test_nginx_combined_with_dashes_escapes_and_a_bad_request() -> None:
    line = ('10.0.0.1 - - [01/May/2024:12:00:00 +0000] "\\x16\\x03\\x01" 400 - "-" "curl/8.0 \\"x\\""'
            ' "extra"')
    assert parse(line) == {"host": "10.0.0.1", "timestamp": "01/May/2024:12:00:00 +0000",
                           "request": "\\x16\\x03\\x01", "status": 400, "agent": 'curl/8.0 "x"'}


def test_not_an_access_log() -> None:
    assert parse("GET / 200") is None


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.text(max_size=200).map(lambda s: COMMON + s),
                 st.text(max_size=200).map(lambda s: f'a b c [d] "{s}" 200 1')))
def test_any_line_gives_fields_or_none(line: str) -> None:
    result = parse(line)
    assert result is None or isinstance(result["host"], str)


def test_a_size_too_long_to_be_a_number_is_not_an_access_log_and_does_not_raise() -> None:
    # int() refuses text of more than 4300 digits (ValueError): one such line crashed the parse stage.
    assert parse(COMMON.replace("2326", "9" * 5000)) is None
    assert parse(COMMON.replace("2326", "1" * 19)) is None  # past any byte count; not cut to 18 digits
    assert parse(COMMON.replace("2326", "9" * 18))["size"] == 10**18 - 1  # type: ignore[index]
