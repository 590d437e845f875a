"""The datadog_logs sink: entry shape, limits, truncation, retries and a refused key, against the Datadog fake."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from components import feed
from fakes.datadog import FakeDatadog
from helpers import pipeline, wait_for

from agent.config.pipeline import load_texts
from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.core.errors import ConfigErrors, HealthcheckError
from agent.delivery.batcher import Request
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sinks.datadog_logs import (
    MAX_ENTRY,
    DatadogLogsConfig,
    DatadogLogsSink,
    EntryBuilder,
    LogEntry,
    fit_entry,
    logs_body,
)
from agent.topology.running import Topology

KEY = "dd-test-key"


def dict_batches(events: list[dict[str, Any]], per_batch: int = 100, bytes_per_event: int | None = None) -> list[Batch]:
    out = []
    for start in range(0, len(events), per_batch):
        chunk = events[start:start + per_batch]
        size = len(chunk) * bytes_per_event if bytes_per_event else sum(len(orjson.dumps(e)) for e in chunk)
        out.append(Batch(chunk, Kind.LOGS, size))
    return out


def dd_pipeline(dd: FakeDatadog, name: str, sink: str = "", key: str = KEY) -> str:
    return f"""
sources:
  feed: {{type: test_feed, name: {name}}}
sinks:
  dd: {{type: datadog_logs, inputs: [feed], api_key: "{key}", endpoint: "{dd.url}", validate_endpoint: "{dd.url}",
        service: mobius, ddsource: kubernetes, ddtags: "env:production",
        batch: {{timeout: 50ms}}, request: {{retry_initial_backoff: 20ms, retry_max_backoff: 200ms}} {sink}}}
"""


async def run_to_end(text: str, tmp_path: Path, timeout: float = 60) -> Topology:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), timeout) == 0
    return topo


# -- pure parts -----------------------------------------------------------------------------------


def test_entries_get_reserved_fields_from_the_event_first_then_the_config() -> None:
    builder = EntryBuilder(service="mobius", ddsource="kubernetes", ddtags="env:production", hostname="node0")
    entry = builder.from_event({"message": "hi", "level": "warn", "dd_service": "checkout", "dd_source": "java",
                                "dd_tags": "team:a,env:production", "host": "node1", "kube": {"pod": "p"}})
    assert entry == {"message": "hi", "level": "warn", "host": "node1", "kube": {"pod": "p"}, "service": "checkout",
                     "ddsource": "java", "hostname": "node1", "ddtags": "env:production,team:a", "status": "warn"}
    plain = builder.from_event({"msg": "no message field", "service": "cart", "status": 500})
    assert orjson.loads(plain["message"]) == {"msg": "no message field", "service": "cart", "status": 500}
    assert plain["service"] == "cart" and plain["ddsource"] == "kubernetes" and plain["hostname"] == "node0"
    assert plain["status"] == "500"  # reserved fields are text for Datadog
    line = builder.entry(Kind.LINES, b"2026-01-01 INFO started")
    assert line == {"message": "2026-01-01 INFO started", "service": "mobius", "ddsource": "kubernetes",
                    "hostname": "node0", "ddtags": "env:production"}
    bare = EntryBuilder().from_event({"message": {"nested": True}, "hostname": {"name": "x"}})
    assert bare == {"message": '{"nested":true}', "hostname": '{"name":"x"}'}


def test_only_entries_over_one_megabyte_are_cut_and_flagged() -> None:
    small = LogEntry(message="x" * 1000, service="s")
    assert fit_entry(small) == (small, False)
    big = LogEntry(message="é\n\"" * 600_000, service="s", attr="a" * 1000)
    cut, truncated = fit_entry(big)
    assert truncated and cut["truncated"] is True and cut["attr"] == big["attr"]
    assert MAX_ENTRY - 2000 < len(orjson.dumps(cut)) <= MAX_ENTRY
    assert big["message"].startswith(cut["message"]) and "truncated" not in big


def test_encoding_converts_once_and_counts_truncations_once(tmp_path: Path) -> None:
    stats = ComponentStats("dd", "sink", "datadog_logs")
    config = DatadogLogsConfig(inputs=["x"], api_key=KEY, endpoint="http://127.0.0.1:9")
    sink = DatadogLogsSink(config, BuildContext("dd", tmp_path, tmp_path, stats))
    events = [{"message": "a"}, {"message": "b" * 1_500_000}]
    request = Request(Kind.LOGS, None, events, [], 100)
    body = sink.encode(request)
    assert sink.encode(request) == body  # a retry encodes the same entries again
    assert [e["message"][:1] for e in orjson.loads(body)] == ["a", "b"]
    assert stats.counters[("truncated_entries", ())] == 1
    assert events[1]["message"] == "b" * 1_500_000  # the event itself is untouched


@pytest.mark.parametrize(("batch", "expected"), [
    ("{max_events: 5000}", "max_events must be at most 1000"),
    ("{max_bytes: 6MB}", "max_bytes must be at most 5000000"),
])
def test_batches_over_the_intake_limits_are_config_errors(tmp_path: Path, batch: str, expected: str) -> None:
    text = f"""
sources:
  gen: {{type: generate, format: json, count: 1}}
sinks:
  dd: {{type: datadog_logs, inputs: [gen], api_key: k, batch: {batch}}}
"""
    with pytest.raises(ConfigErrors) as raised:
        pipeline(text, tmp_path)
    assert "sinks.dd.batch" in str(raised.value) and expected in str(raised.value)


def test_zstd_is_refused_for_the_logs_intake() -> None:
    text = "sources: {gen: {type: generate}}\nsinks: {dd: {type: datadog_logs, inputs: [gen], api_key: k, compression: zstd}}"
    with pytest.raises(ConfigErrors, match="use gzip or none"):
        load_texts([(text, "test.yaml")])


# -- against the fake -------------------------------------------------------------------------------


async def test_logs_arrive_gzipped_with_the_key_and_the_reserved_fields(tmp_path: Path) -> None:
    events = [{"message": f"line {n}", "n": n, "level": "info", "dd_tags": "team:a"} for n in range(250)]
    events[0] = {"log": "no message", "dd_service": "billing", "host": "node7"}
    async with FakeDatadog(api_key=KEY) as dd:
        topo = await run_to_end(dd_pipeline(dd, feed(dict_batches(events))), tmp_path)
        assert len(dd.logs) == 250 and dd.violations == []
        requests = dd.log_requests
        assert all(r.status == 202 and r.content_encoding == "gzip" and r.headers["dd-api-key"] == KEY
                   and r.headers["content-type"] == "application/json" for r in requests)
        assert requests[0].raw_size < requests[0].decoded_size
        first, second = dd.logs[0], dd.logs[1]
        assert first["service"] == "billing" and first["hostname"] == "node7" and first["ddsource"] == "kubernetes"
        assert orjson.loads(first["message"]) == {"log": "no message", "host": "node7"}
        assert "dd_service" not in first and first["ddtags"] == "env:production"
        assert second == {"message": "line 1", "n": 1, "level": "info", "service": "mobius", "ddsource": "kubernetes",
                          "ddtags": "env:production,team:a", "status": "info"}
        assert sorted(e.get("n", 0) for e in dd.logs) == list(range(250))
        validations = [r for r in dd.requests if r.path == "/api/v1/validate"]
        assert [r.status for r in validations] == [200]
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 250
    assert topo.nodes["dd"].stats.sent_events == 250


async def test_requests_never_break_the_entry_and_size_limits(tmp_path: Path) -> None:
    filler = "lorem ipsum dolor sit amet " * 75  # ~2 KB
    events: list[dict[str, Any]] = [{"message": f"{n} {filler}", "n": n} for n in range(5000)]
    for n in (3, 10, 500, 501, 502, 4000):
        events[n] = {"message": f"{n} " + "y" * 1_500_000, "n": n}
    # the sources' size estimate is far too low on purpose: the encoder must split what the batcher packed
    batches = dict_batches(events, per_batch=250, bytes_per_event=100)
    async with FakeDatadog(api_key=KEY) as dd:
        topo = await run_to_end(dd_pipeline(dd, feed(batches)), tmp_path)
        assert dd.violations == [] and dd.truncated_logs == []
        assert sorted(e["n"] for e in dd.logs) == list(range(5000))
        accepted = [r for r in dd.log_requests if r.status == 202]
        assert max(r.entries for r in accepted) <= 1000 and max(r.decoded_size for r in accepted) <= 5_000_000
        assert len(accepted) > 5  # 5000 events need at least five requests; the big ones force splits
        cut = [e for e in dd.logs if e.get("truncated")]
        assert sorted(e["n"] for e in cut) == [3, 10, 500, 501, 502, 4000]
        assert all(len(orjson.dumps(e)) <= 1_000_000 and e["message"].startswith(f"{e['n']} yyy") for e in cut)
    stats = topo.nodes["dd"].stats
    assert stats.counters[("truncated_entries", ())] == 6 and stats.sent_events == 5000
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 5000


async def test_429_with_retry_after_and_5xx_are_retried_without_duplicates(tmp_path: Path) -> None:
    events = [{"message": f"m{n}", "n": n} for n in range(300)]
    async with FakeDatadog(api_key=KEY) as dd:
        dd.fail_next_requests(1, status=429, retry_after=0.3)
        dd.fail_next_requests(1, status=500)
        dd.fail_next_requests(1, status=503)
        topo = await run_to_end(dd_pipeline(dd, feed(dict_batches(events, per_batch=300))), tmp_path)
        assert sorted(e["n"] for e in dd.logs) == list(range(300))
        statuses = [r.status for r in dd.log_requests]
        assert statuses == [429, 500, 503, 202]
        first, second = dd.log_requests[:2]
        assert second.at - first.at >= 0.29  # Retry-After is a floor
    stats = topo.nodes["dd"].stats
    assert stats.retries == 3 and stats.errors[("throttled", "sending")] == 2
    assert stats.errors[("request_failed", "sending")] == 1
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 300


async def test_a_400_sends_the_entries_to_the_dead_letter(tmp_path: Path) -> None:
    dead = tmp_path / "dead.ndjson"
    events = [{"message": f"m{n}", "n": n} for n in range(40)]
    async with FakeDatadog(api_key=KEY) as dd:
        dd.fail_next_requests(1, status=400)
        topo = await run_to_end(dd_pipeline(dd, feed(dict_batches(events, per_batch=40)),
                                            f', dead_letter: {{path: "{dead}"}}'), tmp_path)
        assert dd.logs == []
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(letters) == 40 and {entry["reason"] for entry in letters} == {"rejected"}
    assert "HTTP 400" in letters[0]["error"]
    assert letters[0]["event"]["message"] == "m0" and letters[0]["event"]["service"] == "mobius"
    assert topo.nodes["dd"].stats.discarded["rejected"] == 40
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 40  # refused for good: the source moves on


async def test_a_refused_key_holds_everything_until_the_intake_accepts_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    events = [{"message": f"m{n}", "n": n} for n in range(500)]
    async with FakeDatadog(api_key="the-real-key") as dd:
        # one batch, one request: successive refusals are retries of the same request
        topo = Topology(pipeline(dd_pipeline(dd, feed(dict_batches(events, per_batch=500))), tmp_path),
                        StatsRegistry())
        run = asyncio.create_task(topo.run())
        try:
            with caplog.at_level(logging.ERROR, logger="agent.sinks.datadog"):
                # the sink counts a refusal after the intake has recorded it: wait for both
                await wait_for(lambda: sum(r.status == 403 for r in dd.log_requests) >= 4
                               and topo.nodes["dd"].stats.errors.get(("forbidden", "sending"), 0) >= 4,
                               timeout=10)
            stats = topo.nodes["dd"].stats
            assert "committed_events" not in topo.nodes["feed"].stats.gauges
            assert stats.errors[("forbidden", "sending")] >= 4 and stats.discarded == {}
            refused = [r.at for r in dd.log_requests if r.status == 403]
            assert min(b - a for a, b in itertools.pairwise(refused[-3:])) >= 0.19  # at retry_max_backoff
            messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert messages and all("refused the API key" in m for m in messages)
            assert not any(KEY in m or KEY in str(r.__dict__) for r in caplog.records for m in [r.getMessage()])
            dd.api_key = KEY  # the intake accepts the key again
            assert await asyncio.wait_for(run, 30) == 0
        finally:
            if not run.done():
                topo.request_stop()
                await asyncio.wait_for(run, 30)
        assert sorted(e["n"] for e in dd.logs) == list(range(500))
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 500


async def test_a_reload_with_the_fixed_key_gets_the_held_events_through(tmp_path: Path) -> None:
    events = [{"message": f"m{n}", "n": n} for n in range(300)]
    async with FakeDatadog(api_key=KEY) as dd:
        name = feed(dict_batches(events))
        topo = Topology(pipeline(dd_pipeline(dd, name, key="an-old-key"), tmp_path), StatsRegistry())
        run = asyncio.create_task(topo.run())
        try:
            await wait_for(lambda: sum(r.status == 403 for r in dd.log_requests) >= 2, timeout=10)
            changed = await asyncio.wait_for(topo.reload(pipeline(dd_pipeline(dd, name), tmp_path)), 10)
            assert changed == ["dd"]
            assert await asyncio.wait_for(run, 30) == 0  # the feed has ended: the pipeline drains and stops
        finally:
            if not run.done():
                topo.request_stop()
                await asyncio.wait_for(run, 30)
        assert sorted(e["n"] for e in dd.logs) == list(range(300))
        assert all(r.headers["dd-api-key"] == KEY for r in dd.log_requests if r.status == 202)
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 300


async def test_the_healthcheck_validates_the_key(tmp_path: Path) -> None:
    async with FakeDatadog(api_key=KEY) as dd:
        stats = ComponentStats("dd", "sink", "datadog_logs")
        for key, ok in ((KEY, True), ("wrong", False)):
            config = DatadogLogsConfig(inputs=["x"], api_key=key, endpoint=dd.url, validate_endpoint=dd.url)
            sink = DatadogLogsSink(config, BuildContext(f"dd-{ok}", tmp_path, tmp_path, stats))
            if ok:
                await sink.healthcheck()
            else:
                with pytest.raises(HealthcheckError, match="API key was refused"):
                    await sink.healthcheck()


@pytest.mark.parametrize("entries", [[], [{"message": "one"}], [{"message": "a", "n": 1}, {"message": "b é", "x": [1, 2]}]])
def test_the_body_is_the_json_array_of_the_entries(entries: list[dict[str, object]]) -> None:
    body = logs_body(entries)
    assert orjson.loads(body) == entries
    assert body == orjson.dumps(entries)  # compact, as Datadog counts the request's bytes
