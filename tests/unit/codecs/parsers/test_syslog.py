"""Syslog lines from the RFCs' own examples."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.codecs.parsers.syslog import SyslogParser

parse = SyslogParser().parse


def test_rfc5424_examples() -> None:
    # RFC 5424 section 6.5, examples 1 and 3.
    assert parse("<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
                 "\ufeff'su root' failed for lonvick on /dev/pts/8") == {
        "facility": "auth", "severity": "crit", "version": 1, "timestamp": "2003-10-11T22:14:15.003Z",
        "hostname": "mymachine.example.com", "appname": "su", "msgid": "ID47",
        "message": "'su root' failed for lonvick on /dev/pts/8"}
    assert parse('<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 '
                 '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
                 '[examplePriority@32473 class="high \\"x\\" \\]"] An application event') == {
        "facility": "local4", "severity": "notice", "version": 1, "timestamp": "2003-10-11T22:14:15.003Z",
        "hostname": "mymachine.example.com", "appname": "evntslog", "msgid": "ID47",
        "structured_data": {"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
                            "examplePriority@32473": {"class": 'high "x" ]'}},
        "message": "An application event"}


def test_rfc3164_examples_with_and_without_pri_and_tag() -> None:
    # RFC 3164 section 5.4, example 1; and a line as rsyslog writes it to /var/log/syslog.
    assert parse("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8") == {
        "facility": "auth", "severity": "crit", "timestamp": "Oct 11 22:14:15", "hostname": "mymachine",
        "appname": "su", "message": "'su root' failed for lonvick on /dev/pts/8"}
    assert parse("Jan  1 06:25:43 web1 sshd[2187]: Accepted publickey for ops") == {
        "timestamp": "Jan  1 06:25:43", "hostname": "web1", "appname": "sshd", "procid": "2187",
        "message": "Accepted publickey for ops"}
    assert parse("Jan  1 06:25:43 web1 kernel message without a tag")["message"] == "kernel message without a tag"


def test_not_syslog() -> None:
    assert parse("hello") is None
    assert parse("<999>1 2003-10-11T22:14:15Z h a p m - x") is None
    assert parse("<34>1 2003-10-11T22:14:15Z h a p m [broken") is None


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), st.text(max_size=200).map(lambda s: "<13>1 - - - - - [a " + s),
                 st.text(max_size=200).map(lambda s: "<13>Jan  1 00:00:00 h " + s)))
def test_any_line_gives_fields_or_none(line: str) -> None:
    result = parse(line)
    assert result is None or isinstance(result.get("message"), str)


def test_open_structured_data_stays_linear() -> None:
    assert parse('<13>1 - - - - - [a b="' + '\\"' * 50_000) is None
