"""What the Datadog sinks share: their config keys, posting to an intake with the API key, holding data
on a refused key, and the start-up check of the key.

A 429 waits at least ``X-RateLimit-Reset`` (Datadog's seconds until the rate
limit resets), as it waits at least a Retry-After.

A 401 or 403 from an intake becomes :class:`ApiKeyRefused`, a retryable
error whose backoff is the sink's ``request.retry_max_backoff``: the request
stays unacknowledged and is sent again until the key is accepted, and each
refusal is counted (``forbidden``) and logged as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any, Literal

from agent.config.registry import BuildContext
from agent.core.component import SinkContext
from agent.core.errors import HealthcheckError, RetryableError
from agent.delivery.batcher import Request
from agent.delivery.config import HttpSinkConfig
from agent.delivery.driver import HttpDriver, Outcome, PayloadTooLarge
from agent.delivery.http import HttpClient, Response, ThrottledError, raise_for_status, redacted, retry_after
from agent.observe.stats import ComponentStats

log = logging.getLogger("agent.sinks.datadog")


class DatadogConfig(HttpSinkConfig, kw_only=True):
    """The keys both Datadog sinks take: the API key, the site or explicit endpoints, the hostname."""

    api_key: str
    """Datadog API key; give it as ${DD_API_KEY} or ${file:PATH}."""
    site: str = "datadoghq.com"
    """Datadog site: datadoghq.com, datadoghq.eu, us3.datadoghq.com, ...; the endpoints follow from it."""
    endpoint: str | None = None
    """Base URL to send to instead of the site's intake (a proxy, a test server)."""
    validate_endpoint: str | None = None
    """Base URL where the start-up check validates the API key instead of the default."""
    hostname: str | None = None
    """Host name for events (logs) or series (metrics) that do not carry their own."""
    compression: Literal["none", "gzip", "zstd"] = "gzip"
    """Compression of request bodies (logs take gzip only; metrics send zstd as zstd1)."""

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key must not be empty")


class ApiKeyRefused(RetryableError):
    """Datadog refused the API key (401 or 403): hold the data and retry at the longest backoff."""


class KeyRefusals:
    """Turns a 401/403 into :class:`ApiKeyRefused`: counted and logged as an error (the log is rate-limited)."""

    def __init__(self, component_id: str, stats: ComponentStats, retry_every: float) -> None:
        self.component_id = component_id
        self.stats = stats
        self.retry_every = retry_every

    def refused(self, status: int, url: str, events: int) -> ApiKeyRefused:
        self.stats.error("forbidden", "sending")
        log.error("Datadog refused the API key; holding the events and retrying until it is accepted "
                  "(fix api_key and reload)", extra={
                      "component_id": self.component_id, "status": status, "url": redacted(url), "events": events,
                      "retry_every_s": self.retry_every})
        return ApiKeyRefused(f"POST {redacted(url)}: HTTP {status}: the API key was refused", self.retry_every)


async def post(client: HttpClient, url: str, key: str, data: bytes, headers: dict[str, str],
               refusals: KeyRefusals, events: int) -> Response:
    """POST a JSON payload to a Datadog intake: a refused key holds the data, 413 splits, else by status."""
    headers["Content-Type"] = "application/json"
    headers["DD-API-KEY"] = key
    response = await client.request("POST", url, data, headers)
    if response.status in (401, 403):
        raise refusals.refused(response.status, url, events)
    if response.status == 413:
        raise PayloadTooLarge()
    try:
        raise_for_status(response, f"POST {url}")
    except ThrottledError as exc:
        if response.status == 429:
            exc.retry_after = rate_limit_wait(response.headers)
        raise
    return response


def rate_limit_wait(headers: dict[str, str]) -> float | None:
    """How long a 429 asks us to wait: Retry-After, or Datadog's ``X-RateLimit-Reset`` (seconds to the reset)."""
    wait = retry_after(headers)
    try:
        reset = float(headers.get("x-ratelimit-reset", ""))
    except ValueError:
        return wait
    if not 0 <= reset <= 3600:  # not a number of seconds we can trust
        return wait
    return reset if wait is None else max(wait, reset)


async def validate_api_key(client: HttpClient, base_url: str, key: str) -> None:
    """``GET {base_url}/api/v1/validate`` with the key; HealthcheckError unless Datadog says it is valid."""
    url = f"{base_url}/api/v1/validate"
    try:
        response = await client.request("GET", url, headers={"DD-API-KEY": key})
    except RetryableError as exc:
        raise HealthcheckError(str(exc)) from None
    if response.status in (401, 403):
        raise HealthcheckError(f"GET {url}: the API key was refused (HTTP {response.status})")
    if response.status != 200:
        raise HealthcheckError(f"GET {url}: HTTP {response.status}")


class DatadogSink:
    """The part of a Datadog sink that is not about its payload: the key, where to post, and delivery.

    A subclass provides ``encode`` and ``send`` (posting with :meth:`post`) for the shared HTTP driver.
    """

    partition_key: Callable[[Any], Hashable] | None = None  # one partition

    def __init__(self, config: DatadogConfig, ctx: BuildContext, url: str, validate_url: str) -> None:
        self.config = config
        self.stats = ctx.stats
        self.url = url
        self.validate_url = validate_url.rstrip("/")
        self.key = config.api_key
        self.refusals = KeyRefusals(ctx.component_id, ctx.stats, float(config.request.retry_max_backoff))
        self.driver = HttpDriver(self, config, ctx.component_id, ctx.stats)

    def encode(self, request: Request) -> bytes:
        raise NotImplementedError  # the payload: each sink's own

    async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome:
        raise NotImplementedError

    async def post(self, client: HttpClient, data: bytes, headers: dict[str, str], events: int) -> Response:
        return await post(client, self.url, self.key, data, headers, self.refusals, events)

    async def healthcheck(self) -> None:
        await self.driver.healthcheck()

    async def check(self, client: HttpClient) -> None:
        await validate_api_key(client, self.validate_url, self.key)

    async def run(self, ctx: SinkContext) -> None:
        await self.driver.run(ctx)
