"""Sink `elasticsearch`: `_bulk` requests on the shared HTTP delivery, with per-item results.

Endpoints are used round-robin; one that refuses connections is skipped
for ``endpoint_cooldown`` and tried again later. Every bulk response is read
item by item: items that failed with 429, 5xx or ``es_rejected_execution_exception``
are sent again alone; items refused for good (mapping errors, other 4xx) go
to the dead letter with Elasticsearch's error type and reason; a 409 on
``create`` is a document that an earlier attempt already wrote. A whole
request that is too large (413) is split in two.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Hashable
from typing import Any, Literal
from urllib.parse import urlencode

import orjson

from agent.config.registry import BuildContext, register
from agent.config.units import Duration
from agent.core.component import SinkContext
from agent.core.errors import BuildError, HealthcheckError, RetryableError
from agent.delivery.batcher import Request
from agent.delivery.config import HttpSinkConfig
from agent.delivery.driver import HttpDriver, Outcome, PayloadTooLarge
from agent.delivery.http import HttpClient, compress, raise_for_status
from agent.sinks.elasticsearch.encoder import IndexTemplate, bulk_body

RETRY_TYPES = {"es_rejected_execution_exception", "circuit_breaking_exception", "cluster_block_exception"}


class ElasticsearchConfig(HttpSinkConfig, tag="elasticsearch"):
    """Index events into Elasticsearch or OpenSearch with `_bulk`."""

    endpoints: list[str]
    index: str = "agent-%Y.%m.%d"
    mode: Literal["index", "data_stream"] = "index"
    id: str = "auto"
    pipeline: str | None = None
    routing: str | None = None
    suppress_type_name: bool = True
    api_key: str | None = None
    endpoint_cooldown: Duration = Duration(30.0)


@register("sink", "elasticsearch", ElasticsearchConfig, "Indexes events into Elasticsearch with _bulk.")
class ElasticsearchSink:
    """Partitions events by index, sends `_bulk` requests, and reads each item's result."""

    mutates = True  # bulk_body sets @timestamp on the events themselves

    def __init__(self, config: ElasticsearchConfig, ctx: BuildContext) -> None:
        if not config.endpoints:
            raise BuildError("endpoints must name at least one URL")
        self.config = config
        self.template = IndexTemplate(config.index)
        self.op = "create" if config.mode == "data_stream" else "index"
        self.partition_key: Callable[[Any], Hashable] | None = (
            None if self.template.static else self.template.partition_key())
        self._next_endpoint = 0
        self._down_until: dict[str, float] = {}
        headers = dict(config.request.headers)
        if config.api_key:
            key = config.api_key if ":" not in config.api_key else base64.b64encode(config.api_key.encode()).decode()
            headers["Authorization"] = f"ApiKey {key}"
        config.request.headers = headers
        self.driver = HttpDriver(self, config, ctx.component_id, ctx.stats)
        query = {k: v for k, v in (("pipeline", config.pipeline),) if v}
        self._query = f"?{urlencode(query)}" if query else ""

    def encode(self, request: Request) -> bytes:
        index = request.key if request.key is not None else self.template.render(None)
        return bulk_body(request.kind, request.events, str(index), op=self.op, id_mode=self.config.id,
                         routing=self.config.routing, type_name=None if self.config.suppress_type_name else "_doc")

    def _endpoint(self) -> str:
        endpoints = self.config.endpoints
        now = time.monotonic()
        for _ in range(len(endpoints)):
            endpoint = endpoints[self._next_endpoint % len(endpoints)]
            self._next_endpoint += 1
            if self._down_until.get(endpoint, 0) <= now:
                return endpoint.rstrip("/")
        return endpoints[self._next_endpoint % len(endpoints)].rstrip("/")  # all down: try anyway

    async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome:
        endpoint = self._endpoint()
        data, headers = compress(body, self.config.compression)
        headers["Content-Type"] = "application/x-ndjson"
        try:
            response = await client.request("POST", f"{endpoint}/_bulk{self._query}", data, headers)
        except RetryableError:
            self._down_until[endpoint] = time.monotonic() + self.config.endpoint_cooldown
            raise
        if response.status == 413:
            raise PayloadTooLarge()
        raise_for_status(response, f"POST {endpoint}/_bulk")
        body = response.body
        items_at = body.find(b'"items"')
        if items_at > 0 and b'"errors":false' in body[:items_at]:  # every item succeeded: skip parsing them
            return Outcome()
        return item_outcome(orjson.loads(body), self.op)

    async def healthcheck(self) -> None:
        await self.driver.healthcheck()

    async def check(self, client: HttpClient) -> None:
        endpoint = self.config.endpoints[0].rstrip("/")
        try:
            response = await client.request("GET", f"{endpoint}/")
        except RetryableError as exc:
            raise HealthcheckError(str(exc)) from None
        if response.status != 200:
            raise HealthcheckError(f"GET {endpoint}/: HTTP {response.status}")

    async def run(self, ctx: SinkContext) -> None:
        await self.driver.run(ctx)


def item_outcome(response: dict[str, Any], op: str) -> Outcome:
    """Which items to send again and which were refused, from a `_bulk` response (items in request order)."""
    outcome = Outcome()
    if not response.get("errors"):
        return outcome
    for index, item in enumerate(response.get("items", [])):
        result: dict[str, Any] = next(iter(item.values()), {}) if isinstance(item, dict) else {}
        status = int(result.get("status", 500))
        if 200 <= status < 300 or (status == 409 and op == "create"):
            continue
        error = result.get("error") or {}
        error_type = error.get("type", "unknown") if isinstance(error, dict) else str(error)
        if status == 429 or status >= 500 or error_type in RETRY_TYPES:
            outcome.retry.append(index)
        else:
            outcome.rejected.append((index, error_type, error))
    return outcome

