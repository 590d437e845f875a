"""The tail -> parse -> elasticsearch scenarios, against the minimal Elasticsearch peer."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.bench.peers import BulkReceiver, PeerError
from agent.bench.peers.lines import HOST
from agent.bench.scenarios.common import (
    BenchError,
    Meter,
    ProgressFn,
    Result,
    _pipeline,
    _progress,
    _receiver_count,
    _sink_stats,
    _stop_agent,
    _wait_until,
)
from agent.bench.scenarios.tail import _read_lines, _write_container_logs
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology

ES_INDEX = "bench-%Y.%m.%d"
ES_BATCH_EVENTS = 1000
ES_CONCURRENCY = 4
# the Docker wrapper's fields, tail's, and the app's parsed JSON
_PARSED_FIELDS = ("@timestamp", "time", "stream", "file", "inode", "offset", "kubernetes", "timestamp", "level",
                  "service", "trace_id", "message", "metadata")


def _check_bulk(name: str, expected: int, report: dict[str, Any], compression: str) -> list[str]:
    """What is wrong with the bulk receiver's final report (an empty list: every document exactly once)."""
    problems = []
    index = time.strftime(ES_INDEX, time.gmtime())
    if (report["documents"], report["actions"], report["distinct_ids"]) != (expected, expected, expected):
        problems.append(f"the receiver got {report['documents']} documents in {report['actions']} actions with "
                        f"{report['distinct_ids']} distinct _id values")
    if report["generated_ids"]:
        problems.append(f"{report['generated_ids']} actions without _id (id: auto should derive them)")
    if report["bad_documents"] or report["documents_without_timestamp"]:
        problems.append(f"{report['bad_documents']} documents not JSON objects, "
                        f"{report['documents_without_timestamp']} without @timestamp")
    if set(report["indices"]) - {index, time.strftime(ES_INDEX, time.gmtime(time.time() - 86400))}:
        problems.append(f"indices {report['indices']}, expected {index}")
    encodings = {"gzip" if compression == "gzip" else "identity"}
    if set(report["encodings"]) != encodings:
        problems.append(f"content encodings {report['encodings']}, expected {encodings}")
    sample = report["sample"] or {}
    if sorted(sample) != sorted(_PARSED_FIELDS) or str(sample.get("message", "{")).startswith("{"):
        problems.append(f"the first document is not the parsed app record: {sample}")
    return [f"{name}: {p}" for p in problems]


async def _tail_parse_to_elasticsearch(name: str, lines: int, progress: ProgressFn | None,
                                       compression: str) -> Result:
    """Docker lines (app JSON inside), written first -> tail -> parse (message) -> elasticsearch -> bulk peer."""
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-"))
        logs = Path(tmp) / "containers"
        logs.mkdir()
        _, records, nbytes = _write_container_logs(logs, lines, java=False)
        es = await BulkReceiver.start(records)
        stack.push_async_callback(es.close)
        source = {"type": "tail", "include": [str(logs / "*.log")], "format": "docker", "read_from": "beginning"}
        transforms = {"parse": {"type": "parse", "inputs": ["in"], "field": "message"}}
        sink = {"type": "elasticsearch", "inputs": ["parse"], "endpoints": [f"http://{HOST}:{es.port}"],
                "index": ES_INDEX, "id": "auto", "compression": compression,
                "batch": {"max_events": ES_BATCH_EVENTS}, "request": {"concurrency": ES_CONCURRENCY}}
        pipeline = _pipeline(name, tmp, {"in": source}, {"out": sink}, transforms)
        stats = StatsRegistry()
        source_stats, sink_stats = stats.get("in", "source", "tail"), _sink_stats(stats, pipeline)
        parse_stats = stats.get("parse", "transform", "parse")

        def describe() -> str:
            return (f"{name}: expected {records} events; source read {_read_lines(source_stats)} lines, made "
                    f"{source_stats.received_events} events, sink received {sink_stats.received_events}, "
                    f"sent {sink_stats.sent_events}")

        def moved() -> int:
            return _read_lines(source_stats) + sink_stats.sent_events

        topology = Topology(pipeline, stats)
        meter = Meter()
        agent = asyncio.create_task(topology.run(), name="bench-agent")
        stack.push_async_callback(_stop_agent, topology, agent)
        arrived = asyncio.create_task(es.read(wait_s=None), name="bench-bulk-receiver")
        stack.callback(arrived.cancel)
        try:
            async with _progress(lambda: sink_stats.sent_events, progress):
                await _wait_until(arrived.done, moved, agent, describe)
            result = meter.stop(name, records, nbytes)
            done = arrived.result()  # raises PeerError if the receiver exited instead of reporting
        except (BenchError, PeerError) as exc:
            raise BenchError(f"{exc}{await _receiver_count(es, arrived, 'documents')}") from None
        await _wait_until(lambda: sink_stats.sent_events >= records, moved, agent, describe)  # the last acks
        await _stop_agent(topology, agent)
        final = await es.final()
        problems = _check_bulk(name, records, final, compression)
        if agent.result() != 0:
            problems.append(f"agent exit code {agent.result()}")
        if _read_lines(source_stats) != lines or sink_stats.sent_events != records:
            problems.append("events missing or duplicated in the agent")
        for component in (source_stats, parse_stats, sink_stats):
            if component.errors or component.discarded or component.retries:
                problems.append(f"{component.component_id}: errors {dict(component.errors)}, discarded "
                                f"{dict(component.discarded)}, retries {component.retries}")
        if problems:
            raise BenchError(f"{'; '.join(problems)}: {describe()}")
        result.extra = {"lines": lines, "requests": done["requests"], "bulk_body_bytes": done["body_bytes"],
                        "bulk_wire_bytes": done["wire_bytes"], "receiver_cpu_s": done["cpu_s"],
                        "receiver_cpu_s_per_million_events": round(done["cpu_s"] / records * 1e6, 3),
                        "distinct_ids": final["distinct_ids"]}
        return result


async def tail_parse_to_elasticsearch(lines: int, progress: ProgressFn | None = None) -> Result:
    """tail (Docker lines, app JSON inside) -> parse (message) -> elasticsearch (no compression) -> bulk peer."""
    return await _tail_parse_to_elasticsearch("tail_parse_to_elasticsearch", lines, progress, "none")


async def tail_parse_to_elasticsearch_gzip(lines: int, progress: ProgressFn | None = None) -> Result:
    """The same with ``compression: gzip``."""
    return await _tail_parse_to_elasticsearch("tail_parse_to_elasticsearch_gzip", lines, progress, "gzip")

