"""Sink `elasticsearch`: `_bulk` requests on the shared HTTP delivery, with per-item results.

Endpoints are used round-robin; one that refuses connections is skipped
for ``endpoint_cooldown`` and tried again later. Every bulk response is read
item by item: items that failed with 429, 5xx or ``es_rejected_execution_exception``
are sent again alone; items refused for good (mapping errors, other 4xx) go
to the dead letter with Elasticsearch's error type and reason; a 409 on
``create`` is a document that an earlier attempt already wrote. A whole
request that is too large (413) is split in two.

A response is trusted only when it is JSON (by its content type and its
body) and its ``items`` match the request's documents one for one; anything
else (a proxy's HTML page, a body cut short, more or fewer items) sends the
whole request again, counted as ``invalid_response`` or
``item_count_mismatch``. Only an explicit ``"errors": false`` lets the items go
unread, and only when a scan of their bytes finds one 200/201 status per
document; an item without a status is sent again. Items whose
error can never succeed on a retry (the document cannot be parsed:
``PERMANENT_TYPES``) go to the dead letter even with a 5xx status.
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
from agent.delivery.http import HttpClient, InvalidResponse, Response, compress_async, raise_for_status
from agent.sinks.elasticsearch.encoder import IndexTemplate, bulk_body

RETRY_TYPES = {"es_rejected_execution_exception", "circuit_breaking_exception", "cluster_block_exception"}
# Errors about the document's bytes or mapping: the same document fails the same way however often it is
# sent, whatever status an Elasticsearch version gives them (older ones answer 500 for a JSON parse error).
PERMANENT_TYPES = {"json_parse_exception", "x_content_parse_exception", "not_x_content_exception",
                   "mapper_parsing_exception", "document_parsing_exception", "strict_dynamic_mapping_exception",
                   "parse_exception", "illegal_argument_exception", "action_request_validation_exception"}


class ElasticsearchConfig(HttpSinkConfig, tag="elasticsearch"):
    """Index events into Elasticsearch or OpenSearch with ``_bulk``.

    ``endpoints`` are used round-robin, skipping one that refuses connections. Responses are read item by item: 429/5xx
    items are retried alone, mapping errors and other refusals go to the ``dead_letter``, a 409 on ``create`` counts as
    written. With ``id: auto`` each document's ``_id`` comes from the file and offset it was read from, so a replay
    after a crash rewrites documents instead of duplicating them. Documents without an ``@timestamp`` get one from the
    event's ``time``.
    """

    endpoints: list[str]
    """Base URLs of the nodes, used round-robin."""
    index: str = "agent-%Y.%m.%d"
    """Index (or data stream) name: strftime codes take the event's time; {{ field }} templates its values."""
    mode: Literal["index", "data_stream"] = "index"
    """index (index operations) or data_stream (create operations)."""
    id: str = "auto"
    """_id of each document: auto (from file and offset, so a replay after a crash rewrites rather than duplicates),
    none (Elasticsearch picks), or a field path.
    """
    pipeline: str | None = None
    """Ingest pipeline to run the documents through."""
    routing: str | None = None
    """Field path whose value routes each document to a shard."""
    suppress_type_name: bool = True
    """Leave _type out of the action lines (Elasticsearch 7 and later); false sends _type: _doc."""
    api_key: str | None = None
    """Elasticsearch API key (base64 of id:key), sent as Authorization: ApiKey; or use auth."""
    endpoint_cooldown: Duration = Duration(30.0)
    """How long an endpoint that refused connections is skipped."""


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
        data, headers = await compress_async(body, self.config.compression)
        headers["Content-Type"] = "application/x-ndjson"
        try:
            response = await client.request("POST", f"{endpoint}/_bulk{self._query}", data, headers)
        except RetryableError:
            self._down_until[endpoint] = time.monotonic() + self.config.endpoint_cooldown
            raise
        if response.status == 413:
            raise PayloadTooLarge()
        raise_for_status(response, f"POST {endpoint}/_bulk")
        return bulk_outcome(response, len(request.events), self.op)

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


def bulk_outcome(response: Response, documents: int, op: str) -> Outcome:
    """The outcome of a 2xx `_bulk` answer to a request of ``documents`` actions (see the module docstring)."""
    content_type = response.headers.get("content-type", "application/json")
    if "json" not in content_type:
        raise InvalidResponse(f"_bulk answered with content type {content_type[:100]!r}, not JSON")
    if _all_succeeded(response.body, documents):
        return Outcome()
    try:
        parsed = orjson.loads(response.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidResponse(f"_bulk answered a body that is not JSON ({exc}): "
                              f"{response.body[:200].decode('utf-8', 'replace')!r}") from None
    return item_outcome(parsed, op, documents)


def _all_succeeded(body: bytes, documents: int) -> bool:
    """The fast path: an explicit ``"errors":false`` that the items' bytes do not contradict.

    One scan (about 0.1 us per item): exactly one ``"status":20x`` per document means every item reports
    200 or 201; a failed item, a missing one or one without a status (a lying or cut answer) makes the count
    differ, and the answer is then parsed and read item by item. (A JSON string cannot hold the pattern:
    its quotes would be escaped.)
    """
    items_at = body.find(b'"items"')
    if items_at < 0 or b'"errors":false' not in body[:items_at]:
        return False
    return body.count(b'"status":20', items_at) == documents


def item_outcome(response: Any, op: str, documents: int) -> Outcome:
    """Which items to send again and which were refused, from a parsed `_bulk` answer (items in request order).

    Every item is read, whatever ``errors`` says; an answer that is not an object with one item per document
    is not trusted (InvalidResponse: the whole request is sent again).
    """
    items = response.get("items") if isinstance(response, dict) else None
    if not isinstance(items, list):
        raise InvalidResponse("_bulk answered JSON without an items list")
    if len(items) != documents:
        raise InvalidResponse(f"_bulk answered {len(items)} items for {documents} documents", "item_count_mismatch")
    outcome = Outcome()
    for index, item in enumerate(items):
        result = next(iter(item.values()), None) if isinstance(item, dict) and len(item) == 1 else None
        status = result.get("status") if isinstance(result, dict) else None
        if type(status) is not int:  # no status (a filter_path'd answer), or not a number: not accepted
            outcome.retry.append(index)
            continue
        if 200 <= status < 300 or (status == 409 and op == "create"):
            continue
        assert isinstance(result, dict)
        error = result.get("error") or {}
        error_type = error.get("type", "unknown") if isinstance(error, dict) else str(error)
        if error_type in PERMANENT_TYPES and status != 429:
            outcome.rejected.append((index, error_type, error))
        elif status == 429 or status >= 500 or status < 400 or error_type in RETRY_TYPES:
            outcome.retry.append(index)  # throttled, failed on the server, or a status no bulk item should have
        else:
            outcome.rejected.append((index, error_type, error))
    return outcome
