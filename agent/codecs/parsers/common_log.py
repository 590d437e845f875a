"""Codecs ``apache`` and ``nginx``: access logs in the common and combined formats (both servers' defaults).

``127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`` (common), and the
same followed by ``"referrer" "user agent"`` (combined). Fields: ``host``, ``ident``, ``user``, ``timestamp``
(as written; ``time_format: "%d/%b/%Y:%H:%M:%S %z"`` reads it), ``request`` and, when it has its three parts,
``method``, ``path``, ``protocol``; ``status`` and ``size`` as integers (a size of more than 18 digits makes
the line no access log line); ``referrer`` and ``agent``. A ``-`` leaves its field out. Text after the
combined fields (nginx's extra variables) is ignored.
"""

from __future__ import annotations

import re
from typing import Any

from agent.codecs.parsers import TextParser, unescape

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_ACCESS = re.compile(  # a size past 18 digits is refused, not cut: int() raises on more than 4300
    rf"(\S+) (\S+) (\S+) \[([^\]]*)\] {_QUOTED} (\d{{3}}|-) (\d{{1,18}}|-)(?!\d)"
    rf"(?: {_QUOTED} {_QUOTED})?", re.DOTALL)


class AccessLogParser(TextParser):
    """Fields of a common or combined access log line."""

    error = "not an access log line (common or combined)"

    def parse(self, text: str) -> dict[str, Any] | None:
        match = _ACCESS.match(text)
        if match is None:
            return None
        host, ident, user, timestamp, request, status, size, referrer, agent = match.groups()
        out: dict[str, Any] = {"host": host}
        if ident != "-":
            out["ident"] = ident
        if user != "-":
            out["user"] = user
        out["timestamp"] = timestamp
        request = unescape(request)
        out["request"] = request
        parts = request.split(" ")
        if len(parts) == 3:
            out["method"], out["path"], out["protocol"] = parts
        if status != "-":
            out["status"] = int(status)
        if size != "-":
            out["size"] = int(size)
        if referrer is not None and referrer != "-":
            out["referrer"] = unescape(referrer)
        if agent is not None and agent != "-":
            out["agent"] = unescape(agent)
        return out
