"""The HTTP client every HTTP sink shares: TLS, auth, compression, timeouts, status -> error class.

    2xx                      ok
    429, 503                 ThrottledError (Retry-After honoured as a floor)
    408, 5xx (not 501)       RetryableError
    other 4xx, 501           PermanentError
    refused, reset, timeout  RetryableError

An error body is read only up to :data:`ERROR_BODY_LIMIT` bytes (a peer that
answers a 10 MB page is neither buffered nor logged whole), a success body up
to :data:`BODY_LIMIT`. Compression of a body larger than
:data:`INLINE_COMPRESSION` runs in a worker thread (zlib and zstandard
release the GIL), so a 5 MiB request does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import re
import ssl
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import zstandard

from agent import __version__
from agent.core.errors import BuildError, PermanentError, RetryableError
from agent.delivery.config import AuthConfig, TlsConfig

USER_AGENT = f"agent/{__version__}"
LARGE_BODY = 1024 * 1024
INLINE_COMPRESSION = 256 * 1024  # bodies up to this are compressed in the loop (a thread hop costs more)
ERROR_BODY_LIMIT = 64 * 1024  # what is read of a non-2xx answer's body
BODY_LIMIT = 64 * 1024 * 1024  # what is read of a 2xx answer's body


class ThrottledError(RetryableError):
    """The peer asked us to slow down (429 or 503)."""

    error_type = "throttled"


class InvalidResponse(RetryableError):
    """A 2xx answer the sink cannot trust (not JSON, cut short, the wrong shape): the whole request is retried."""

    def __init__(self, message: str, error_type: str = "invalid_response") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(slots=True)
class Response:
    """What a service needs of an HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes


class ServerNameContext(ssl.SSLContext):
    """A client TLS context that sends (SNI) and verifies ``server_name`` whatever host a connection dials
    (asyncio's and uvloop's TLS both wrap through :meth:`wrap_bio`)."""

    server_name = ""

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | bytes | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)


def ssl_context(tls: TlsConfig, server_name: str | None = None) -> ssl.SSLContext:
    """A client TLS context; verification stays on unless the config turns it off. With ``server_name``, the
    name sent and verified instead of the host connected to. A file that cannot be loaded is a BuildError
    naming it."""
    if server_name is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    else:
        context = pinned = ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
        pinned.server_name = server_name
    try:
        if tls.ca_file:
            context.load_verify_locations(cafile=tls.ca_file)
        else:
            context.load_default_certs()
    except (OSError, ssl.SSLError) as exc:
        raise BuildError(f"tls: ca_file {tls.ca_file}: {exc}") from None
    try:
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise BuildError(f"tls: cert_file {tls.cert_file}, key_file {tls.key_file}: {exc}") from None
    context.check_hostname = tls.verify_hostname and tls.verify_certificate
    if not tls.verify_certificate:
        context.verify_mode = ssl.CERT_NONE
    return context


def auth_headers(auth: AuthConfig | None) -> dict[str, str]:
    if auth is None:
        return {}
    if auth.strategy == "basic":
        token = base64.b64encode(f"{auth.user}:{auth.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if auth.strategy == "bearer":
        return {"Authorization": f"Bearer {auth.token}"}
    return {auth.header: str(auth.key)}


def compress(body: bytes, compression: str) -> tuple[bytes, dict[str, str]]:
    """The body as sent, and the Content-Encoding header it needs."""
    if compression == "gzip":
        return gzip.compress(body, compresslevel=6, mtime=0), {"Content-Encoding": "gzip"}
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(body), {"Content-Encoding": "zstd"}
    return body, {}


async def compress_async(body: bytes, compression: str) -> tuple[bytes, dict[str, str]]:
    """:func:`compress`, in a worker thread when the body is large enough to stall the loop."""
    if compression == "none" or len(body) <= INLINE_COMPRESSION:
        return compress(body, compression)
    return await asyncio.to_thread(compress, body, compression)


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def raise_for_status(response: Response, what: str) -> None:
    """Turn a non-2xx response into the error class that decides retry or reject."""
    status = response.status
    if 200 <= status < 300:
        return
    detail = f"{redact_urls(what)}: HTTP {status}: {response.body[:500].decode('utf-8', 'replace')}"
    if status in (429, 503):
        raise ThrottledError(detail, retry_after(response.headers))
    if status == 408 or (status >= 500 and status != 501):
        raise RetryableError(detail, retry_after(response.headers))
    raise PermanentError(detail)


class HttpClient:
    """One aiohttp session for one sink, with its TLS (a ``tls:`` config, or a context built elsewhere), auth
    and default headers."""

    def __init__(self, tls: TlsConfig | ssl.SSLContext, auth: AuthConfig | None, headers: dict[str, str],
                 timeout: float) -> None:
        self._ssl = tls if isinstance(tls, ssl.SSLContext) else ssl_context(tls)
        self._headers = {"User-Agent": USER_AGENT, **headers, **auth_headers(auth)}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=0)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  headers=self._headers, auto_decompress=True)
        return self._session

    async def request(self, method: str, url: str, body: bytes | None = None,
                      headers: dict[str, Any] | None = None) -> Response:
        """Send one request; connection failures and timeouts raise RetryableError."""
        data: bytes | io.BytesIO | None = body
        if body is not None and len(body) > LARGE_BODY:
            data = io.BytesIO(body)  # aiohttp warns that a large bytes body may block the loop
        try:
            async with self._open().request(method, url, data=data, headers=headers) as response:
                limit = BODY_LIMIT if 200 <= response.status < 300 else ERROR_BODY_LIMIT
                received, complete = await _read_capped(response, limit)
                if not complete and limit == BODY_LIMIT:
                    raise InvalidResponse(f"{method} {redacted(url)}: a response body over {BODY_LIMIT} bytes")
                return Response(response.status, {k.lower(): v for k, v in response.headers.items()}, received)
        except TimeoutError:
            raise RetryableError(f"{method} {redacted(url)}: timed out") from None
        except aiohttp.ClientError as exc:
            detail = str(exc or type(exc).__name__).replace(url, redacted(url))
            raise RetryableError(f"{method} {redacted(url)}: {detail}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def redacted(url: str) -> str:
    """``url`` with the password of its user info shown as ``xxxxx``, as Go's ``URL.Redacted()`` writes it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:xxxxx@{host}"))


_USER_INFO = re.compile(r"(://[^/@\s:]*:)[^/@\s]*@")


def redact_urls(text: str) -> str:
    """``text`` with the password of every URL's user info shown as ``xxxxx`` (for messages that name a URL)."""
    return _USER_INFO.sub(r"\1xxxxx@", text)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether that was all of it (if not, the connection is closed)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            response.close()  # the rest is never read: this connection cannot be reused
            return b"".join(parts)[:limit], False
    return b"".join(parts), True
