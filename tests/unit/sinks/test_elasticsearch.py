"""The elasticsearch sink: pure encoding, per-item results, and whole runs against the ES fake."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from components import GateSink
from fakes.elasticsearch import FakeElasticsearch
from helpers import pipeline, wait_for

from agent.core.batch import Kind
from agent.delivery.http import InvalidResponse, Response
from agent.observe.stats import StatsRegistry
from agent.sinks.elasticsearch.encoder import IndexTemplate, bulk_body, document_id
from agent.sinks.elasticsearch.sink import bulk_outcome, item_outcome
from agent.topology.running import Topology


def pairs(body: bytes) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    lines = [orjson.loads(line) for line in body.splitlines()]
    return list(zip(lines[::2], lines[1::2], strict=True))


def test_index_names_come_from_the_event_time_and_fields() -> None:
    template = IndexTemplate("{{ kubernetes.namespace }}-logs-%Y.%m.%d")
    event = {"time": "2026-03-04T23:59:59.123456789Z", "kubernetes": {"namespace": "Prod"}}
    assert template.render(event) == "prod-logs-2026.03.04"
    assert IndexTemplate("mobius-%Y.%m.%d").render({"timestamp": 1_700_000_000_000}) == "mobius-2023.11.14"
    assert IndexTemplate("x-{{ missing }}").render({}) == "x-unknown"
    daily = IndexTemplate("mobius-%Y.%m.%d")
    key = daily.partition_key()
    for event in ({"time": "2026-03-04T23:59:59Z"}, {"time": "2026-03-05T00:00:01Z"}, {"timestamp": 0}, {}):
        assert key(event) == daily.render(event)


def test_bulk_body_sets_timestamp_ids_and_ends_with_a_newline() -> None:
    events = [{"message": "a", "time": "2026-01-01T00:00:00Z", "file": "/f.log", "inode": 7, "offset": 0},
              {"message": "b", "@timestamp": "2026-01-02T00:00:00Z", "file": "/f.log", "inode": 7, "offset": 42}]
    body = bulk_body(Kind.LOGS, events, "logs", op="index", id_mode="auto", routing=None, type_name=None)
    assert body.endswith(b"\n")
    (a_meta, a_doc), (b_meta, b_doc) = pairs(body)
    assert a_doc["@timestamp"] == "2026-01-01T00:00:00Z" and a_doc["message"] == "a"
    assert b_doc["@timestamp"] == "2026-01-02T00:00:00Z"
    assert a_meta["index"]["_id"] == document_id(events[0], "auto") != b_meta["index"]["_id"]
    assert document_id(dict(events[0]), "auto") == a_meta["index"]["_id"]  # deterministic
    assert document_id({"message": "no position"}, "auto") is None


def test_field_ids_routing_and_events_without_a_time() -> None:
    events = [{"message": "a", "uid": 'q"1', "tenant": "t1", "timestamp": "2026-01-03T00:00:00Z"},
              {"message": "b", "tenant": "t2"}]
    body = bulk_body(Kind.LOGS, events, "logs", op="index", id_mode="uid", routing="tenant", type_name=None)
    (a_meta, a_doc), (b_meta, b_doc) = pairs(body)
    assert a_meta == {"index": {"_index": "logs", "_id": 'q"1', "routing": "t1"}}
    assert b_meta == {"index": {"_index": "logs", "routing": "t2"}}
    assert a_doc["@timestamp"] == "2026-01-03T00:00:00Z" and b_doc["@timestamp"].endswith("Z")
    plain = bulk_body(Kind.LOGS, [{"message": "c", "uid": 7}], "logs", op="index", id_mode="uid", routing=None,
                      type_name=None)
    assert pairs(plain)[0][0] == {"index": {"_index": "logs", "_id": "7"}}


def test_a_stamp_not_from_a_text_time_is_spliced_and_leaves_the_index_alone() -> None:
    """Encoding must not change which index a later partitioning (a hand-back on reload) picks."""
    key = IndexTemplate("logs-%Y.%m.%d").partition_key()
    events = [{"time": 1531171074631, "msg": "pino"}, {"time": 1600000000, "timestamp": "2021-06-01T00:00:00Z"},
              {}, {"time": "2026-01-05T10:00:00Z"}]
    before = [key(e) for e in events]
    body = bulk_body(Kind.LOGS, events, "x", op="index", id_mode="none", routing=None, type_name=None)
    assert [key(e) for e in events] == before == ["logs-2018.07.09", "logs-2020.09.13", before[2], "logs-2026.01.05"]
    docs = [doc for _, doc in pairs(body)]
    assert docs[0]["@timestamp"].endswith("Z") and docs[0]["msg"] == "pino" and "@timestamp" not in events[0]
    assert docs[1]["@timestamp"] == "2021-06-01T00:00:00Z" and "@timestamp" not in events[1]
    assert set(docs[2]) == {"@timestamp"}
    assert docs[3]["@timestamp"] == events[3]["@timestamp"] == "2026-01-05T10:00:00Z"


def test_auto_ids_differ_for_a_new_file_under_the_same_path() -> None:
    line = {"file": "/var/log/app.log", "inode": 11, "offset": 0, "message": "server started"}
    assert document_id(line, "auto") == document_id(dict(line), "auto")
    assert document_id(line, "auto") != document_id({**line, "inode": 12}, "auto")  # renamed and recreated
    truncated = {**line, "message": "another first line"}  # copytruncate: same inode, new content
    assert document_id(line, "auto") != document_id(truncated, "auto")
    docker = {"file": "/c.log", "inode": 5, "offset": 0, "message": "x", "time": "2026-01-01T00:00:00.1Z"}
    assert document_id(docker, "auto") != document_id({**docker, "time": "2026-01-01T00:00:00.2Z"}, "auto")


def test_data_streams_use_create_and_raw_json_lines_are_spliced_not_reparsed() -> None:
    body = bulk_body(Kind.JSON_LINES, [b'{"log":"x"}', b"{}"], "logs-app", op="create", id_mode="none",
                     routing=None, type_name="_doc")
    (meta, doc), (_, empty) = pairs(body)
    assert meta == {"create": {"_index": "logs-app", "_type": "_doc"}}
    assert doc["log"] == "x" and "@timestamp" in doc and set(empty) == {"@timestamp"}


def test_item_results_split_into_retry_rejected_and_delivered() -> None:
    response = {"errors": True, "items": [
        {"create": {"status": 201}},
        {"create": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}},
        {"create": {"status": 400, "error": {"type": "document_parsing_exception", "reason": "bad n"}}},
        {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}},
        {"create": {"status": 503, "error": {"type": "unavailable_shards_exception", "reason": "no"}}},
    ]}
    outcome = item_outcome(response, "create", 5)
    assert outcome.retry == [1, 4]
    assert [(i, reason) for i, reason, _ in outcome.rejected] == [(2, "document_parsing_exception")]
    assert item_outcome({"errors": False, "items": [{"index": {"status": 201}}]}, "index", 1).retry == []


def answer(body: Any, content_type: str = "application/json; charset=UTF-8") -> Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(200, {"content-type": content_type}, raw)


def ok_items(n: int) -> list[dict[str, Any]]:
    return [{"index": {"_index": "i", "_id": str(k), "status": 201, "result": "created"}} for k in range(n)]


@pytest.mark.parametrize("response", [
    Response(200, {"content-type": "text/html"}, b"<html>proxy ok</html>"),
    answer(b'{"took":3,"errors":false,"items":[{"index":{"_index":"i","status":201}},{"ind'),  # cut short
    answer({"took": 1, "errors": False, "items": ok_items(2)}, "text/html"),  # a proxy's page, whatever it says
    answer([1, 2]),
    answer({"took": 1, "errors": True}),
], ids=["html", "truncated", "content_type", "not_an_object", "no_items"])
def test_a_bulk_answer_that_cannot_be_trusted_retries_the_whole_request(response: Response) -> None:
    """Issue 8.1: orjson.JSONDecodeError escaped send() and the driver's TaskGroup ended the agent."""
    with pytest.raises(InvalidResponse) as caught:
        bulk_outcome(response, 2, "index")
    assert caught.value.error_type == "invalid_response"


@pytest.mark.parametrize("items", [1, 3])
def test_an_item_count_that_differs_from_the_documents_retries_the_whole_request(items: int) -> None:
    """Issues 8.1 and 15.1: fewer items acknowledged the missing documents; more raised IndexError in the driver."""
    for errors in (False, True):
        with pytest.raises(InvalidResponse) as caught:
            bulk_outcome(answer({"took": 1, "errors": errors, "items": ok_items(items)}), 2, "index")
        assert caught.value.error_type == "item_count_mismatch"


def test_only_an_explicit_errors_false_may_skip_the_items() -> None:
    """Issue 15.2: a missing ``errors`` acknowledged 429 items; an item without a status was acknowledged."""
    throttled = {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}}
    refused = {"index": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "x"}}}
    outcome = bulk_outcome(answer({"took": 1, "items": [*ok_items(1), throttled, refused]}), 3, "index")
    assert outcome.retry == [1] and [i for i, _, _ in outcome.rejected] == [2]
    filtered = {"items": [{"index": {"_id": "a"}}, {"index": {"_id": "b", "status": 201}}, {"index": {}}]}
    assert bulk_outcome(answer(filtered), 3, "index").retry == [0, 2]  # a filter_path'd answer without statuses


def test_errors_false_with_failed_items_is_not_believed() -> None:
    items = [*ok_items(2), {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
             {"index": {"_index": "i", "result": "created"}}]
    assert bulk_outcome(answer({"took": 1, "errors": False, "items": items}), 4, "index").retry == [2, 3]
    assert bulk_outcome(answer({"took": 1, "errors": False, "items": ok_items(4)}), 4, "index").retry == []


@pytest.mark.parametrize("status", [0, 302, 600, "201"])
def test_an_unknown_item_status_is_not_accepted(status: Any) -> None:
    items = [*ok_items(1), {"index": {"status": status}}]
    assert bulk_outcome(answer({"took": 1, "errors": True, "items": items}), 2, "index").retry == [1]


def test_an_item_that_can_never_be_parsed_is_dead_lettered_even_with_a_500() -> None:
    """Issue 15.3: a 500 json_parse_exception was retried forever."""
    items = [{"index": {"status": 500, "error": {"type": "json_parse_exception", "reason": "Unexpected char"}}},
             {"index": {"status": 500, "error": {"type": "unavailable_shards_exception", "reason": "no"}}},
             {"index": {"status": 429, "error": {"type": "illegal_argument_exception", "reason": "?"}}}]
    outcome = item_outcome({"errors": True, "items": items}, "index", 3)
    assert [(i, reason) for i, reason, _ in outcome.rejected] == [(0, "json_parse_exception")]
    assert outcome.retry == [1, 2]


def es_pipeline(es: FakeElasticsearch, source: str, sink: str = "") -> str:
    return f"""
sources:
  gen: {source}
transforms:
  parsed: {{type: parse, inputs: [gen]}}
sinks:
  es: {{type: elasticsearch, inputs: [parsed], endpoints: ["{es.url}"], index: "agent-%Y.%m.%d",
        batch: {{max_events: 200, timeout: 50ms}}, request: {{retry_initial_backoff: 20ms, retry_max_backoff: 200ms}}
        {sink}}}
"""


async def run_to_end(text: str, tmp_path: Path) -> Topology:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 60) == 0
    return topo


async def test_documents_arrive_once_with_gzip_and_auth(tmp_path: Path) -> None:
    async with FakeElasticsearch() as es:
        es.require_auth(api_key="agent:s3cret")
        await run_to_end(es_pipeline(es, "{type: generate, format: json, count: 1000, batch_size: 100}",
                                     ', compression: gzip, api_key: "agent:s3cret"'), tmp_path)
        assert es.count() == 1000
        bulk = es.bulk_requests
        assert all(r.content_encoding == "gzip" and r.headers["content-type"] == "application/x-ndjson"
                   for r in bulk)
        assert max(r.entries for r in bulk) == 200
        docs = es.sources()
        assert all("@timestamp" in d and "service" in d for d in docs)
        assert es.indices() == [f"agent-{docs[0]['timestamp'][:10].replace('-', '.')}"]


async def test_the_timestamp_set_for_elasticsearch_does_not_reach_another_sink(tmp_path: Path) -> None:
    async with FakeElasticsearch() as es:
        text = es_pipeline(es, "{type: generate, format: json, count: 300, batch_size: 100}")
        text += "  held: {type: test_gate, inputs: [parsed]}\n"  # sees the same events, after ES has sent them
        topo = Topology(pipeline(text, tmp_path), StatsRegistry())
        run = asyncio.create_task(topo.run())
        await wait_for(lambda: es.count() == 300)
        gate = GateSink.instances["held"]
        gate.gate.set()
        assert await asyncio.wait_for(run, 30) == 0
        docs = es.sources()
    assert len(gate.events) == 300 and all("@timestamp" in d for d in docs)
    assert not any("@timestamp" in e for e in gate.events)  # type: ignore[operator]


async def test_a_partial_failure_storm_retries_items_once_and_dead_letters_the_rejected(tmp_path: Path) -> None:
    dead = tmp_path / "dead.ndjson"
    lines = ['{"n": 1, "k": "ok"}', '{"n": "x", "k": "bad"}', '{"n": 2, "k": "ok"}', '{"n": 3, "k": "ok"}']
    async with FakeElasticsearch() as es:
        es.set_mapping("agent-*", {"n": "long"})
        es.reject_items(every_nth=3, status=429, limit=200)
        topo = await run_to_end(es_pipeline(
            es, f"{{type: generate, format: json, count: 2000, batch_size: 100, lines: {json.dumps(lines)}}}",
            f', dead_letter: {{path: "{dead}"}}'), tmp_path)
        docs = es.sources()
    assert len(docs) == 1500 and all(d["k"] == "ok" for d in docs)
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(letters) == 500
    assert {entry["reason"] for entry in letters} == {"document_parsing_exception"}
    assert all(entry["event"]["n"] == "x" and entry["error"]["reason"] for entry in letters)
    stats = topo.nodes["es"].stats
    assert stats.discarded["rejected"] == 500 and stats.sent_events == 1500
    assert stats.errors[("partial_failure", "sending")] > 0
    assert topo.nodes["gen"].stats.gauges["committed_events"] == 2000


async def test_whole_request_429_and_5xx_are_retried(tmp_path: Path) -> None:
    async with FakeElasticsearch() as es:
        es.fail_next_requests(2, status=429, retry_after=0.1)
        es.fail_next_requests(2, status=503)
        topo = await run_to_end(es_pipeline(es, "{type: generate, format: json, count: 400, batch_size: 100}"),
                                tmp_path)
        assert es.count() == 400
    assert topo.nodes["es"].stats.retries >= 4


async def test_a_second_endpoint_takes_over_when_the_first_refuses(tmp_path: Path, free_port: int) -> None:
    async with FakeElasticsearch() as es:
        text = es_pipeline(es, "{type: generate, format: json, count: 600, batch_size: 100}").replace(
            f'endpoints: ["{es.url}"]', f'endpoints: ["http://127.0.0.1:{free_port}", "{es.url}"]')
        topo = await run_to_end(text, tmp_path)
        assert es.count() == 600
    assert topo.nodes["es"].stats.retries >= 1


async def test_an_outage_with_data_flowing_then_recovery_delivers_everything_once(tmp_path: Path) -> None:
    async with FakeElasticsearch() as es:
        text = es_pipeline(es, "{type: generate, format: json, rate: 2000, batch_size: 50}")
        topo = Topology(pipeline(text, tmp_path), StatsRegistry())
        run = asyncio.create_task(topo.run())
        await asyncio.sleep(0)
        await wait_for(lambda: es.count() > 500)
        await es.go_down()
        await asyncio.sleep(2.0)
        assert topo.nodes["es"].stats.retries > 0
        await es.come_back()
        await asyncio.sleep(1.0)
        topo.request_stop()
        assert await asyncio.wait_for(run, 30) == 0
        assert es.count() == topo.nodes["gen"].stats.sent_events


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_an_outage_of_minutes_loses_nothing(tmp_path: Path) -> None:
    outage = float(os.environ.get("ES_OUTAGE_SECONDS", "150"))
    async with FakeElasticsearch() as es:
        text = es_pipeline(es, "{type: generate, format: json, rate: 300, batch_size: 30}").replace(
            "retry_max_backoff: 200ms", "retry_max_backoff: 5s")
        topo = Topology(pipeline(text, tmp_path), StatsRegistry())
        run = asyncio.create_task(topo.run())
        await asyncio.sleep(0)
        await wait_for(lambda: es.count() > 300)
        await es.go_down()
        down_at = topo.nodes["gen"].stats.sent_events
        await asyncio.sleep(outage)
        assert topo.nodes["gen"].stats.sent_events > down_at + 100 * outage  # data kept flowing into the buffer
        await es.come_back()
        await wait_for(lambda: es.count() >= topo.nodes["gen"].stats.sent_events - 300, timeout=60)
        topo.request_stop()
        assert await asyncio.wait_for(run, 60) == 0
        assert es.count() == topo.nodes["gen"].stats.sent_events
        assert topo.nodes["gen"].stats.gauges["committed_events"] == es.count()


async def test_data_streams_pipelines_routing_and_ids_from_a_field(tmp_path: Path) -> None:
    lines = ['{"rid": "a1", "tenant": "t1"}', '{"rid": "a2", "tenant": "t2"}']
    async with FakeElasticsearch() as es:
        es.add_data_stream("logs-app-*")
        await run_to_end(es_pipeline(
            es, f"{{type: generate, format: json, count: 2, batch_size: 2, lines: {json.dumps(lines)}}}",
            ', mode: data_stream, id: rid, pipeline: geoip, routing: tenant').replace(
            'index: "agent-%Y.%m.%d"', 'index: "logs-app-default"'), tmp_path)
        docs = es.documents()
        bulk = es.bulk_requests
    assert sorted(d["_id"] for d in docs) == ["a1", "a2"]
    assert all("@timestamp" in d["_source"] for d in docs)
    assert bulk[0].query["pipeline"] == "geoip"
    actions = [line for line in bulk[0].lines if isinstance(line, dict) and "create" in line]
    assert [a["create"]["routing"] for a in actions] == ["t1", "t2"]


async def test_a_failing_startup_healthcheck_warns_and_delivery_goes_on(
        tmp_path: Path, free_port: int, caplog: pytest.LogCaptureFixture) -> None:
    async with FakeElasticsearch() as es:
        text = es_pipeline(es, "{type: generate, format: json, count: 10, batch_size: 10}").replace(
            f'endpoints: ["{es.url}"]', f'endpoints: ["http://127.0.0.1:{free_port}", "{es.url}"]')
        await run_to_end(text, tmp_path)
        assert es.count() == 10
    assert any(r.getMessage() == "healthcheck failed; starting anyway" for r in caplog.records)
