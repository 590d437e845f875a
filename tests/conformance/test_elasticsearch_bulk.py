"""Conformance: what the elasticsearch sink does with each item of a `_bulk` answer, from the upstream suites.

Each case runs the sink against the ES fake, which answers the first `_bulk` request with the case's exact body
(and stores nothing for it), then behaves as Elasticsearch does. So, per document of that first request:

- delivered: acknowledged on that answer, sent no more;
- retry: sent again (the fake stores it on the next request);
- dead: written to the dead letter with Elasticsearch's error type as the reason.

Whatever the answer, the agent stays up and every document ends acknowledged (committed) exactly when it is in
Elasticsearch or in the dead letter. Sources (each case's id names the file and the test):

- Beats: elastic/beats ``libbeat/outputs/elasticsearch/client_test.go``
- Vector: vectordotdev/vector ``src/sinks/elasticsearch/retry.rs`` (its tests)
- Logstash: logstash-plugins/logstash-output-elasticsearch ``lib/logstash/plugin_mixins/elasticsearch/common.rb``
  (``DOC_SUCCESS_CODES = [200, 201]``, ``DOC_DLQ_CODES = [400, 404]``, ``DOC_CONFLICT_CODE = 409``, 429 retried)
  and its ``spec/unit/outputs/elasticsearch_spec.rb``
- issue 15: the cases it reproduced (each rule it states)

Where the agent's rule differs on purpose from an upstream client, the id says so.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from components import feed
from fakes.elasticsearch import FakeElasticsearch
from helpers import pipeline

from agent.core.batch import Batch, Kind
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology

BEATS = "beats client_test.go"
VECTOR = "vector elasticsearch/retry.rs"
LOGSTASH = "logstash common.rb"

MAPPER_ERROR = {
    "root_cause": [{"type": "mapper_parsing_exception",
                    "reason": "failed to parse field [bar] of type [long] in document with id '1'. "
                              "Preview of field's value: 'bar1'"}],
    "type": "mapper_parsing_exception",
    "reason": "failed to parse field [bar] of type [long] in document with id '1'. Preview of field's value: 'bar1'",
    "caused_by": {"type": "illegal_argument_exception", "reason": 'For input string: "bar1"'},
}
PIPELINE_ERROR = {
    "type": "exception",
    "reason": "java.lang.IllegalArgumentException: java.lang.IllegalArgumentException: field [fail_on_purpose] "
              "not present as part of path [fail_on_purpose]",
    "caused_by": {"type": "illegal_argument_exception",
                  "reason": "field [fail_on_purpose] not present as part of path [fail_on_purpose]"},
    "header": {"processor_type": "lowercase"},
}
REJECTED = {"type": "es_rejected_execution_exception",
            "reason": "rejected execution of primary operation [shard_detail=[conf][0][P]]"}


def ok(op: str, status: int = 201) -> dict[str, Any]:
    return {op: {"_index": "conf", "_id": "x", "status": status, "result": "created"}}


def failed(op: str, status: int, error: Any) -> dict[str, Any]:
    return {op: {"_index": "conf", "_id": "x", "status": status, "error": error}}


@dataclass
class Case:
    """A `_bulk` answer to a request of ``docs`` documents, and what must become of each document."""

    op: str  # "index" or "create" (data stream mode)
    answer: Any  # the exact body (a dict is sent as JSON)
    docs: int
    retry: list[int]
    dead: dict[int, str]  # index -> expected dead letter reason (the error type, or the text of a string error)


def items(op: str, *results: dict[str, Any], errors: bool | None = True) -> dict[str, Any]:
    body: dict[str, Any] = {"took": 3}
    if errors is not None:
        body["errors"] = errors
    body["items"] = list(results)
    return body


CASES = [
    pytest.param(Case("create", {"items": [{"create": {"status": 200}}] * 100}, 100, [], {}),
                 id=f"{BEATS} TestCollectPublishFailsNone (no errors key, 100 x 200)"),
    pytest.param(Case("create", {"items": [{"create": {"status": 200}}, {"create": {"status": 429, "error": "ups"}},
                                           {"create": {"status": 200}}]}, 3, [1], {}),
                 id=f"{BEATS} TestCollectPublishFailMiddle (429 with a string error, no errors key)"),
    pytest.param(Case("create", {"items": [{"create": {"status": 429, "error": "ups"}}] * 3}, 3, [0, 1, 2], {}),
                 id=f"{BEATS} TestCollectPublishFailAll"),
    pytest.param(Case("create", {"items": [{"create": {"status": 200}}, failed("create", 400, MAPPER_ERROR),
                                           {"create": {"status": 200}}]}, 3, [], {1: "mapper_parsing_exception"}),
                 id=f"{BEATS} TestCollectPublishFailDeadLetterQueue (400 mapper_parsing_exception)"),
    pytest.param(Case("index", items("index", failed("index", 500, PIPELINE_ERROR)), 1, [0], {}),
                 id=f"{BEATS} TestCollectPipelinePublishFail (500 exception from an ingest pipeline)"),
    pytest.param(Case("create", {"items": [{"create": {"status": 400, "error": "test error"}}]}, 1, [],
                      {0: "test error"}),
                 id=f"{BEATS} TestES1StyleErrorStatus (a string error, Elasticsearch 1.x)"),
    pytest.param(Case("create", {"items": [{"create": {"status": 400, "error": {"reason": "test_error"}}}]}, 1, [],
                      {0: "unknown"}),
                 id=f"{BEATS} TestES2StyleErrorStatus (an error without a type)"),
    pytest.param(Case("create", {"items": [{"create": {"status": 400, "error": {
        "reason": "test_error", "transient": False, "extra": None}}}]}, 1, [], {0: "unknown"}),
                 id=f"{BEATS} TestES2StyleExtendedErrorStatus"),
    pytest.param(Case("index", {"items": [{"index": {}}] * 3}, 3, [0, 1, 2], {}),
                 id=f"{BEATS} TestClientWithHeaders items without status (agent: not accepted, sent again)"),
    pytest.param(Case("index", items("index", failed("index", 400, {
        "type": "illegal_argument_exception",
        "reason": "mapper [message] of different type, current_type [long], merged_type [text]"})), 1, [],
                      {0: "illegal_argument_exception"}),
                 id=f"{VECTOR} handles_error_response (400 illegal_argument_exception)"),
    pytest.param(Case("create", items("create", failed("create", 400, {
        "type": "mapper_parsing_exception",
        "reason": "object mapping for [host] tried to parse field [host] as object, but found a concrete value"})),
                      1, [], {0: "mapper_parsing_exception"}),
                 id=f"{VECTOR} get_create_error_reason (400 mapper_parsing_exception)"),
    pytest.param(Case("index", items("index", ok("index"), ok("index", 200)), 2, [], {}),
                 id=f"{LOGSTASH} DOC_SUCCESS_CODES 200 and 201"),
    pytest.param(Case("index", items("index", ok("index"), failed("index", 400, {
        "type": "document_parsing_exception", "reason": "[1:8] failed to parse field [n] of type [long]"})), 2, [],
                      {1: "document_parsing_exception"}),
                 id=f"{LOGSTASH} DOC_DLQ_CODES 400 (document_parsing_exception, Elasticsearch 8)"),
    pytest.param(Case("index", items("index", failed("index", 404, {
        "type": "index_not_found_exception", "reason": "no such index [conf]", "index": "conf"}), ok("index")),
                      2, [], {0: "index_not_found_exception"}),
                 id=f"{LOGSTASH} DOC_DLQ_CODES 404 (index_not_found_exception)"),
    pytest.param(Case("create", items("create", ok("create"), failed("create", 409, {
        "type": "version_conflict_engine_exception", "reason": "[x]: version conflict, document already exists"})),
                      2, [], {}),
                 id=f"{LOGSTASH} DOC_CONFLICT_CODE 409 on create (already written: delivered)"),
    pytest.param(Case("index", items("index", ok("index"), failed("index", 409, {
        "type": "version_conflict_engine_exception", "reason": "[x]: version conflict"})),
                      2, [], {1: "version_conflict_engine_exception"}),
                 id=f"{LOGSTASH} DOC_CONFLICT_CODE 409 on index (agent: dead letter, not dropped)"),
    pytest.param(Case("index", items("index", failed("index", 429, REJECTED), ok("index")), 2, [0], {}),
                 id=f"{LOGSTASH} elasticsearch_spec.rb 429 es_rejected_execution_exception is retried"),
    pytest.param(Case("index", items("index", ok("index"), failed("index", 503, {
        "type": "unavailable_shards_exception", "reason": "[conf][0] primary shard is not active"})), 2, [1], {}),
                 id=f"{LOGSTASH} 5xx items are retried (503 unavailable_shards_exception)"),
    pytest.param(Case("index", items("index", failed("index", 500, {
        "type": "json_parse_exception", "reason": "Unexpected character ('}' (code 125))"}), ok("index")),
                      2, [], {0: "json_parse_exception"}),
                 id="issue 15.3: 500 json_parse_exception can never succeed (dead letter)"),
    pytest.param(Case("index", items("index", ok("index"), ok("index"), errors=False), 2, [], {}),
                 id="issue 15.2: errors false"),
    pytest.param(Case("index", items("index", ok("index"), failed("index", 429, REJECTED),
                                     failed("index", 400, MAPPER_ERROR), errors=None), 3, [1],
                      {2: "mapper_parsing_exception"}),
                 id="issue 15.2: no errors key, every item read"),
    pytest.param(Case("index", {"items": [{"index": {}}, {"index": {}}]}, 3, [0, 1, 2], {}),
                 id="issue 15.2: filter_path-shaped answer, 2 items without status for 3 documents"),
    pytest.param(Case("index", items("index", ok("index"), ok("index"), ok("index"), ok("index")), 3, [0, 1, 2], {}),
                 id="issue 15.1: more items than documents (whole request sent again, as Logstash does)"),
    pytest.param(Case("index", items("index", ok("index"), ok("index")), 3, [0, 1, 2], {}),
                 id="issue 15.1: fewer items than documents (whole request sent again)"),
]


def sink_pipeline(es: FakeElasticsearch, case: Case, dead: Path) -> str:
    events = [{"message": f"doc{i}"} for i in range(case.docs)]
    source = feed([Batch(events, Kind.LOGS, 20 * case.docs)])
    mode = ', mode: data_stream, index: "logs-conf-default"' if case.op == "create" else ', index: "conf"'
    return f"""
sources:
  feed: {{type: test_feed, name: {source}}}
sinks:
  es: {{type: elasticsearch, inputs: [feed], endpoints: ["{es.url}"], id: none {mode},
        batch: {{max_events: {case.docs}, timeout: 50ms}}, dead_letter: {{path: "{dead}"}},
        request: {{retry_initial_backoff: 10ms, retry_max_backoff: 50ms}}}}
"""


@pytest.mark.parametrize("case", CASES)
async def test_bulk_answer(case: Case, tmp_path: Path) -> None:
    dead = tmp_path / "dead.ndjson"
    async with FakeElasticsearch() as es:
        es.add_data_stream("logs-conf-*")
        es.answer_next_bulk(case.answer)
        topo = Topology(pipeline(sink_pipeline(es, case, dead), tmp_path), StatsRegistry())
        assert await asyncio.wait_for(topo.run(), 20) == 0
        first, *later = es.bulk_requests
        stored = [doc["message"] for doc in es.sources()]
    sent = [line["message"] for line in first.lines if "message" in line]
    assert sent == [f"doc{i}" for i in range(case.docs)]
    resent = sorted({line["message"] for request in later for line in request.lines if "message" in line})
    assert resent == sorted(f"doc{i}" for i in case.retry)
    assert sorted(stored) == resent  # what was sent again is in Elasticsearch
    letters = [json.loads(line) for line in dead.read_text().splitlines()] if dead.exists() else []
    assert {entry["event"]["message"]: entry["reason"] for entry in letters} == {
        f"doc{i}": reason for i, reason in case.dead.items()}
    assert topo.nodes["feed"].stats.gauges["committed_events"] == case.docs
