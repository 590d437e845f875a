"""Codec ``syslog``: RFC 5424 and RFC 3164 (BSD) lines, told apart by the version after ``<PRI>``.

Fields: ``facility`` and ``severity`` (by name, from ``<PRI>``), ``timestamp`` (as written; ``time_key`` and
``time_format`` turn it into ``@timestamp``), ``hostname``, ``appname``, ``procid``, ``msgid`` (5424),
``version`` (5424), ``structured_data`` (5424: ``{sd_id: {param: value}}``) and ``message``. A 5424 ``-`` (no
value) leaves its field out. A 3164 line may lack ``<PRI>`` (as files written by syslog daemons do) and its
``TAG[pid]:``. The regexes are fixed and read a line in linear time.
"""

from __future__ import annotations

import re
from typing import Any

from agent.codecs.parsers import TextParser, unescape

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3",
              "local4", "local5", "local6", "local7")
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

_RFC5424 = re.compile(r"<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ?(.*)", re.DOTALL)
_SD_ELEMENT = re.compile(r'\[([^\s\]"=]+)((?: +[^\s\]"=]+="(?:[^"\\]|\\.)*")*) *\]', re.DOTALL)
_SD_PARAM = re.compile(r'([^\s\]"=]+)="((?:[^"\\]|\\.)*)"', re.DOTALL)
_RFC3164 = re.compile(
    r"(?:<(\d{1,3})>)?([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S+) (?:([^\s:\[]+)(?:\[([^\]\s]*)\])?: ?)?(.*)",
    re.DOTALL)


class SyslogParser(TextParser):
    """Fields of an RFC 5424 or RFC 3164 syslog line."""

    error = "not syslog (RFC 5424 or RFC 3164)"

    def parse(self, text: str) -> dict[str, Any] | None:
        match = _RFC5424.match(text)
        if match is not None:
            return _rfc5424(match)
        match = _RFC3164.match(text)
        if match is None:
            return None
        pri, timestamp, hostname, appname, procid, message = match.groups()
        out: dict[str, Any] = {}
        if pri is not None and not _priority(out, pri):
            return None
        out["timestamp"] = timestamp
        out["hostname"] = hostname
        if appname is not None:
            out["appname"] = appname
        if procid:
            out["procid"] = procid
        out["message"] = message
        return out


def _rfc5424(match: re.Match[str]) -> dict[str, Any] | None:
    pri, version, timestamp, hostname, appname, procid, msgid, rest = match.groups()
    out: dict[str, Any] = {}
    if not _priority(out, pri):
        return None
    out["version"] = int(version)
    for name, value in (("timestamp", timestamp), ("hostname", hostname), ("appname", appname),
                        ("procid", procid), ("msgid", msgid)):
        if value != "-":
            out[name] = value
    if rest.startswith("-"):
        rest = rest[2:] if rest.startswith("- ") else rest[1:]
    elif rest.startswith("["):
        data: dict[str, dict[str, str]] = {}
        at = 0
        while (element := _SD_ELEMENT.match(rest, at)) is not None:
            data[element.group(1)] = {k: unescape(v) for k, v in _SD_PARAM.findall(element.group(2))}
            at = element.end()
        if not data:
            return None
        out["structured_data"] = data
        rest = rest[at + 1:] if rest.startswith(" ", at) else rest[at:]
    else:
        return None
    out["message"] = rest.removeprefix("\ufeff")  # a UTF-8 message starts with a BOM
    return out


def _priority(out: dict[str, Any], pri: str) -> bool:
    """Sets facility and severity from ``<PRI>``; False if it is out of range (above 191)."""
    value = int(pri)
    if value > 191:
        return False
    out["facility"] = FACILITIES[value >> 3]
    out["severity"] = SEVERITIES[value & 7]
    return True
