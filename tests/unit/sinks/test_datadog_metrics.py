"""The datadog_metrics sink: series mapping, counter deltas that survive retries, limits and a refused key."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from components import feed
from fakes.datadog import FakeDatadog
from helpers import pipeline, wait_for

from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.core.errors import ConfigErrors
from agent.core.metric import Sample
from agent.delivery.batcher import Request
from agent.delivery.driver import PayloadTooLarge
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sinks.datadog_metrics import DatadogMetricsConfig, DatadogMetricsSink
from agent.topology.running import Topology

KEY = "dd-metrics-key"
LABELS = (("instance", "a:1"), ("path", "/x"))


def batch(samples: list[Sample]) -> Batch:
    return Batch(samples, Kind.METRICS, 64 * len(samples))


def now_ms(offset_s: float = 0) -> int:
    return int((time.time() - 300 + offset_s) * 1000)  # five minutes ago: well inside the intake's window


def dd_pipeline(dd: FakeDatadog, name: str, sink: str = "", key: str = KEY,
                batch: str = "{timeout: 50ms}") -> str:
    return f"""
sources:
  feed: {{type: test_feed, name: {name}, data_type: metrics}}
sinks:
  dd: {{type: datadog_metrics, inputs: [feed], api_key: "{key}", endpoint: "{dd.url}",
        default_namespace: agent, hostname: node1,
        batch: {batch}, request: {{retry_initial_backoff: 20ms, retry_max_backoff: 200ms}} {sink}}}
"""


async def run_to_end(text: str, tmp_path: Path, timeout: float = 30) -> Topology:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), timeout) == 0
    return topo


def make_sink(tmp_path: Path, **config: Any) -> tuple[DatadogMetricsSink, ComponentStats]:
    stats = ComponentStats("dd", "sink", "datadog_metrics")
    cfg = DatadogMetricsConfig(inputs=["x"], api_key=KEY, endpoint="http://127.0.0.1:9", **config)
    return DatadogMetricsSink(cfg, BuildContext("dd", tmp_path, tmp_path, stats)), stats


def encode(sink: DatadogMetricsSink, samples: list[Any]) -> list[dict[str, Any]]:
    body = sink.encode(Request(Kind.METRICS, None, samples, [], 64 * len(samples)))
    return orjson.loads(body)["series"] if body else []


def points(series: list[dict[str, Any]], metric: str) -> list[tuple[float, int | None]]:
    return [(s["points"][0]["value"], s.get("interval")) for s in series if s["metric"] == metric]


# -- pure parts -----------------------------------------------------------------------------------


def test_gauges_are_type_3_with_tags_resources_and_the_namespace(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path, default_namespace="k8s", hostname="node1")
    t = now_ms()
    series = encode(sink, [Sample.of("inflight", LABELS, 7.5, t, "gauge"), Sample.of("temp", (), -3.0, t + 1500)])
    assert series == [
        {"metric": "k8s.inflight", "type": 3, "points": [{"timestamp": t // 1000, "value": 7.5}],
         "tags": ["instance:a:1", "path:/x"], "resources": [{"name": "node1", "type": "host"}]},
        {"metric": "k8s.temp", "type": 3, "points": [{"timestamp": (t + 1500) // 1000, "value": -3.0}],
         "tags": [], "resources": [{"name": "node1", "type": "host"}]},
    ]


def test_counters_become_deltas_with_intervals_and_resets_restart_from_zero(tmp_path: Path) -> None:
    sink, stats = make_sink(tmp_path)
    t = now_ms()
    other = (("instance", "b:2"),)
    assert encode(sink, [Sample.of("req_total", LABELS, 100, t, "counter")]) == []  # a baseline only
    series = encode(sink, [
        Sample.of("req_total", LABELS, 130, t + 10_000, "counter"),
        Sample.of("req_total", other, 5, t + 10_000, "counter"),  # another series: its own baseline
        Sample.of("req_total", LABELS, 130, t + 10_000, "counter"),  # a duplicate: nothing
        Sample.of("req_total", LABELS, 12, t + 25_000, "counter"),  # lower: the counter was reset
        Sample.of("req_total", LABELS, 20, t + 25_400, "counter"),
        Sample.of("req_total", other, 9, t + 30_000, "counter"),
    ])
    assert (series[0]["type"], series[0]["tags"]) == (1, ["instance:a:1", "path:/x"])
    assert [(s["points"][0]["value"], s["interval"], s["tags"][0]) for s in series] == [
        (30, 10, "instance:a:1"), (12, 15, "instance:a:1"), (8, 1, "instance:a:1"), (4, 20, "instance:b:2")]
    assert stats.counters[("counter_baselines", ())] == 2 and stats.counters[("stale_samples", ())] == 1


def test_encoding_again_never_moves_the_counters_twice(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path)
    t = now_ms()
    encode(sink, [Sample.of("c", (), 1, t, "counter")])
    request = Request(Kind.METRICS, None, [Sample.of("c", (), 4, t + 5000, "counter"),
                                           Sample.of("g", (), math.nan, t, "gauge"),
                                           Sample.of("u", (), 2, t)], [], 0)
    first = sink.encode(request)
    assert sink.encode(request) == first  # a retry
    request.events = request.events[:1]  # what a split leaves in one half
    assert orjson.loads(sink.encode(request))["series"][0]["points"][0]["value"] == 3
    assert [s["metric"] for s in orjson.loads(first)["series"]] == ["c", "u"]  # NaN has no JSON form


def test_a_payload_over_the_uncompressed_limit_is_split(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path)
    t = now_ms()
    samples = [Sample.of("m", (("k", "v" * 1000), ("n", str(n))), 1, t, "gauge") for n in range(6000)]
    with pytest.raises(PayloadTooLarge):
        sink.encode(Request(Kind.METRICS, None, samples, [], 0))


def test_logs_wired_to_datadog_metrics_is_a_config_error(tmp_path: Path) -> None:
    text = """
sources:
  gen: {type: generate, format: json, count: 1}
sinks:
  dd: {type: datadog_metrics, inputs: [gen], api_key: k}
"""
    with pytest.raises(ConfigErrors, match='accepts metrics, but input "gen" emits logs'):
        pipeline(text, tmp_path)


# -- against the fake -------------------------------------------------------------------------------


def three_scrapes(t: int) -> list[Batch]:
    return [batch([Sample.of("req_total", LABELS, 10 + 10 * i * i, t + 10_000 * i, "counter"),
                   Sample.of("inflight", LABELS, float(i), t + 10_000 * i, "gauge")]) for i in range(3)]


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
async def test_series_arrive_with_the_key_and_the_compression(tmp_path: Path, compression: str) -> None:
    t = now_ms()
    async with FakeDatadog(api_key=KEY) as dd:
        topo = await run_to_end(dd_pipeline(dd, feed(three_scrapes(t)), f", compression: {compression}"), tmp_path)
        assert dd.violations == []
        expected = {"gzip": "gzip", "zstd": "zstd1", "none": None}[compression]
        assert all(r.status == 202 and r.content_encoding == expected and r.headers["dd-api-key"] == KEY
                   and r.headers["content-type"] == "application/json" for r in dd.series_requests)
        assert points(dd.series, "agent.inflight") == [(0.0, None), (1.0, None), (2.0, None)]
        assert points(dd.series, "agent.req_total") == [(10, 10), (30, 10)]
        assert all(s["resources"] == [{"name": "node1", "type": "host"}] for s in dd.series)
        assert [r.status for r in dd.requests if r.path == "/api/v1/validate"] == [200]
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 6


async def test_a_retried_request_does_not_count_twice(tmp_path: Path) -> None:
    t = now_ms()
    async with FakeDatadog(api_key=KEY) as dd:
        dd.fail_next_requests(1, status=500)
        dd.fail_next_requests(1, status=429, retry_after=0.1)
        topo = await run_to_end(dd_pipeline(dd, feed(three_scrapes(t)), batch="{max_events: 1000, timeout: 300ms}"),
                                tmp_path)
        assert [r.status for r in dd.series_requests] == [500, 429, 202]
        assert points(dd.series, "agent.req_total") == [(10, 10), (30, 10)]
        assert len(dd.series) == 5 and dd.violations == []
    assert topo.nodes["dd"].stats.retries == 2
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 6


async def test_requests_over_512_kb_are_split(tmp_path: Path) -> None:
    t = now_ms()
    samples = [Sample.of("wide", (("n", str(n)), ("pad", "p" * 200)), float(n), t, "gauge") for n in range(4000)]
    async with FakeDatadog(api_key=KEY) as dd:
        await run_to_end(dd_pipeline(dd, feed([batch(samples)]), ", compression: none", batch="{max_events: 4000}"),
                         tmp_path)
        assert dd.violations == []
        assert sorted(int(s["points"][0]["value"]) for s in dd.series) == list(range(4000))
        assert len(dd.series_requests) >= 2 and max(r.raw_size for r in dd.series_requests) <= 512_000


async def test_a_refused_key_holds_the_samples_until_it_is_accepted(tmp_path: Path) -> None:
    t = now_ms()
    async with FakeDatadog(api_key="another-key") as dd:
        topo = Topology(pipeline(dd_pipeline(dd, feed(three_scrapes(t))), tmp_path), StatsRegistry())
        run = asyncio.create_task(topo.run())
        try:
            await wait_for(lambda: sum(r.status == 403 for r in dd.series_requests) >= 3, timeout=10)
            assert "committed_events" not in topo.nodes["feed"].stats.gauges
            stats = topo.nodes["dd"].stats
            assert stats.errors[("forbidden", "sending")] >= 3 and stats.discarded == {}
            dd.api_key = KEY
            assert await asyncio.wait_for(run, 30) == 0
        finally:
            if not run.done():
                topo.request_stop()
                await asyncio.wait_for(run, 30)
        assert points(dd.series, "agent.req_total") == [(10, 10), (30, 10)]  # held and retried: no double count
        assert len(points(dd.series, "agent.inflight")) == 3
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 6


# -- fed by prometheus_scrape ---------------------------------------------------------------------


async def test_scraped_counters_reach_datadog_as_deltas_and_a_reset_restarts_from_its_value(tmp_path: Path) -> None:
    from fakes.exporter import FakeExporter

    def page(requests: float, temperature: float) -> str:
        return (f"# TYPE http_requests_total counter\nhttp_requests_total{{code=\"200\"}} {requests}\n"
                f"# TYPE temperature gauge\ntemperature {temperature}\n")

    async with FakeDatadog(api_key=KEY) as dd, FakeExporter() as exporter:
        exporter.serve("/metrics", page(10, 20.5))
        target = exporter.base.removeprefix("http://")
        text = f"""
sources:
  node: {{type: prometheus_scrape, scrape_configs: [{{job_name: app, scrape_interval: 200ms, scrape_timeout: 200ms,
          static_configs: [{{targets: ["{target}"]}}]}}]}}
sinks:
  dd: {{type: datadog_metrics, inputs: [node], api_key: "{KEY}", endpoint: "{dd.url}", batch: {{timeout: 50ms}},
        request: {{retry_initial_backoff: 20ms}}}}
"""
        topo = Topology(pipeline(text, tmp_path), StatsRegistry())
        run = asyncio.create_task(topo.run())
        try:
            for requests in (25, 40, 5):  # the last one is lower: the counter was reset (a restart)
                seen = len(exporter.requests)
                await wait_for(lambda seen=seen: len(exporter.requests) > seen, timeout=5)  # type: ignore[misc]
                exporter.serve("/metrics", page(requests, 20.5))
            seen = len(exporter.requests)
            await wait_for(lambda: len(exporter.requests) > seen + 1, timeout=5)
            await wait_for(lambda: len(points(dd.series, "http_requests_total")) >= 3, timeout=5)
        finally:
            topo.request_stop()
            assert await asyncio.wait_for(run, 10) == 0
    deltas = [value for value, _ in points(dd.series, "http_requests_total")]
    assert deltas[:3] == [15, 15, 5]  # the first scrape only set the baseline; after the reset: the new value
    assert all(interval is not None and interval >= 1 for _, interval in points(dd.series, "http_requests_total"))
    assert {value for value, interval in points(dd.series, "temperature")} == {20.5}
    assert [v for v, _ in points(dd.series, "up")][:3] == [1.0, 1.0, 1.0]
    assert dd.violations == []
