"""Config shared by every HTTP sink: ``batch``, ``request``, ``compression``, ``tls``, ``auth``, ``dead_letter``."""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from agent.config.model import SinkConfig
from agent.config.units import ByteSize, Duration


class BatchConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """When a partition of events becomes a request: whichever limit is reached first."""

    max_events: int = 1000
    max_bytes: ByteSize = ByteSize(5 * 1024 * 1024)
    timeout: Duration = Duration(1.0)

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
    max_concurrency: int = 32
    timeout: Duration = Duration(30.0)
    retry_initial_backoff: Duration = Duration(1.0)
    retry_max_backoff: Duration = Duration(30.0)
    retry_max_duration: Duration | None = None
    headers: dict[str, str] = {}

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, int) and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1 or adaptive")


class TlsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """TLS for https endpoints; verification is on unless turned off."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_certificate: bool = True
    verify_hostname: bool = True


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Credentials: ``basic`` (user, password), ``bearer`` (token) or ``api_key`` (header, key)."""

    strategy: Literal["basic", "bearer", "api_key"]
    user: str | None = None
    password: str | None = None
    token: str | None = None
    header: str = "Authorization"
    key: str | None = None

    def __post_init__(self) -> None:
        needs = {"basic": ("user", "password"), "bearer": ("token",), "api_key": ("key",)}[self.strategy]
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"auth strategy {self.strategy} needs {' and '.join(missing)}")


class DeadLetterConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where events a peer rejected for good are written, as NDJSON with the reason."""

    path: str


class HttpSinkConfig(SinkConfig, kw_only=True):
    """Base of every HTTP sink config."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs"})
    batch: BatchConfig = msgspec.field(default_factory=BatchConfig)
    request: RequestConfig = msgspec.field(default_factory=RequestConfig)
    compression: Literal["none", "gzip", "zstd"] = "none"
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    auth: AuthConfig | None = None
    dead_letter: DeadLetterConfig | None = None
    healthcheck: bool = True
