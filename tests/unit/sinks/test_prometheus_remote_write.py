"""The prometheus_remote_write sink: what it encodes, its headers and credentials, and how it answers a receiver's
500, 429, 400 and silence, against the fake receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
import time
from pathlib import Path
from typing import Any

import cramjam
import msgspec
import orjson
import pytest
from components import feed
from fakes.remote_write import FakeRemoteWrite, decode_write_request
from helpers import pipeline

from agent.config.registry import BuildContext
from agent.config.units import dec_hook
from agent.core.batch import Batch, Kind
from agent.core.errors import ConfigErrors, PermanentError, RetryableError
from agent.core.metric import Sample, Series
from agent.delivery.batcher import Request
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.prometheus import STALE_NAN, is_stale
from agent.prometheus.relabel import Relabeler
from agent.sinks.prometheus_remote_write import (
    GENERATION_S,
    PrometheusRemoteWriteConfig,
    PrometheusRemoteWriteSink,
    SeriesLabels,
)
from agent.topology.running import Topology

T = int(time.time() * 1000) - 60_000
NODE = (("instance", "10.0.0.1:9100"), ("job", "node"))


def batch(samples: list[Sample]) -> Batch:
    return Batch(samples, Kind.METRICS, 64 * len(samples))


def make_config(**config: Any) -> PrometheusRemoteWriteConfig:
    """The config as the loader builds it (nested structs, durations), from plain values."""
    config.setdefault("url", "http://127.0.0.1:9/api/v1/write")
    return msgspec.convert({"type": "prometheus_remote_write", "inputs": ["x"], **config},
                           PrometheusRemoteWriteConfig, dec_hook=dec_hook)


def make_sink(tmp_path: Path, **config: Any) -> tuple[PrometheusRemoteWriteSink, ComponentStats]:
    stats = ComponentStats("rw", "sink", "prometheus_remote_write")
    cfg = make_config(**config)
    return PrometheusRemoteWriteSink(cfg, BuildContext("rw", tmp_path, tmp_path, stats)), stats


def encode(sink: PrometheusRemoteWriteSink, samples: list[Sample]) -> tuple[list[Any], Request]:
    request = Request(Kind.METRICS, None, samples, [], 0)
    body = sink.encode(request)
    return (decode_write_request(bytes(cramjam.snappy.decompress_raw(body))) if body else []), request


def rw_pipeline(rw: FakeRemoteWrite, name: str, extra: str = "", queue: str = "batch_send_deadline: 50ms") -> str:
    return f"""
sources:
  feed: {{type: test_feed, name: {name}, data_type: metrics}}
sinks:
  rw: {{type: prometheus_remote_write, inputs: [feed], url: "{rw.write_url}",
        queue_config: {{min_backoff: 10ms, max_backoff: 100ms, {queue}}} {extra}}}
"""


async def run_to_end(text: str, tmp_path: Path, timeout: float = 30) -> Topology:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), timeout) == 0
    return topo


# -- config ------------------------------------------------------------------------------------------


def test_a_url_alone_is_a_complete_config(tmp_path: Path) -> None:
    text = f"""
sources:
  x: {{type: test_feed, name: {feed([])}, data_type: metrics}}
sinks:
  prom: {{type: prometheus_remote_write, inputs: [x], url: http://127.0.0.1:9090/api/v1/write}}
"""
    pipeline(text, tmp_path)


def test_queue_config_becomes_batches_shards_and_backoff(tmp_path: Path) -> None:
    cfg = make_config(url="https://r/w", remote_timeout="7s", headers={"X-Scope-OrgID": "t"},
                      queue_config={"max_samples_per_send": 500, "batch_send_deadline": "2s", "max_shards": 3,
                                    "min_backoff": "100ms", "max_backoff": "9s"})
    http = cfg.http_config()
    assert (http.batch.max_events, http.batch.timeout) == (500, 2.0)
    assert (http.request.concurrency, http.request.timeout) == (3, 7.0)
    assert (http.request.retry_initial_backoff, http.request.retry_max_backoff) == (0.1, 9.0)
    assert http.request.headers == {"X-Scope-OrgID": "t"}


@pytest.mark.parametrize(("queue", "shards"), [({}, 4), ({"max_shards": 2}, 2), ({"min_shards": 10}, 10),
                                               ({"min_shards": 1, "max_shards": 1}, 1)])
def test_the_sink_runs_four_shards_unless_min_or_max_shards_say_otherwise(queue: dict[str, int], shards: int) -> None:
    assert make_config(queue_config=queue).http_config().request.concurrency == shards


@pytest.mark.parametrize("header", ["Content-Encoding", "content-type", "User-Agent", "Authorization", "Host",
                                    "X-Prometheus-Remote-Write-Version"])
def test_reserved_headers_are_refused(tmp_path: Path, header: str) -> None:
    text = f"""
sources:
  x: {{type: test_feed, name: {feed([])}, data_type: metrics}}
sinks:
  prom: {{type: prometheus_remote_write, inputs: [x], url: http://r/w, headers: {{"{header}": v}}}}
"""
    with pytest.raises(ConfigErrors, match=f"(?i){header}"):
        pipeline(text, tmp_path)


def test_logs_wired_to_remote_write_is_a_config_error(tmp_path: Path) -> None:
    text = """
sources:
  gen: {type: generate, format: json, count: 1}
sinks:
  prom: {type: prometheus_remote_write, inputs: [gen], url: http://r/w}
"""
    with pytest.raises(ConfigErrors, match='accepts metrics, but input "gen" emits logs'):
        pipeline(text, tmp_path)


def test_two_ways_to_authenticate_are_a_config_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="at most one of"):
        make_config(bearer_token="a", basic_auth={"username": "u", "password": "p"})
    with pytest.raises(msgspec.ValidationError, match="give the credentials one way"):  # aiohttp refuses both
        make_config(url="http://u:p@receiver/api/v1/write", authorization={"credentials": "t"})


# -- encoding ----------------------------------------------------------------------------------------


def test_series_get_their_name_sorted_labels_and_external_labels_they_lack(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path, external_labels={"cluster": "eu-1", "job": "ignored"})
    series, _ = encode(sink, [Sample.of("node_load1", NODE, 0.5, T, "gauge")])
    assert series == [([("__name__", "node_load1"), ("cluster", "eu-1"), ("instance", "10.0.0.1:9100"),
                        ("job", "node")], [(0.5, T)])]


def test_samples_of_one_series_are_one_timeseries_in_time_order(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path)
    other = (("instance", "b"), ("job", "node"))
    series, _ = encode(sink, [Sample.of("up", NODE, 1, T + 2000), Sample.of("up", other, 1, T),
                              Sample.of("up", NODE, 0, T), Sample.of("up", NODE, 1, T + 1000)])
    assert [(dict(labels)["instance"], samples) for labels, samples in series] == [
        ("10.0.0.1:9100", [(0.0, T), (1.0, T + 1000), (1.0, T + 2000)]), ("b", [(1.0, T)])]


def test_write_relabel_drops_are_counted_and_leave_the_request(tmp_path: Path) -> None:
    sink, stats = make_sink(tmp_path, write_relabel_configs=[
        {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"},
        {"target_label": "env", "replacement": "prod"}])
    samples = [Sample.of("go_goroutines", NODE, 8, T), Sample.of("up", NODE, 1, T), Sample.of("go_threads", NODE, 9, T)]
    series, request = encode(sink, samples)
    assert series == [([("__name__", "up"), ("env", "prod"), *NODE], [(1.0, T)])]
    assert request.events == [samples[1]]  # a retry of this request does not count the drops again
    encode_again = sink.encode(request)
    assert encode_again and stats.counters[("dropped_samples", ())] == 2 and stats.discarded["write_relabel"] == 2


def test_a_request_whose_series_are_all_dropped_sends_nothing(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path, write_relabel_configs=[{"action": "drop", "source_labels": ["job"]}])
    request = Request(Kind.METRICS, None, [Sample.of("up", NODE, 1, T)], [], 0)
    assert sink.encode(request) == b"" and request.events == []


def test_the_stale_marker_goes_out_bit_for_bit(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path)
    series, _ = encode(sink, [Sample.of("up", NODE, STALE_NAN, T)])
    value = series[0][1][0][0]
    assert is_stale(value) and struct.pack("<d", value) == struct.pack("<Q", 0x7FF0000000000002)


def test_the_series_of_500_targets_stay_cached_from_one_scrape_to_the_next(tmp_path: Path) -> None:
    """250,000 live series (500 targets of 500): the second scrape's samples find their label fields cached,
    none is relabelled and encoded again."""
    sink, _ = make_sink(tmp_path)
    computed = 0
    compute = sink.series.compute

    def counting(*args: Any) -> bytes | None:
        nonlocal computed
        computed += 1
        return compute(*args)

    sink.series.compute = counting  # type: ignore[method-assign]
    scrape = [Sample.of("m", (("instance", str(n // 500)), ("n", str(n % 500))), 1.0, T) for n in range(250_000)]
    for start in range(0, len(scrape), 2000):
        sink.encode(Request(Kind.METRICS, None, scrape[start:start + 2000], [], 0))
    assert computed == 250_000
    again = [Sample(s.series, 2.0, T + 15_000) for s in scrape]
    for start in range(0, len(again), 2000):
        sink.encode(Request(Kind.METRICS, None, again[start:start + 2000], [], 0))
    assert computed == 250_000


def test_the_series_cache_forgets_series_unseen_for_two_generations() -> None:
    now = [0.0]
    cache = SeriesLabels({}, Relabeler([]), clock=lambda: now[0])
    live, gone = Series("live", NODE), Series("gone", NODE)
    assert cache.get(live) and cache.get(gone) and len(cache) == 2
    for _ in range(2):  # two generations: `live` is asked for in each, `gone` in none
        now[0] += GENERATION_S
        cache.age()
        assert cache.get(live)
    assert len(cache) == 1 and live in cache.young


def test_secret_files_are_read_at_each_request(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("first\n")
    sink, _ = make_sink(tmp_path, basic_auth={"username": "agent", "password_file": "password"})
    assert sink.credentials.header() == {"Authorization": "Basic " + base64.b64encode(b"agent:first").decode()}
    secret.write_text("rotated")
    assert sink.credentials.header() == {"Authorization": "Basic " + base64.b64encode(b"agent:rotated").decode()}
    secret.unlink()
    with pytest.raises(RetryableError, match="cannot read a credentials file") as raised:
        sink.credentials.header()
    assert "rotated" not in str(raised.value)


# -- against the fake receiver -----------------------------------------------------------------------


def scrapes(n: int, series: int = 3) -> list[Batch]:
    """``n`` scrapes 15 s apart of ``series`` counters, values counting up."""
    return [batch([Sample.of("node_cpu_seconds_total", (("cpu", str(c)), *NODE), float(i), T + 15_000 * i, "counter")
                   for c in range(series)]) for i in range(n)]


async def test_what_arrives_is_what_was_sent_with_the_protocol_headers(tmp_path: Path) -> None:
    async with FakeRemoteWrite() as rw:
        extra = (', headers: {X-Scope-OrgID: tenant-1}, external_labels: {cluster: c1},'
                 ' bearer_token: s3cret')
        topo = await run_to_end(rw_pipeline(rw, feed(scrapes(3)), extra), tmp_path)
        assert rw.violations == []
        request = rw.requests[0]
        assert request.headers["content-encoding"] == "snappy"
        assert request.headers["content-type"] == "application/x-protobuf"
        assert request.headers["x-prometheus-remote-write-version"] == "0.1.0"
        assert request.headers["user-agent"].startswith("agent/")
        assert request.headers["x-scope-orgid"] == "tenant-1"
        assert request.headers["authorization"] == "Bearer s3cret"
        got = rw.samples_of("node_cpu_seconds_total")
        assert sorted((labels["cpu"], value, t) for labels, value, t in got) == sorted(
            (str(c), float(i), T + 15_000 * i) for i in range(3) for c in range(3))
        assert all(labels["cluster"] == "c1" and labels["job"] == "node" for labels, _, _ in got)
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 9
    assert topo.nodes["rw"].stats.sent_events == 9


async def test_500_then_429_with_retry_after_then_204_delivers_once_in_order(tmp_path: Path) -> None:
    async with FakeRemoteWrite() as rw:
        rw.fail_next_requests(1, status=500)
        rw.fail_next_requests(1, status=429, retry_after=0.3)
        topo = await run_to_end(rw_pipeline(rw, feed(scrapes(2)), queue="batch_send_deadline: 200ms, max_shards: 1"),
                                tmp_path)
        assert [r.status for r in rw.requests] == [500, 429, 204]
        assert rw.requests[2].at - rw.requests[1].at >= 0.3  # the Retry-After is a floor
        assert len(rw.writes) == 1 and rw.violations == []
        by_cpu: dict[str, list[int]] = {}
        for labels, _, t in rw.samples_of("node_cpu_seconds_total"):
            by_cpu.setdefault(labels["cpu"], []).append(t)
        assert by_cpu == {str(c): [T, T + 15_000] for c in range(3)}
    stats = topo.nodes["rw"].stats
    assert stats.retries == 2 and stats.errors[("throttled", "sending")] == 1
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 6


async def test_400_is_not_retried_and_dead_lettered_with_the_message(tmp_path: Path) -> None:
    dead = tmp_path / "dead.ndjson"
    async with FakeRemoteWrite() as rw:
        rw.fail_next_requests(1, status=400, message="out of order sample")
        topo = await run_to_end(rw_pipeline(rw, feed(scrapes(1)), f', dead_letter: {{path: "{dead}"}}',
                                            queue="batch_send_deadline: 50ms, max_shards: 1"), tmp_path)
        assert [r.status for r in rw.requests] == [400]
    entries = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert len(entries) == 3
    assert all("HTTP 400: out of order sample" in e["error"] and e["event"]["name"] == "node_cpu_seconds_total"
               for e in entries)
    stats = topo.nodes["rw"].stats
    assert stats.retries == 0 and stats.discarded["rejected"] == 3
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 3  # refused for good: acknowledged, not held


async def test_429_is_final_when_retry_on_http_429_is_off(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path, queue_config={"retry_on_http_429": False})
    async with FakeRemoteWrite() as rw:
        sink.config.url = rw.write_url
        rw.fail_next_requests(1, status=429)
        request = Request(Kind.METRICS, None, [Sample.of("up", NODE, 1, T)], [], 0)
        with pytest.raises(PermanentError, match="HTTP 429"):
            await sink.send(sink.driver.client, request, sink.encode(request))
        await sink.driver.client.close()


async def test_a_receiver_that_hangs_times_out_and_the_request_is_retried(tmp_path: Path) -> None:
    async with FakeRemoteWrite() as rw:
        rw.slow(2.0, requests=1)
        topo = await run_to_end(rw_pipeline(rw, feed(scrapes(1)), ", remote_timeout: 200ms",
                                            queue="batch_send_deadline: 50ms, max_shards: 1"), tmp_path)
        assert len(rw.requests) == 2  # the first one was answered too late
    assert topo.nodes["rw"].stats.retries == 1
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 3


async def test_each_series_arrives_in_order_across_shards_and_retries(tmp_path: Path) -> None:
    """Requests in flight at once on several shards, some failing and retried: no series ever goes back in time."""
    async with FakeRemoteWrite(latency_ms=5) as rw:
        rw.fail_next_requests(6, status=503)
        topo = await run_to_end(rw_pipeline(rw, feed(scrapes(20, series=16)),
                                            queue="batch_send_deadline: 20ms, max_shards: 4, max_samples_per_send: 8"),
                                tmp_path)
        assert rw.violations == []  # the fake records any sample older than one it already has for the series
        assert len(rw.samples_of("node_cpu_seconds_total")) == 20 * 16
        assert len({r.path for r in rw.requests}) == 1 and len(rw.requests) > 20
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 320


def test_no_value_is_lost_on_the_way(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path)
    values = [0.0, -0.0, 1e308, -1e-308, math.inf, -math.inf]
    series, _ = encode(sink, [Sample.of("v", (("i", str(i)),), v, T) for i, v in enumerate(values)])
    assert [samples[0][0] for _, samples in series] == values
