"""`agent tap` and `agent top`: small clients of a running agent's HTTP API."""

from __future__ import annotations

import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson

from agent.core.errors import EXIT_FAILURE, EXIT_OK

DEFAULT_API = "127.0.0.1:2020"
_EVERY_INTERFACE = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}


@dataclass(frozen=True, slots=True)
class Api:
    """Where a running agent's API is, and the bearer token it wants (if any)."""

    address: str = DEFAULT_API
    token: str | None = None

    @classmethod
    def of(cls, configs: list[str], address: str | None = None, token: str | None = None) -> Api:
        """From the agent's config files (``-c``); ``address`` and ``token`` given explicitly win."""
        if configs:
            from agent.config.pipeline import load_files

            api = load_files(configs).root.api
            host, _, port = api.address.rpartition(":")
            address = address or f"{_EVERY_INTERFACE.get(host, host)}:{port}"
            token = token or api.auth_token
        return cls(address or DEFAULT_API, token)

    def __str__(self) -> str:
        return self.address  # never the token

    def request(self, path: str) -> urllib.request.Request:
        url = f"http://{self.address}{path}" if "://" not in self.address else f"{self.address}{path}"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return urllib.request.Request(url, headers=headers)


def _refusal(exc: urllib.error.HTTPError) -> str:
    """The agent's own explanation of an error answer, else the HTTP reason."""
    try:
        return str(orjson.loads(exc.read()).get("error", exc.reason))
    except (orjson.JSONDecodeError, AttributeError, OSError):
        return f"HTTP {exc.code} {exc.reason}"


def tap(api: Api, component: str, limit: int, seconds: float) -> int:
    """Print sampled events of ``component`` as NDJSON until ``limit`` or ``seconds``."""
    request = api.request(f"/api/v1/tap/{component}?limit={limit}&seconds={seconds}")
    try:
        with urllib.request.urlopen(request, timeout=seconds + 5) as response:
            for line in response:
                sys.stdout.write(line.decode())
                sys.stdout.flush()
    except urllib.error.HTTPError as exc:
        print(f"error: {_refusal(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: cannot reach the agent API at {api}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def fetch_components(api: Api) -> list[dict[str, Any]]:
    with urllib.request.urlopen(api.request("/api/v1/components"), timeout=5) as response:
        return list(orjson.loads(response.read())["components"])


def rates(previous: dict[str, dict[str, Any]], current: list[dict[str, Any]], elapsed: float) -> list[dict[str, Any]]:
    """Per-component rows with events/s and bytes/s since ``previous``."""
    rows = []
    for c in current:
        before = previous.get(c["id"], c)
        row = dict(c)
        for key in ("received_events", "sent_events", "sent_bytes"):
            row[key + "_rate"] = max(0.0, (c[key] - before[key]) / elapsed) if elapsed > 0 else 0.0
        if "buffer" in c and "buffer" in before and elapsed > 0:  # share of the time its producers waited
            waited = c["buffer"]["blocked_seconds"] - before["buffer"]["blocked_seconds"]
            row["blocked_share"] = max(0.0, waited / elapsed)
        rows.append(row)
    return rows


def render_table(rows: list[dict[str, Any]], api: object) -> Any:
    from rich.table import Table

    table = Table(title=f"agent top - {api}", expand=True)
    for column in ("id", "kind", "type", "in ev/s", "out ev/s", "out MiB/s", "errors", "discarded", "buffer",
                   "blocked"):
        table.add_column(column, justify="left" if column in ("id", "kind", "type") else "right")
    for r in rows:
        buffer = r.get("buffer")
        fill = "-"
        if buffer:
            share = max(buffer["events"] / max(1, buffer["max_events"]), buffer["bytes"] / max(1, buffer["max_bytes"]))
            fill = f"{share:6.1%} ({buffer['events']} ev)"
        table.add_row(r["id"], r["kind"], r["type"], f"{r['received_events_rate']:,.0f}",
                      f"{r['sent_events_rate']:,.0f}", f"{r['sent_bytes_rate'] / 2**20:,.2f}",
                      str(r["errors"]), str(r["discarded_events"]), fill,
                      f"{r['blocked_share']:.0%}" if "blocked_share" in r else "-")
    return table


def top(api: Api, interval: float) -> int:
    """Redraw a per-component table every ``interval`` seconds until interrupted."""
    from rich.live import Live

    try:
        previous = {c["id"]: c for c in fetch_components(api)}
    except urllib.error.HTTPError as exc:
        print(f"error: {_refusal(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: cannot reach the agent API at {api}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    last = time.monotonic()
    # Ctrl-C sets a flag instead of raising KeyboardInterrupt anywhere: raised inside rich's refresh lock,
    # it left the lock held and the exit waiting on it for ever
    # (the handler stays: top is the whole process, and a second Ctrl-C while it exits must not kill it)
    interrupted = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    with Live(render_table(rates(previous, list(previous.values()), 0), api), refresh_per_second=4) as live:
        while not interrupted.wait(interval):
            try:
                current = fetch_components(api)
            except (urllib.error.URLError, OSError):
                continue
            now = time.monotonic()
            live.update(render_table(rates(previous, current, now - last), api))
            previous, last = {c["id"]: c for c in current}, now
    return EXIT_OK
