"""The shared HTTP client: what it reads of an error body, and where large bodies are compressed."""

from __future__ import annotations

import gzip
import threading
from typing import Any

import pytest
from fakes.hostile import HUGE, HostilePeer

from agent.delivery import http
from agent.delivery.config import TlsConfig
from agent.delivery.http import ERROR_BODY_LIMIT, HttpClient, compress_async


async def test_a_10_mb_error_body_is_not_read_whole() -> None:
    async with HostilePeer("huge_error_body", times=1) as peer:
        client = HttpClient(TlsConfig(), None, {}, 5.0)
        try:
            response = await client.request("POST", f"{peer.url}/ingest", b'{"n": 1}\n')
            assert response.status == 500 and len(response.body) == ERROR_BODY_LIMIT < HUGE
            again = await client.request("POST", f"{peer.url}/ingest", b'{"n": 2}\n')  # the client still works
            assert again.status == 200
        finally:
            await client.close()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
async def test_large_bodies_are_compressed_off_the_event_loop(compression: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 8.11b: 5 MiB of gzip in the loop stalls every other component."""
    threads: list[int] = []
    original = http.compress

    def recording(body: bytes, how: str) -> Any:
        threads.append(threading.get_ident())
        return original(body, how)

    monkeypatch.setattr(http, "compress", recording)
    small, _ = await compress_async(b"x" * 1000, compression)
    large, headers = await compress_async(b"y" * (2 * 1024 * 1024), compression)
    loop_thread = threading.get_ident()
    assert threads[0] == loop_thread != threads[1]
    assert headers == {"Content-Encoding": compression}
    if compression == "gzip":
        assert gzip.decompress(large) == b"y" * (2 * 1024 * 1024) and gzip.decompress(small) == b"x" * 1000
