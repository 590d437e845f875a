"""The real Prometheus and node exporter (Debian's `prometheus` and `prometheus-node-exporter`), started on
free loopback ports for a test and stopped after it (/work/shared/PEERS.md §2).

`make test` installs the packages when they are missing; a test that cannot find the binaries fails, it
does not skip: in CI they are always there.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.bench.versus.sides import stop_process

READY_TIMEOUT = 15.0  # seconds for a peer to answer its readiness URL
ATTEMPTS = 3  # another process may take the free port between our probe and the peer's bind


def binary(*names: str) -> str:
    """The path of the first of ``names`` installed (``/usr/bin`` or PATH); fails the test when none is."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin")
        if found:
            return found
    pytest.fail(f"{names[0]} is not installed: `make test` installs it (apt-get install prometheus "
                "prometheus-node-exporter)", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


@dataclass(frozen=True, slots=True)
class Prometheus:
    """A running Prometheus: its base URL, its remote-write receiver, and its query API."""

    url: str

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result vector of an instant query (``/api/v1/query``): ``[{"metric": {...}, "value": [t, "v"]}]``."""
        body = json.loads(http_get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_for(self, expr: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Query until the result is not empty (bounded by ``timeout``); the last result either way."""
        deadline = time.monotonic() + timeout
        while not (result := self.query(expr)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return result


class _Started(Exception):
    """The peer exited before it was ready (most likely its port was taken meanwhile)."""


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _Started(log.read_text(errors="replace")[-2000:])
        try:
            http_get(url, timeout=1.0)
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {READY_TIMEOUT:g}s; log:\n{log.read_text(errors='replace')[-2000:]}")


@contextmanager
def _running(argv: list[str], ready_path: str, workdir: Path, name: str) -> Iterator[str]:
    """Start ``argv`` (``{address}`` filled in with a free loopback address), yield its base URL once
    ``ready_path`` answers, and stop it (TERM, then KILL) on exit."""
    last = ""
    for attempt in range(ATTEMPTS):
        address = f"127.0.0.1:{free_port()}"
        log = workdir / f"{name}.{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([arg.format(address=address) for arg in argv], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_ready(proc, f"http://{address}{ready_path}", log)
        except _Started as exc:
            last = str(exc)
            stop_process(proc)
            continue
        except BaseException:
            stop_process(proc)
            raise
        try:
            yield f"http://{address}"
        finally:
            stop_process(proc)
        return
    raise RuntimeError(f"{name} did not start after {ATTEMPTS} attempts; last log:\n{last}")


@contextmanager
def running_node_exporter(workdir: Path) -> Iterator[str]:
    """A node exporter on a free loopback port; yields its base URL (the page is at ``/metrics``)."""
    exe = binary("prometheus-node-exporter", "node_exporter")
    with _running([exe, "--web.listen-address={address}"], "/metrics", workdir, "node-exporter") as url:
        yield url


@contextmanager
def running_prometheus(workdir: Path) -> Iterator[Prometheus]:
    """A Prometheus with the remote-write receiver on, its TSDB in ``workdir``, scraping nothing itself."""
    exe = binary("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs: []\n")
    argv = [exe, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'prom-data'}",
            "--web.listen-address={address}", "--web.enable-remote-write-receiver"]
    with _running(argv, "/-/ready", workdir, "prometheus") as url:
        yield Prometheus(url)
