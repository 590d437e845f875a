"""A faithful fake of Elasticsearch 8's `_bulk` API, for the agent's tests and benchmarks.

In-process: `async with FakeElasticsearch() as es:` then send to `es.url`.
As a process: `python tests/fakes/elasticsearch.py --port N [--latency-ms X]` prints `ready <port>`.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

if __package__ in (None, ""):  # run as a script: make `fakes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fakes.base import (
    RECORD,
    BodyError,
    FakeHTTPServer,
    Handler,
    RecordedRequest,
    decode_body,
    read_limited,
    serve_main,
)

VERSION = "8.15.0"
ACTIONS = ("create", "delete", "index", "update")
ACTION_PARAMS = frozenset({
    "_index", "_id", "routing", "pipeline", "require_alias", "require_data_stream", "if_seq_no",
    "if_primary_term", "version", "version_type", "retry_on_conflict", "_source", "dynamic_templates",
    "list_executed_pipelines", "op_type",
})
BULK_CONTENT_TYPES = frozenset({"application/x-ndjson", "application/json"})
COMPAT_CONTENT_TYPES = frozenset({"application/vnd.elasticsearch+x-ndjson", "application/vnd.elasticsearch+json"})
ENCODINGS = frozenset({"identity", "gzip", "x-gzip", "deflate", "x-deflate"})  # what Netty inflates
SHARDS = {"total": 2, "successful": 1, "failed": 0}
WWW_AUTHENTICATE = ('Basic realm="security" charset="UTF-8"', "ApiKey")
INTEGER_RANGES = {
    "long": (-(2**63), 2**63 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-128, 127),
    "unsigned_long": (0, 2**64 - 1),
}
FLOAT_TYPES = frozenset({"double", "float", "half_float", "scaled_float"})
TEXT_TYPES = frozenset({"keyword", "text", "wildcard", "match_only_text", "constant_keyword"})
BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')
WHOLE_REQUEST_ERRORS = {
    429: ("es_rejected_execution_exception",
          "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, "
          "all_bytes=0, coordinating_operation_bytes=52428800, max_coordinating_and_primary_bytes=53687091]"),
    500: ("exception", "Internal server error"),
    502: ("exception", "Bad Gateway"),
    503: ("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];"),
    504: ("exception", "Gateway Timeout"),
}
ITEM_ERRORS = {
    429: ("es_rejected_execution_exception",
          "rejected execution of primary operation [shard_detail=[{index}][0][P], shard_coordinating_and_primary_bytes=0, "
          "shard_operation_bytes=1024, shard_max_coordinating_and_primary_bytes=53687091]"),
    500: ("exception", "Internal server error"),
    503: ("unavailable_shards_exception", "[{index}][0] primary shard is not active Timeout: [1m]"),
}


def es_error(etype: str, reason: str, status: int, **extra: Any) -> dict[str, Any]:
    """A whole-request error body: {"error":{"root_cause":[…],"type","reason"},"status"}."""
    cause = {"type": etype, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def new_id() -> str:
    """An ES-like 20-character base64url document id."""
    return base64.urlsafe_b64encode(os.urandom(15)).decode()


def token_name(value: Any) -> str:
    """The Jackson token a JSON value starts with, as ES names it in its messages."""
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if value is None:
        return "VALUE_NULL"
    return "VALUE_STRING" if isinstance(value, str) else "VALUE_NUMBER"


class RequestError(Exception):
    """A whole-request failure: status plus an ES error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body

    @classmethod
    def of(cls, etype: str, reason: str, status: int = 400) -> RequestError:
        return cls(status, es_error(etype, reason, status))


class ItemError(Exception):
    """A per-item failure: status plus the item's `error` object."""

    def __init__(self, status: int, etype: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status = status
        self.error: dict[str, Any] = {"type": etype, "reason": reason, **extra}


@dataclass
class Doc:
    source: dict[str, Any]
    version: int
    seq_no: int
    order: int  # global write order, for documents()


@dataclass
class Index:
    name: str
    uuid: str = field(default_factory=lambda: base64.urlsafe_b64encode(os.urandom(16)).decode()[:22])
    docs: dict[str, Doc] = field(default_factory=dict)
    mapping: dict[str, str] = field(default_factory=dict)  # dotted field -> type
    strict: bool = False
    data_stream: str | None = None
    seq_no: int = -1
    versions: dict[str, int] = field(default_factory=dict)  # last version by id, deletes included

    def next_seq(self) -> int:
        self.seq_no += 1
        return self.seq_no


@dataclass
class Action:
    op: str  # the response key: create, index, update or delete
    line: int
    meta: dict[str, Any]
    index: str
    source_line: bytes | None = None
    update: dict[str, Any] | None = None


@dataclass
class ItemRejection:
    """A scripted per-item rejection rule."""

    predicate: Callable[[dict[str, Any], dict[str, Any] | None], bool] | None
    every_nth: int | None
    status: int
    limit: int | None
    seen: int = 0
    used: int = 0

    def matches(self, meta: dict[str, Any], source: dict[str, Any] | None) -> bool:
        if self.limit is not None and self.used >= self.limit:
            return False
        self.seen += 1
        hit = self.predicate(meta, source) if self.predicate else self.seen % (self.every_nth or 1) == 0
        self.used += hit
        return hit


class FakeElasticsearch(FakeHTTPServer):
    """An Elasticsearch 8 node that speaks `_bulk` the way the real one does, edge cases included.

    Configure with `set_mapping()`, `add_data_stream()`, `add_alias()`, `require_auth()` and the
    `max_content_length` / `auto_create_index` / `dynamic_mapping` attributes; script trouble with
    `fail_next_requests()`, `reject_items()`, `slow()`, `drop_next_requests()`, `go_down()`; inspect
    with `requests`, `bulk_requests`, `documents()`, `count()` and `indices()`.
    """

    ingest_suffixes = ("/_bulk",)

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        data_streams: Iterable[str] = (),
        max_content_length: int = 100 * 1024 * 1024,
        auto_create_index: bool = True,
        dynamic_mapping: bool = False,
        record_bodies: bool = True,
    ) -> None:
        super().__init__(host=host, port=port, latency_ms=latency_ms)
        self.max_content_length = max_content_length
        self.auto_create_index = auto_create_index
        self.dynamic_mapping = dynamic_mapping  # infer a type for new fields, as ES does by default
        self.record_bodies = record_bodies  # False: keep neither NDJSON lines nor sources (benchmarks)
        self.data_stream_patterns: list[str] = list(data_streams)
        self.aliases: dict[str, str] = {}
        self._templates: list[tuple[str, dict[str, str], bool]] = []
        self._indices: dict[str, Index] = {}
        self._rejections: list[ItemRejection] = []
        self._answers: deque[tuple[int, bytes, str]] = deque()
        self._basic: tuple[str, str] | None = None
        self._api_key: str | None = None
        self._order = 0

    # -- configuration ---------------------------------------------------------------------------

    def require_auth(self, basic: tuple[str, str] | None = None, api_key: str | None = None) -> None:
        """Demand `Authorization: Basic …` or `ApiKey base64(id:key)` (api_key is "id:key")."""
        self._basic, self._api_key = basic, api_key

    def set_mapping(self, index_pattern: str, fields: dict[str, str], strict: bool = False) -> None:
        """Map dotted field names to ES types for indices matching the glob (now and later)."""
        self._templates.append((index_pattern, dict(fields), strict))
        for idx in self._indices.values():
            if fnmatch.fnmatchcase(idx.data_stream or idx.name, index_pattern):
                idx.mapping.update(fields)
                idx.strict = idx.strict or strict

    def add_data_stream(self, pattern: str) -> None:
        """Targets matching the glob are data streams: `create` only, `@timestamp` required."""
        self.data_stream_patterns.append(pattern)

    def add_alias(self, alias: str, index: str) -> None:
        self.aliases[alias] = index

    def reject_items(
        self,
        predicate: Callable[[dict[str, Any], dict[str, Any] | None], bool] | None = None,
        *,
        every_nth: int | None = None,
        status: int = 429,
        limit: int | None = None,
    ) -> None:
        """Fail matching bulk items with `status` (429 → es_rejected_execution_exception), unstored.

        `predicate(action_metadata, source)` or every `every_nth` item; at most `limit` times."""
        if (predicate is None) == (every_nth is None):
            raise ValueError("give exactly one of predicate and every_nth")
        self._rejections.append(ItemRejection(predicate, every_nth, status, limit))

    def answer_next_bulk(self, body: Any, status: int = 200, content_type: str = "application/json") -> None:
        """Answer the next `_bulk` request with exactly this body (bytes as given, else JSON), storing nothing.

        The request is still read and recorded (its lines are in `bulk_requests`)."""
        self._answers.append((status, body if isinstance(body, bytes) else orjson.dumps(body), content_type))

    def clear_failures(self) -> None:
        super().clear_failures()
        self._rejections.clear()
        self._answers.clear()

    def reset(self) -> None:
        """Forget documents, indices, recorded requests and scripted trouble (configuration stays)."""
        self._indices.clear()
        self.requests.clear()
        self.clear_failures()

    # -- inspection ------------------------------------------------------------------------------

    @property
    def bulk_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/_bulk")]

    def documents(self, index: str | None = None) -> list[dict[str, Any]]:
        """Stored documents, oldest first, as {"_index","_id","_version","_seq_no","_source"}.

        `index` may be an index, a data stream or an alias name, or a glob."""
        found = []
        for idx in self._matching(index):
            for doc_id, doc in idx.docs.items():
                found.append((doc, {"_index": idx.name, "_id": doc_id, "_version": doc.version,
                                    "_seq_no": doc.seq_no, "_source": doc.source}))
        return [d for _, d in sorted(found, key=lambda pair: pair[0].order)]

    def sources(self, index: str | None = None) -> list[dict[str, Any]]:
        return [d["_source"] for d in self.documents(index)]

    def count(self, index: str | None = None) -> int:
        return sum(len(idx.docs) for idx in self._matching(index))

    def indices(self) -> list[str]:
        """Index and data stream names (not the backing `.ds-` indices)."""
        return sorted({idx.data_stream or idx.name for idx in self._indices.values()})

    def _matching(self, pattern: str | None) -> list[Index]:
        if pattern is None:
            return list(self._indices.values())
        names = [self.aliases.get(p, p) for p in pattern.split(",")]
        return [
            idx for idx in self._indices.values()
            if any(fnmatch.fnmatchcase(idx.name, n) or (idx.data_stream and fnmatch.fnmatchcase(idx.data_stream, n))
                   for n in names)
        ]

    # -- HTTP ------------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(self._guard_middleware)
        r = app.router
        r.add_get("/", self._banner)  # also answers HEAD
        r.add_post("/_bulk", self._bulk)
        r.add_put("/_bulk", self._bulk)
        r.add_post("/{index}/_bulk", self._bulk)
        r.add_put("/{index}/_bulk", self._bulk)
        r.add_get("/_count", self._count)
        r.add_get("/{index}/_count", self._count)
        r.add_post("/_refresh", self._refresh)
        r.add_post("/{index}/_refresh", self._refresh)
        r.add_get("/_cat/indices", self._cat_indices)
        r.add_put("/{index}", self._create_index)
        r.add_get("/_fake/stats", self._stats)

    def response_headers(self) -> dict[str, str]:
        return {"X-Elastic-Product": "Elasticsearch"}

    def not_found(self, request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
        uri, method = request.path_qs, request.method
        if exc.status == 405:
            allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
            body = {"error": f"Incorrect HTTP method for uri [{uri}] and method [{method}], allowed: [{allowed}]",
                    "status": 405}
            return web.json_response(body, status=405, dumps=_dumps)
        body = {"error": f"no handler found for uri [{uri}] and method [{method}]"}
        return web.json_response(body, status=400, dumps=_dumps)

    @web.middleware
    async def _guard_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """What ES checks before any handler: body size (413), content type (406), then auth (401)."""
        if request.content_length is not None and request.content_length > self.max_content_length:
            return web.Response(status=413)  # Netty answers with an empty body
        if request.body_exists and (error := self._content_type_error(request)):
            return web.json_response({"error": error, "status": 406}, status=406, dumps=_dumps)
        if (self._basic or self._api_key) and (denied := self._auth_error(request)):
            return denied
        return await handler(request)

    def _content_type_error(self, request: web.Request) -> str | None:
        header = request.headers.get("Content-Type")
        if header is None:
            return "Content-Type header is missing"
        mime, _, params = header.partition(";")
        mime = mime.strip().lower()
        if mime in BULK_CONTENT_TYPES:
            return None
        if mime in COMPAT_CONTENT_TYPES and re.search(r"compatible-with\s*=\s*[78]\b", params):
            return None
        return f"Content-Type header [{header}] is not supported"

    def _auth_error(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode()
        except ValueError:
            decoded = None
        scheme = scheme.lower()
        if scheme == "basic" and self._basic and decoded == ":".join(self._basic):
            return None
        if scheme == "apikey" and self._api_key and decoded == self._api_key:
            return None
        if not header:
            reason = f"missing authentication credentials for REST request [{request.path_qs}]"
        elif scheme == "basic" and decoded:
            reason = f"unable to authenticate user [{decoded.partition(':')[0]}] for REST request [{request.path_qs}]"
        else:
            reason = "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
        body = es_error("security_exception", reason, 401, header={"WWW-Authenticate": list(WWW_AUTHENTICATE)})
        response = web.json_response(body, status=401, dumps=_dumps)
        for value in WWW_AUTHENTICATE:
            response.headers.add("WWW-Authenticate", value)
        return response

    async def _banner(self, request: web.Request) -> web.Response:
        body = {
            "name": "fake-es-node-1",
            "cluster_name": "fake-es",
            "cluster_uuid": "fake-cluster-uuid-000001",
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "0000000000000000000000000000000000000000",
                "build_date": "2024-08-05T10:05:34.233336849Z",
                "build_snapshot": False,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        }
        return web.json_response(body, dumps=_dumps)

    async def _stats(self, request: web.Request) -> web.Response:
        """Not an ES API: counters for benchmarks that run this fake in another process."""
        bulks = self.bulk_requests
        body = {"requests": len(self.requests), "bulk_requests": len(bulks), "documents": self.count(),
                "raw_bytes": sum(r.raw_size for r in bulks), "decoded_bytes": sum(r.decoded_size for r in bulks)}
        return web.json_response(body, dumps=_dumps)

    async def _bulk(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        rec = request[RECORD]
        try:
            raw = await read_limited(request, self.max_content_length)
            rec.raw_size = len(raw)
            failure = self.take_failure(request)
            if failure is not None:
                return self._scripted_response(failure)
            body = self._decode(raw, request.headers.get("Content-Encoding"))
            rec.decoded_size = len(body)
            if self.record_bodies:
                rec.lines = _decode_lines(body)
            if self._answers:
                status, answer, content_type = self._answers.popleft()
                return web.Response(body=answer, status=status, content_type=content_type)
            actions = self._parse(body, request.match_info.get("index"))
            rec.entries = len(actions)
            items = self._execute(actions, request.query)
        except BodyError as e:
            if e.kind == "too_large":
                return web.Response(status=413)
            return self._error(RequestError.of("illegal_argument_exception", f"failed to decompress request body: {e.detail}"))
        except RequestError as e:
            return self._error(e)
        errors = any("error" in next(iter(item.values())) for item in items)
        body_out = {"took": int((time.monotonic() - started) * 1000), "errors": errors, "items": items}
        if filter_path := request.query.get("filter_path"):
            body_out = apply_filter_path(body_out, filter_path)
        return web.json_response(body_out, dumps=_dumps)

    def _decode(self, raw: bytes, encoding: str | None) -> bytes:
        try:
            return decode_body(raw, encoding, self.max_content_length, ENCODINGS)
        except BodyError as e:
            if e.kind != "unsupported_encoding":
                raise
            return raw  # ES leaves an encoding it does not know (zstd, br) alone: the JSON parser gets the bytes

    def _scripted_response(self, failure: Any) -> web.Response:
        etype, reason = WHOLE_REQUEST_ERRORS.get(failure.status, ("exception", f"scripted failure {failure.status}"))
        response = web.json_response(es_error(etype, reason, failure.status), status=failure.status, dumps=_dumps)
        if failure.retry_after is not None:
            response.headers["Retry-After"] = f"{failure.retry_after:g}"
        return response

    def _error(self, e: RequestError) -> web.Response:
        return web.json_response(e.body, status=e.status, dumps=_dumps)

    async def _count(self, request: web.Request) -> web.Response:
        name = request.match_info.get("index")
        if name is not None and not any(c in name for c in "*,") and not self._matching(name):
            return self._error(_no_such_index(name))
        body = {"count": self.count(name), "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}
        return web.json_response(body, dumps=_dumps)

    async def _refresh(self, request: web.Request) -> web.Response:
        name = request.match_info.get("index")
        if name is not None and not any(c in name for c in "*,") and not self._matching(name):
            return self._error(_no_such_index(name))
        return web.json_response({"_shards": SHARDS}, dumps=_dumps)

    async def _cat_indices(self, request: web.Request) -> web.Response:
        rows = [{"health": "yellow", "status": "open", "index": idx.name, "uuid": idx.uuid, "pri": "1", "rep": "1",
                 "docs.count": str(len(idx.docs)), "docs.deleted": "0"} for idx in self._indices.values()]
        if request.query.get("format") == "json":
            return web.json_response(rows, dumps=_dumps)
        text = "".join(f"{r['health']} {r['status']} {r['index']} {r['uuid']} 1 1 {r['docs.count']} 0\n" for r in rows)
        return web.Response(text=text)

    async def _create_index(self, request: web.Request) -> web.Response:
        name = request.match_info["index"]
        if (problem := _index_name_problem(name)) is not None:
            return self._error(RequestError.of("invalid_index_name_exception", problem))
        if name in self._indices:
            idx = self._indices[name]
            reason = f"index [{name}/{idx.uuid}] already exists"
            return self._error(RequestError(400, es_error("resource_already_exists_exception", reason, 400,
                                                          index_uuid=idx.uuid, index=name)))
        raw = await request.read()
        try:
            spec = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as e:
            return self._error(RequestError.of("x_content_parse_exception", f"[1:1] {e}"))
        idx = self._create(name)
        mappings = spec.get("mappings", {}) if isinstance(spec, dict) else {}
        idx.mapping.update(_flatten_properties(mappings.get("properties", {})))
        idx.strict = idx.strict or mappings.get("dynamic") in ("strict", "false_strict")
        return web.json_response({"acknowledged": True, "shards_acknowledged": True, "index": name}, dumps=_dumps)

    # -- bulk parsing ----------------------------------------------------------------------------

    def _parse(self, body: bytes, path_index: str | None) -> list[Action]:
        """NDJSON to actions, raising RequestError for what ES rejects as a whole."""
        if not body:
            raise RequestError.of("parse_exception", "request body is required")
        actions: list[Action] = []
        lines = body.split(b"\n")
        terminated = lines.pop() == b""  # the text after the last newline
        line_no, i = 0, 0
        while i < len(lines):
            raw = lines[i].rstrip(b"\r")
            line_no, i = line_no + 1, i + 1
            if not raw.strip():
                continue
            action = self._parse_action(raw, line_no, path_index)
            if action.op != "delete":
                if i >= len(lines):
                    break  # the source line is missing: ES drops the action
                action.source_line = lines[i].rstrip(b"\r")
                line_no, i = line_no + 1, i + 1
                if action.op == "update":
                    action.update = _parse_update(action.source_line)
            actions.append(action)
        if not terminated:
            raise RequestError.of("illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
        _validate(actions)
        return actions

    def _parse_action(self, raw: bytes, line: int, path_index: str | None) -> Action:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise _parse_error(raw, e) from None
        malformed = f"Malformed action/metadata line [{line}], "
        if not isinstance(parsed, dict):
            raise RequestError.of("illegal_argument_exception", f"{malformed}expected START_OBJECT but found [{token_name(parsed)}]")
        if not parsed:
            raise RequestError.of("illegal_argument_exception", f"{malformed}expected FIELD_NAME but found [END_OBJECT]")
        op, meta = next(iter(parsed.items()))
        if op not in ACTIONS:
            reason = f"{malformed}expected field [create], [delete], [index] or [update] but found [{op}]"
            raise RequestError.of("illegal_argument_exception", reason)
        if not isinstance(meta, dict):
            raise RequestError.of("illegal_argument_exception", f"{malformed}expected START_OBJECT but found [{token_name(meta)}]")
        if len(parsed) > 1:
            raise RequestError.of("illegal_argument_exception", f"{malformed}expected END_OBJECT but found [FIELD_NAME]")
        for key, value in meta.items():
            if key not in ACTION_PARAMS:
                raise RequestError.of("illegal_argument_exception", f"Action/metadata line [{line}] contains an unknown parameter [{key}]")
            if isinstance(value, dict | list) and key not in ("_source", "dynamic_templates"):
                reason = f"{malformed}expected a simple value for field [{key}] but found [{token_name(value)}]"
                raise RequestError.of("illegal_argument_exception", reason)
        if op == "index" and str(meta.get("op_type", "")).lower() == "create":
            op = "create"
        index = meta.get("_index", path_index)
        return Action(op=op, line=line, meta=meta, index="" if index is None else str(index))

    # -- bulk execution --------------------------------------------------------------------------

    def _execute(self, actions: list[Action], query: Any) -> list[dict[str, Any]]:
        require_alias = query.get("require_alias") in ("", "true")
        return [self._execute_one(a, require_alias) for a in actions]

    def _execute_one(self, action: Action, require_alias: bool) -> dict[str, Any]:
        doc_id = action.meta.get("_id")
        doc_id = None if doc_id is None else str(doc_id)
        target = action.index
        try:
            idx = self._resolve(action, require_alias)
            target = idx.name
            if doc_id is None:
                doc_id = new_id()
            self._check_rejections(action, idx)  # indexing pressure rejects before the document is parsed
            source = self._check_source(action, idx, doc_id)
            return self._apply(action, idx, doc_id, source)
        except ItemError as e:
            return {action.op: {"_index": target, "_id": doc_id, "status": e.status, "error": e.error}}

    def _resolve(self, action: Action, require_alias: bool) -> Index:
        name = action.index
        if (problem := _index_name_problem(name)) is not None:
            raise ItemError(400, "invalid_index_name_exception", problem, index_uuid="_na_", index=name)
        alias_required = require_alias or action.meta.get("require_alias") in (True, "true")
        if alias_required and name not in self.aliases:
            reason = f"no such index [{name}] and [require_alias] request flag is [true] and [{name}] is not an alias"
            raise ItemError(404, "index_not_found_exception", reason, index_uuid="_na_", index=name)
        name = self.aliases.get(name, name)
        stream = self._data_stream_name(name)
        if stream is not None:
            if action.op != "create":
                raise ItemError(400, "illegal_argument_exception", "only write ops with an op_type of create are allowed in data streams")
            return self._backing_index(stream)
        if name not in self._indices and action.op == "delete":  # ES never creates an index to delete from
            raise ItemError(404, "index_not_found_exception", f"no such index [{name}]", **{
                "resource.type": "index_expression", "resource.id": name, "index_uuid": "_na_", "index": name})
        if name not in self._indices and not self.auto_create_index:
            reason = f"no such index [{name}] and [action.auto_create_index] is [false]"
            raise ItemError(404, "index_not_found_exception", reason, index_uuid="_na_", index=name)
        return self._indices.get(name) or self._create(name)

    def _data_stream_name(self, name: str) -> str | None:
        for idx in self._indices.values():
            if idx.data_stream == name:
                return name
        if name in self._indices:
            return None
        return name if any(fnmatch.fnmatchcase(name, p) for p in self.data_stream_patterns) else None

    def _backing_index(self, stream: str) -> Index:
        for idx in self._indices.values():
            if idx.data_stream == stream:
                return idx
        name = f".ds-{stream}-{datetime.now(UTC):%Y.%m.%d}-000001"
        idx = self._create(name, data_stream=stream)
        idx.mapping.setdefault("@timestamp", "date")
        return idx

    def _create(self, name: str, data_stream: str | None = None) -> Index:
        idx = Index(name=name, data_stream=data_stream)
        for pattern, fields, strict in self._templates:
            if fnmatch.fnmatchcase(data_stream or name, pattern):
                idx.mapping.update(fields)
                idx.strict = idx.strict or strict
        self._indices[name] = idx
        return idx

    def _check_source(self, action: Action, idx: Index, doc_id: str) -> dict[str, Any] | None:
        """Parse and validate the document an index/create carries (per-item errors)."""
        if action.op not in ("index", "create"):
            return None
        raw = action.source_line or b""
        try:
            source = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ItemError(400, "document_parsing_exception", f"[1:{e.pos + 1}] failed to parse: {e.msg}",
                            caused_by={"type": "x_content_parse_exception", "reason": f"[1:{e.pos + 1}] {e.msg}"}) from None
        if not isinstance(source, dict):
            raise ItemError(400, "document_parsing_exception", "[1:1] failed to parse: Malformed content, must start with an object")
        if idx.data_stream and "@timestamp" not in source:
            reason = "data stream timestamp field [@timestamp] is missing"
            raise ItemError(400, "document_parsing_exception", f"[1:{len(raw)}] failed to parse: {reason}",
                            caused_by={"type": "illegal_argument_exception", "reason": reason})
        check_mapping(source, idx, doc_id, raw)
        return source

    def _check_rejections(self, action: Action, idx: Index) -> None:
        if not self._rejections:
            return
        source = None
        if action.op in ("index", "create"):
            try:
                source = orjson.loads(action.source_line or b"")
            except orjson.JSONDecodeError:
                source = None
        for rule in self._rejections:
            if rule.matches(action.meta, source):
                etype, reason = ITEM_ERRORS.get(rule.status, ("exception", f"scripted item failure {rule.status}"))
                raise ItemError(rule.status, etype, reason.format(index=idx.name))

    def _apply(self, action: Action, idx: Index, doc_id: str, source: dict[str, Any] | None) -> dict[str, Any]:
        self._check_seq_no(action, idx, doc_id)
        existing = idx.docs.get(doc_id)
        if action.op == "create" and existing is not None:
            reason = f"[{doc_id}]: version conflict, document already exists (current version [{existing.version}])"
            raise ItemError(409, "version_conflict_engine_exception", reason, index_uuid=idx.uuid, shard="0", index=idx.name)
        if action.op == "delete":
            return self._delete(idx, doc_id)
        if action.op == "update":
            return self._update(action, idx, doc_id)
        assert source is not None
        return self._write(action.op, idx, doc_id, source)

    def _check_seq_no(self, action: Action, idx: Index, doc_id: str) -> None:
        want_seq, want_term = action.meta.get("if_seq_no"), action.meta.get("if_primary_term")
        if want_seq is None and want_term is None:
            return
        doc = idx.docs.get(doc_id)
        if doc is None or int(want_seq if want_seq is not None else -2) != doc.seq_no or int(want_term or 1) != 1:
            current = f"current document has seqNo [{doc.seq_no}] and primary term [1]" if doc else "document does not exist"
            reason = f"[{doc_id}]: version conflict, required seqNo [{want_seq}], primary term [{want_term}]. {current}"
            raise ItemError(409, "version_conflict_engine_exception", reason, index_uuid=idx.uuid, shard="0", index=idx.name)

    def _write(self, op: str, idx: Index, doc_id: str, source: dict[str, Any]) -> dict[str, Any]:
        existed = doc_id in idx.docs
        version = idx.versions.get(doc_id, 0) + 1 if existed else 1
        seq_no = idx.next_seq()
        idx.versions[doc_id] = version
        self._order += 1
        idx.docs[doc_id] = Doc(source if self.record_bodies else {}, version, seq_no, self._order)
        if self.dynamic_mapping:
            learn_mapping(source, idx)
        status, result = (200, "updated") if existed else (201, "created")
        return _ok(op, idx.name, doc_id, version, result, seq_no, status)

    def _delete(self, idx: Index, doc_id: str) -> dict[str, Any]:
        existing = idx.docs.pop(doc_id, None)
        version = idx.versions.get(doc_id, 0) + 1
        idx.versions[doc_id] = version
        seq_no = idx.next_seq()
        if existing is None:
            return _ok("delete", idx.name, doc_id, version, "not_found", seq_no, 404)
        return _ok("delete", idx.name, doc_id, version, "deleted", seq_no, 200)

    def _update(self, action: Action, idx: Index, doc_id: str) -> dict[str, Any]:
        spec = action.update or {}
        existing = idx.docs.get(doc_id)
        if existing is None:
            upsert = spec.get("doc") if spec.get("doc_as_upsert") else spec.get("upsert")
            if not isinstance(upsert, dict):
                raise ItemError(404, "document_missing_exception", f"[{doc_id}]: document missing",
                                index_uuid=idx.uuid, shard="0", index=idx.name)
            return self._write("update", idx, doc_id, upsert)
        merged = _deep_merge(existing.source, spec.get("doc") or {})
        if merged == existing.source and spec.get("detect_noop", True):
            return {"update": {"_index": idx.name, "_id": doc_id, "_version": existing.version, "result": "noop",
                               "_shards": {"total": 0, "successful": 0, "failed": 0}, "_seq_no": idx.seq_no,
                               "_primary_term": 1, "status": 200}}
        check_mapping(merged, idx, doc_id, action.source_line or b"")
        return self._write("update", idx, doc_id, merged)


# -- helpers: responses, parsing, mappings ---------------------------------------------------------


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _ok(op: str, index: str, doc_id: str, version: int, result: str, seq_no: int, status: int) -> dict[str, Any]:
    return {op: {"_index": index, "_id": doc_id, "_version": version, "result": result, "_shards": dict(SHARDS),
                 "_seq_no": seq_no, "_primary_term": 1, "status": status}}


def _no_such_index(name: str) -> RequestError:
    return RequestError(404, es_error("index_not_found_exception", f"no such index [{name}]", 404,
                                      **{"resource.type": "index_or_alias", "resource.id": name,
                                         "index_uuid": "_na_", "index": name}))


def _decode_lines(body: bytes) -> list[Any]:
    out: list[Any] = []
    for line in body.split(b"\n"):
        if line.strip():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                out.append(line.decode("utf-8", "replace"))
    return out


def _parse_error(raw: bytes, e: orjson.JSONDecodeError) -> RequestError:
    """The x_content_parse_exception ES answers for an action line that is not JSON."""
    text = raw.decode("latin-1")
    stripped = text.lstrip()
    column = len(text) - len(stripped) + 1
    if stripped and stripped[0] not in '{["-0123456789tfn':
        first = stripped[0]
        reason = (f"[1:{column}] Unexpected character ('{first}' (code {ord(first)})): expected a valid value "
                  "(JSON String, Number, Array, Object or token 'null', 'true' or 'false')")
    else:
        reason = f"[1:{e.pos + 1}] {e.msg}"
    preview = text[:40].replace('"', '\\"')
    return RequestError.of("x_content_parse_exception", f'{reason}\n at [Source: (byte[])"{preview}"; line: 1, column: {column}]')


def _parse_update(raw: bytes) -> dict[str, Any]:
    """The update body is parsed with the request, so its errors fail the whole request."""
    try:
        spec = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _parse_error(raw, e) from None
    if not isinstance(spec, dict):
        raise RequestError.of("x_content_parse_exception", f"[1:1] [UpdateRequest] Expected START_OBJECT but was: {token_name(spec)}")
    known = {"doc", "upsert", "doc_as_upsert", "detect_noop", "script", "scripted_upsert", "_source"}
    for key in spec:
        if key not in known:
            raise RequestError.of("x_content_parse_exception", f"[1:2] [UpdateRequest] unknown field [{key}]")
    return spec


def _validate(actions: list[Action]) -> None:
    """ES's request validation: every problem, numbered, in one action_request_validation_exception."""
    problems = []
    if not actions:
        problems.append("no requests added")
    for a in actions:
        if not a.index:
            problems.append("index is missing")
        if a.op in ("update", "delete") and a.meta.get("_id") in (None, ""):
            problems.append("id is missing")
        if a.op == "update" and a.update is not None and not any(k in a.update for k in ("doc", "script", "upsert")):
            problems.append("script or doc is missing")
    if problems:
        reason = "Validation Failed: " + "".join(f"{n}: {p};" for n, p in enumerate(problems, 1))
        raise RequestError.of("action_request_validation_exception", reason)


def _index_name_problem(name: str) -> str | None:
    if name != name.lower():
        return f"Invalid index name [{name}], must be lowercase"
    if name.startswith(("_", "-", "+")):
        return f"Invalid index name [{name}], must not start with '_', '-', or '+'"
    if bad := sorted(set(name) & BAD_INDEX_CHARS):
        return f"Invalid index name [{name}], must not contain the following characters {bad}"
    if name in (".", ".."):
        return f"Invalid index name [{name}], must not be '.' or '..'"
    if len(name.encode()) > 255:
        return f"Invalid index name [{name}], index name is too long"
    return None


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _flatten_properties(props: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in props.items():
        path = f"{prefix}{name}"
        if isinstance(spec, dict) and "properties" in spec:
            out.update(_flatten_properties(spec["properties"], path + "."))
        elif isinstance(spec, dict):
            out[path] = str(spec.get("type", "object"))
    return out


def _walk(obj: dict[str, Any], mapping: dict[str, str], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf value) pairs; objects are yielded whole where the mapping has a leaf."""
    for key, value in obj.items():
        path = f"{prefix}{key}"
        yield from _walk_value(path, value, mapping)


def _walk_value(path: str, value: Any, mapping: dict[str, str]) -> Iterator[tuple[str, Any]]:
    if isinstance(value, list):
        for v in value:
            yield from _walk_value(path, v, mapping)
    elif isinstance(value, dict) and mapping.get(path, "object") in ("object", "nested", "flattened"):
        if mapping.get(path) == "flattened":
            return
        yield path, _OBJECT
        yield from _walk(value, mapping, path + ".")
    else:
        yield path, value


_OBJECT = object()  # marks an object node while walking a document


def check_mapping(source: dict[str, Any], idx: Index, doc_id: str, raw: bytes) -> None:
    """Raise the ItemError ES gives for a document that does not fit the index's mapping."""
    if not idx.mapping and not idx.strict:
        return
    for path, value in _walk(source, idx.mapping):
        ftype = idx.mapping.get(path)
        if ftype is None:
            if idx.strict and not _is_mapped_parent(path, idx.mapping):
                parent, _, leaf = path.rpartition(".")
                reason = f"[1:{_column(raw, leaf)}] mapping set to strict, dynamic introduction of [{leaf}] within [{parent or '_doc'}] is not allowed"
                raise ItemError(400, "strict_dynamic_mapping_exception", reason)
            continue
        if value is _OBJECT or value is None:
            continue
        if (cause := _type_problem(ftype, value, path)) is not None:
            preview = _preview(value)
            reason = (f"[1:{_column(raw, path.rpartition('.')[2])}] failed to parse field [{path}] of type [{ftype}] "
                      f"in document with id '{doc_id}'. Preview of field's value: '{preview}'")
            raise ItemError(400, "document_parsing_exception", reason, caused_by=cause)


def _is_mapped_parent(path: str, mapping: dict[str, str]) -> bool:
    return any(m.startswith(path + ".") for m in mapping)


def _column(raw: bytes, leaf: str) -> int:
    at = raw.find(f'"{leaf}"'.encode())
    return (at + len(leaf) + 4) if at >= 0 else 1


def _preview(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_preview(v)}" for k, v in value.items()) + "}"
    return str(value)


def _type_problem(ftype: str, value: Any, path: str) -> dict[str, Any] | None:
    """None if `value` fits `ftype` (with ES's default coercion), else the `caused_by` object."""
    if ftype in INTEGER_RANGES:
        return _integer_problem(ftype, value)
    if ftype in FLOAT_TYPES:
        if isinstance(value, bool) or isinstance(value, dict):
            return _not_numeric(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            return {"type": "number_format_exception", "reason": f'For input string: "{value}"'}
        return None if math.isfinite(number) else {"type": "illegal_argument_exception", "reason": f"[{ftype}] supports only finite values, but got [{value}]"}
    if ftype == "boolean":
        if isinstance(value, bool) or value in ("true", "false", ""):
            return None
        return {"type": "illegal_argument_exception", "reason": f"Failed to parse value [{_preview(value)}] as only [true] or [false] are allowed."}
    if ftype in TEXT_TYPES:
        if isinstance(value, dict):
            return {"type": "illegal_state_exception", "reason": "Can't get text on a START_OBJECT at 1:1"}
        return None
    if ftype in ("date", "date_nanos"):
        return None if _is_date(value) else {
            "type": "illegal_argument_exception",
            "reason": f"failed to parse date field [{_preview(value)}] with format [strict_date_optional_time||epoch_millis]"}
    return None


def _integer_problem(ftype: str, value: Any) -> dict[str, Any] | None:
    low, high = INTEGER_RANGES[ftype]
    if isinstance(value, bool) or isinstance(value, dict):
        return _not_numeric(value)
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return {"type": "illegal_argument_exception", "reason": f"[{ftype}] supports only finite values, but got [{value}]"}
        number = Decimal(value)
    else:
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return {"type": "illegal_argument_exception", "reason": f'For input string: "{value}"'}
        if not number.is_finite():
            return {"type": "illegal_argument_exception", "reason": f'For input string: "{value}"'}
    if not low <= int(number) <= high:
        return {"type": "illegal_argument_exception", "reason": f"Value [{value}] is out of range for {'a long' if ftype == 'long' else 'an ' + ftype}"}
    return None


def _not_numeric(value: Any) -> dict[str, Any]:
    token = token_name(value)
    return {"type": "x_content_parse_exception", "reason": f"Current token ({token}) not numeric, can not use numeric value accessors"}


def _is_date(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if not isinstance(value, str):
        return False
    if value.isdigit():
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def learn_mapping(source: dict[str, Any], idx: Index) -> None:
    """ES's dynamic mapping: the first value seen for a new field fixes its type."""
    for path, value in _walk(source, idx.mapping):
        if path in idx.mapping or value is None:
            continue
        if value is _OBJECT:
            idx.mapping[path] = "object"
        elif isinstance(value, bool):
            idx.mapping[path] = "boolean"
        elif isinstance(value, int):
            idx.mapping[path] = "long"
        elif isinstance(value, float):
            idx.mapping[path] = "float"
        elif isinstance(value, str):
            idx.mapping[path] = "date" if _looks_like_date(value) else "text"


def _looks_like_date(value: str) -> bool:
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?", value))


def apply_filter_path(body: Any, filter_path: str) -> Any:
    """ES's `filter_path` response filtering (`*` and `**` wildcards, `-` exclusions), dropping empties."""
    includes = [p.split(".") for p in filter_path.split(",") if p and not p.startswith("-")]
    excludes = [p[1:].split(".") for p in filter_path.split(",") if p.startswith("-")]
    out = _filter(body, includes) if includes else body
    for ex in excludes:
        out = _exclude(out, ex)
    return out if out is not None else {}


def _filter(node: Any, patterns: list[list[str]]) -> Any:
    if any(not p for p in patterns):
        return node
    if isinstance(node, list):
        kept = [_filter(v, patterns) for v in node]
        kept = [v for v in kept if v is not None]
        return kept or None
    if not isinstance(node, dict):
        return None
    out = {}
    for key, value in node.items():
        rest = [r for p in patterns for r in _advance(p, key)]
        if rest:
            sub = _filter(value, rest)
            if sub is not None and sub != {}:
                out[key] = sub
    return out or None


def _advance(pattern: list[str], key: str) -> list[list[str]]:
    head, tail = pattern[0], pattern[1:]
    if head == "**":
        return [pattern, *(_advance(tail, key) if tail else [[]])]
    return [tail] if fnmatch.fnmatchcase(key, head) else []


def _exclude(node: Any, pattern: list[str]) -> Any:
    if isinstance(node, list):
        return [_exclude(v, pattern) for v in node]
    if not isinstance(node, dict) or not pattern:
        return node
    head, tail = pattern[0], pattern[1:]
    out = {}
    for key, value in node.items():
        if fnmatch.fnmatchcase(key, head):
            if tail:
                out[key] = _exclude(value, tail)
        else:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Elasticsearch 8 _bulk endpoint")
    parser.add_argument("--data-stream", action="append", default=[], help="glob of data stream names")
    parser.add_argument("--basic-auth", help="user:password to require")
    parser.add_argument("--api-key", help="id:key to require")
    parser.add_argument("--max-content-length", type=int, default=100 * 1024 * 1024)
    parser.add_argument("--no-bodies", action="store_true", help="keep neither request lines nor sources")

    def build(args: argparse.Namespace) -> FakeHTTPServer:
        es = FakeElasticsearch(host=args.host, port=args.port, latency_ms=args.latency_ms,
                               data_streams=args.data_stream, max_content_length=args.max_content_length,
                               record_bodies=not args.no_bodies)
        if args.basic_auth or args.api_key:
            user, _, password = (args.basic_auth or "").partition(":")
            es.require_auth(basic=(user, password) if args.basic_auth else None, api_key=args.api_key)
        return es

    serve_main(build, parser)


if __name__ == "__main__":
    main()
