"""Config shared by every HTTP sink: ``batch``, ``request``, ``compression``, ``tls``, ``auth``, ``dead_letter``."""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from agent.config.model import SinkConfig
from agent.config.units import ByteSize, Duration


class BatchConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """When a partition of events becomes a request: whichever limit is reached first."""

    max_events: int = 1000
    """Events per request at most."""
    max_bytes: ByteSize = ByteSize(5 * 1024 * 1024)
    """Encoded bytes per request at most (before compression)."""
    timeout: Duration = Duration(1.0)
    """How long a partial batch may wait for more events before it is sent."""

    def __post_init__(self) -> None:
        if self.max_events < 1:
            raise ValueError("max_events must be at least 1")
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")


class RequestConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How requests are sent and retried.

    ``concurrency`` is a number of requests in flight, or ``adaptive`` (start at
    1, grow while latency stays low, halve on 429 or a latency jump).
    Retries back off exponentially with full jitter between
    ``retry_initial_backoff`` and ``retry_max_backoff``, never sooner than a
    peer's Retry-After, for ever unless ``retry_max_duration`` is set.
    """

    concurrency: int | Literal["adaptive"] = 4
    """Requests in flight at once, or adaptive (starts at 1, grows while latency stays low, halves on a 429 or a latency
    jump).
    """
    max_concurrency: int = 32
    """Upper bound of adaptive concurrency."""
    timeout: Duration = Duration(30.0)
    """How long one request may take before it fails and is retried."""
    retry_initial_backoff: Duration = Duration(1.0)
    """First wait before a retry; it doubles with full jitter after each failure."""
    retry_max_backoff: Duration = Duration(30.0)
    """Longest wait between two retries."""
    retry_max_duration: Duration | None = None
    """Give up on a request after this long and dead-letter its events; none: retry until delivered."""
    headers: dict[str, str] = {}
    """Extra HTTP headers sent with every request."""

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, int) and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1 or adaptive")


class TlsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """TLS for https endpoints; verification is on unless turned off."""

    ca_file: str | None = None
    """PEM file of the CAs to trust instead of the system's."""
    cert_file: str | None = None
    """PEM client certificate, for mutual TLS (with key_file)."""
    key_file: str | None = None
    """PEM private key of cert_file."""
    verify_certificate: bool = True
    """Check the peer's certificate chain; turn off only for testing."""
    verify_hostname: bool = True
    """Check that the certificate names the host connected to."""


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Credentials: ``basic`` (user, password), ``bearer`` (token) or ``api_key`` (header, key)."""

    strategy: Literal["basic", "bearer", "api_key"]
    """basic (user and password), bearer (token) or api_key (key in header)."""
    user: str | None = None
    """User name for basic."""
    password: str | None = None
    """Password for basic; give it as ${VAR} or ${file:PATH}."""
    token: str | None = None
    """Token for bearer, sent as Authorization: Bearer <token>."""
    header: str = "Authorization"
    """Header that carries the key for api_key."""
    key: str | None = None
    """The key for api_key."""

    def __post_init__(self) -> None:
        needs = {"basic": ("user", "password"), "bearer": ("token",), "api_key": ("key",)}[self.strategy]
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"auth strategy {self.strategy} needs {' and '.join(missing)}")


class DeadLetterConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where events a peer rejected for good are written, as NDJSON with the reason."""

    path: str
    """NDJSON file the rejected events are appended to, each with the reason and the peer's error; created on the first
    write.
    """


class HttpSinkConfig(SinkConfig, kw_only=True):
    """Base of every HTTP sink config."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs"})
    batch: BatchConfig = msgspec.field(default_factory=BatchConfig)
    """When buffered events become a request."""
    request: RequestConfig = msgspec.field(default_factory=RequestConfig)
    """Concurrency, timeouts and retries of requests."""
    compression: Literal["none", "gzip", "zstd"] = "none"
    """Compression of request bodies."""
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    """TLS for https endpoints."""
    auth: AuthConfig | None = None
    """Credentials sent with every request; none by default."""
    dead_letter: DeadLetterConfig | None = None
    """Where events the peer refused for good are written, with the reason (counted as discarded either way)."""
    healthcheck: bool = True
    """Check the peer at start-up and warn if it cannot be reached (the agent starts anyway)."""
