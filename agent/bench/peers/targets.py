"""The ``targets`` role: many simulated exporters in one process, each on its own port of 127.0.0.1.

Each target serves ``GET /metrics``: a text 0.0.4 page of ``series`` series (20 families, counters and
gauges, two labels each) rendered from a template made once, with every value different at every scrape
(the target's scrape count times ``series`` plus the series' index), so nothing downstream can reuse the
last page as it is. It counts the scrapes it answered per target. A line on stdin asks for the counts;
``freeze`` first stops answering: a request that arrives afterwards is held, never answered, so the counts
are final and every answered scrape can be looked for at the receiver. End of stdin: final counts, exit.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

from agent.bench.peers.elasticsearch import _HttpConnection
from agent.bench.peers.lines import HOST, _emit
from agent.bench.peers.remote_write import watch_stdin

FAMILIES = 20
CONTENT_TYPE = b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"


def page_template(series: int) -> bytes:
    """A page of ``series`` samples with a ``%d`` for each value, in series order."""
    per_family = -(-series // FAMILIES)
    lines: list[str] = []
    for index in range(series):
        family, k = divmod(index, per_family)
        counter = family % 2 == 0
        name = f"bench_requests_{family:02d}_total" if counter else f"bench_queue_depth_{family:02d}"
        if k == 0:
            kind = "counter" if counter else "gauge"
            lines += [f"# HELP {name} A simulated {kind}.", f"# TYPE {name} {kind}"]
        lines.append(f'{name}{{code="{200 + k % 5}",handler="/api/v1/items/{k}"}} %d')
    return ("\n".join(lines) + "\n").encode()


def raise_open_files(needed: int) -> int:
    """Raise this process's soft limit of open files to ``needed`` if the hard limit allows; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


class Targets:
    """The state of the ``targets`` role: the page template and the scrapes answered per target."""

    def __init__(self, targets: int, series: int) -> None:
        self.series = series
        self.template = page_template(series)
        self.scrapes = [0] * targets
        self.bytes = 0
        self.frozen = False

    def page(self, target: int) -> bytes:
        """The next page of ``target``, counted as answered."""
        n = self.scrapes[target]
        self.scrapes[target] = n + 1
        start = n * self.series
        body = self.template % tuple(range(start, start + self.series))
        self.bytes += len(body)
        return body

    def handler(self, target: int) -> Any:
        def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, bytes] | None:
            if self.frozen:
                return None
            if method != "GET" or path.split("?", 1)[0] != "/metrics":
                return 404, b"not found\n", b""
            return 200, self.page(target), b""
        return handle

    def counts(self) -> dict[str, Any]:
        return {"scrapes": sum(self.scrapes), "min_scrapes": min(self.scrapes), "max_scrapes": max(self.scrapes),
                "bytes": self.bytes, "frozen": self.frozen}


def targets(count: int, series: int) -> None:
    """The role: see the module docstring (uvloop when installed)."""
    needed = count * 2 + 64  # a listener and a connection per target
    if raise_open_files(needed) < needed:
        _emit({"error": f"the open files limit is below {needed}: raise ulimit -n"})
        raise SystemExit(1)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(count, series))
    else:
        uvloop.run(_serve(count, series))


async def _serve(count: int, series: int) -> None:
    state = Targets(count, series)
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(lambda i=i: _HttpConnection(state.handler(i), CONTENT_TYPE), HOST, 0)  # type: ignore[misc]
               for i in range(count)]
    _emit({"ports": [server.sockets[0].getsockname()[1] for server in servers]})
    cpu0 = time.process_time()

    def command(line: bytes, **flags: bool) -> None:
        if line == b"freeze":
            state.frozen = True
        _emit({**state.counts(), "cpu_s": round(time.process_time() - cpu0, 3), **flags})

    try:
        await watch_stdin(command)
    finally:
        for server in servers:
            server.close()
    command(b"", final=True)
