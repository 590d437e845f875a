"""Sink `http`: batches of events to any HTTP endpoint, on the shared delivery machinery."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Literal

from agent.codecs.encoding import encode_batch, json_documents
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch
from agent.core.component import SinkContext
from agent.core.errors import HealthcheckError
from agent.delivery.batcher import Request
from agent.delivery.config import HttpSinkConfig
from agent.delivery.driver import HttpDriver, Outcome
from agent.delivery.http import HttpClient, compress_async, raise_for_status

CONTENT_TYPES = {"json": "application/json", "ndjson": "application/x-ndjson", "text": "text/plain; charset=utf-8"}


class HttpConfig(HttpSinkConfig, tag="http"):
    """POST (or PUT) batches of events to ``uri`` as a JSON array, NDJSON or text lines; any 2xx delivers them."""

    uri: str
    """URL every request goes to."""
    method: Literal["post", "put"] = "post"
    """HTTP method: post or put."""
    encoding: Literal["json", "ndjson", "text"] = "ndjson"
    """Body of a request: json (one JSON array), ndjson (one object per line) or text (the message per line)."""
    healthcheck_uri: str | None = None
    """URL the start-up check gets; none: no check."""


@register("sink", "http", HttpConfig, "Sends batches of events to an HTTP endpoint.")
class HttpSink:
    """Encodes a request's events and sends them in one HTTP request; any 2xx delivers them all."""

    partition_key: Callable[[Any], Hashable] | None = None  # one partition

    def __init__(self, config: HttpConfig, ctx: BuildContext) -> None:
        self.config = config
        self.driver = HttpDriver(self, config, ctx.component_id, ctx.stats)

    def encode(self, request: Request) -> bytes:
        if self.config.encoding == "json":
            return b"[" + b",".join(json_documents(request.kind, request.events)) + b"]"
        codec = "text" if self.config.encoding == "text" else "json"
        return encode_batch(Batch(request.events, request.kind, request.byte_size), codec)

    async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome:
        data, headers = await compress_async(body, self.config.compression)
        headers["Content-Type"] = CONTENT_TYPES[self.config.encoding]
        response = await client.request(self.config.method.upper(), self.config.uri, data, headers)
        raise_for_status(response, f"{self.config.method.upper()} {self.config.uri}")
        return Outcome()

    async def healthcheck(self) -> None:
        await self.driver.healthcheck()

    async def check(self, client: HttpClient) -> None:
        if self.config.healthcheck_uri is None:
            return
        try:
            response = await client.request("GET", self.config.healthcheck_uri)
        except Exception as exc:
            raise HealthcheckError(f"GET {self.config.healthcheck_uri}: {exc}") from None
        if not 200 <= response.status < 300:
            raise HealthcheckError(f"GET {self.config.healthcheck_uri}: HTTP {response.status}")

    async def run(self, ctx: SinkContext) -> None:
        await self.driver.run(ctx)
