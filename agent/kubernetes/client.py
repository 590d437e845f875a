"""A small asyncio client of the Kubernetes API: JSON GETs and watch streams, nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import orjson

from agent.kubernetes.config import ClusterConfig


class ApiError(Exception):
    """The API server refused a request (``status``, its ``Status`` reason) or answered something unreadable."""

    def __init__(self, status: int, reason: str = "", message: str = "", retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}".strip(": "))
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class Gone(ApiError):
    """410: the resourceVersion asked for is older than the server keeps: list again."""


class KubeClient:
    """GETs against one API server with its credentials (read afresh for each request: tokens rotate)."""

    def __init__(self, config: ClusterConfig, *, request_timeout: float = 60.0) -> None:
        self.config = config
        self.request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context if self.config.ssl_context else True)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                                  headers={"Accept": "application/json",
                                                           "User-Agent": "agent (kubernetes)"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _request(self, path: str, params: Mapping[str, str], timeout: aiohttp.ClientTimeout) -> Any:
        kwargs: dict[str, Any] = {"params": params, "headers": self.config.headers(), "timeout": timeout}
        if self.config.server_name:
            kwargs["server_hostname"] = self.config.server_name
        return self._client().get(self.config.server + path, **kwargs)

    async def get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """One JSON object (a list answer, a single object)."""
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with self._request(path, params, timeout) as response:
            body = await response.read()
            if response.status != 200:
                raise _api_error(response.status, body, response.headers.get("Retry-After"))
            return _decode(body)

    async def watch(self, path: str, params: Mapping[str, str], idle_timeout: float,
                    opened: Callable[[], None] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch stream, one JSON object per line, until the server ends it. A stream
        silent for ``idle_timeout`` seconds is taken for a dead connection (asyncio.TimeoutError).
        ``opened()`` is called once the server accepted the watch (200), before any event."""
        timeout = aiohttp.ClientTimeout(total=None, connect=self.request_timeout, sock_read=idle_timeout)
        async with self._request(path, params, timeout) as response:
            if response.status != 200:
                raise _api_error(response.status, await response.read(), response.headers.get("Retry-After"))
            if opened is not None:
                opened()
            buf = b""
            async for chunk in response.content.iter_any():
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _decode(line)
            if buf.strip():
                yield _decode(buf)


def _decode(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(200, "BadResponse", f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(200, "BadResponse", "not a JSON object")
    return value


def _api_error(status: int, body: bytes, retry_after: str | None) -> ApiError:
    reason, message = "", body[:200].decode(errors="replace")
    try:
        doc = orjson.loads(body)
        if isinstance(doc, dict):
            reason, message = str(doc.get("reason", "")), str(doc.get("message", ""))
    except orjson.JSONDecodeError:
        pass
    delay = None
    if retry_after:
        try:
            delay = float(retry_after)
        except ValueError:
            delay = None
    return (Gone if status == 410 else ApiError)(status, reason, message, delay)


def status_error(status: dict[str, Any]) -> ApiError:
    """The error a watch stream's ERROR event carries (a ``Status`` object)."""
    code = int(status.get("code") or 500)
    return (Gone if code == 410 else ApiError)(code, str(status.get("reason", "")), str(status.get("message", "")))

