"""osmem-server (PyPI), an OpenSearch emulator written by others, started on a free loopback port."""

from __future__ import annotations

import json
import selectors
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import osmem_server


@contextmanager
def running_osmem() -> Iterator[str]:
    """Yield the URL of a fresh osmem-server; it is stopped on exit."""
    proc = subprocess.Popen(
        [osmem_server.resolve_binary(), "-addr", "127.0.0.1:0", "-no-stdin-watch", "-no-ja"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        yield _ready_url(proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def _ready_url(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=15):
            raise TimeoutError("osmem-server did not report its address")
    return str(json.loads(proc.stdout.readline())["url"])
