"""The prometheus_exporter sink: the page it serves (parsed by prometheus_client), latest value per series,
staleness and expiry, two sinks side by side, acks, and a port in use at start-up."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from components import feed
from helpers import pipeline, wait_for
from prometheus_client.parser import text_string_to_metric_families

from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.core.component import SinkContext
from agent.core.errors import StartupError
from agent.core.metric import Sample
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.prometheus import STALE_NAN
from agent.sinks.prometheus_exporter import PrometheusExporterConfig, PrometheusExporterSink, SeriesStore
from agent.topology.running import Topology

T0 = 1_700_000_000_000


class QueueInbox:
    """An inbox fed by the test: ``None`` ends the sink."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue()

    async def get(self) -> Batch | None:
        return await self.queue.get()


def batch(*samples: Sample) -> Batch:
    return Batch(list(samples), Kind.METRICS, 64 * len(samples))


@asynccontextmanager
async def running_sink(port: int, tmp_path: Path, expire_after: float = 300.0,
                       ) -> AsyncIterator[tuple[Callable[[Batch], None], PrometheusExporterSink]]:
    """A started sink on ``port``; yields a function that feeds it a batch and waits until it is stored."""
    config = PrometheusExporterConfig(inputs=["x"], address=f"127.0.0.1:{port}", expire_after=expire_after)
    stats = ComponentStats("prom", "sink", "prometheus_exporter")
    sink = PrometheusExporterSink(config, BuildContext("prom", tmp_path, tmp_path, stats))
    inbox = QueueInbox()
    await sink.start()
    task = asyncio.create_task(sink.run(SinkContext("prom", inbox, stats)))  # type: ignore[arg-type]
    try:
        yield inbox.queue.put_nowait, sink
    finally:
        inbox.queue.put_nowait(None)
        await asyncio.wait_for(task, 5)


async def scrape(port: int) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(family: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}  # type: ignore[attr-defined]


async def stored(batch_: Batch) -> None:
    await wait_for(lambda: batch_.done)


async def test_the_page_has_every_kind_with_its_type_and_escaped_labels(tmp_path: Path, free_port: int) -> None:
    tricky = 'a "quoted" back\\slash\nnewline'
    b = batch(
        Sample.of("http_requests_total", (("code", "200"), ("path", tricky)), 7.0, T0, "counter"),
        Sample.of("temperature", (), -3.5, T0, "gauge"),
        Sample.of("latency_seconds_bucket", (("le", "0.5"),), 3.0, T0, "histogram"),
        Sample.of("latency_seconds_bucket", (("le", "+Inf"),), 4.0, T0, "histogram"),
        Sample.of("latency_seconds_bucket", (("le", "0.1"),), 1.0, T0, "histogram"),
        Sample.of("latency_seconds_sum", (), 1.25, T0, "histogram"),
        Sample.of("latency_seconds_count", (), 4.0, T0, "histogram"),
        Sample.of("rpc_seconds", (("quantile", "0.9"),), 0.2, T0, "summary"),
        Sample.of("rpc_seconds_sum", (), 9.0, T0, "summary"),
        Sample.of("rpc_seconds_count", (), 30.0, T0, "summary"),
        Sample.of("mystery", (("x", "1"),), math.inf, T0, "untyped"),
        Sample.of("info_thing", (("version", "1"),), 1.0, T0, "info"),  # no 0.0.4 type: untyped
    )
    async with running_sink(free_port, tmp_path) as (send, _):
        send(b)
        await stored(b)
        families = await scrape(free_port)
    assert {name: f.type for name, f in families.items()} == {  # type: ignore[attr-defined]
        "http_requests": "counter", "temperature": "gauge", "latency_seconds": "histogram",
        "rpc_seconds": "summary", "mystery": "unknown", "info_thing": "unknown"}
    assert values(families["http_requests"]) == {
        ("http_requests_total", (("code", "200"), ("path", tricky))): 7.0}
    assert values(families["latency_seconds"]) == {
        ("latency_seconds_bucket", (("le", "0.1"),)): 1.0, ("latency_seconds_bucket", (("le", "0.5"),)): 3.0,
        ("latency_seconds_bucket", (("le", "+Inf"),)): 4.0, ("latency_seconds_sum", ()): 1.25,
        ("latency_seconds_count", ()): 4.0}
    assert values(families["rpc_seconds"])[("rpc_seconds", (("quantile", "0.9"),))] == 0.2
    assert values(families["mystery"]) == {("mystery", (("x", "1"),)): math.inf}
    assert values(families["temperature"]) == {("temperature", ()): -3.5}


def test_a_histograms_buckets_are_served_in_order_of_their_bounds() -> None:
    store = SeriesStore(300)
    store.add([Sample.of("h_count", (), 4.0, T0, "histogram"), Sample.of("h_bucket", (("le", "+Inf"),), 4.0, T0, "histogram"),
               Sample.of("h_bucket", (("le", "10"),), 2.0, T0, "histogram"),
               Sample.of("h_bucket", (("le", "2.5"),), 1.0, T0, "histogram")], now=0.0)
    assert store.render().splitlines() == ["# HELP h h", "# TYPE h histogram", 'h_bucket{le="2.5"} 1.0', 'h_bucket{le="10"} 2.0',
                                           'h_bucket{le="+Inf"} 4.0', "h_count 4.0"]


async def test_the_newest_sample_of_a_series_wins(tmp_path: Path, free_port: int) -> None:
    async with running_sink(free_port, tmp_path) as (send, _):
        for b in (batch(Sample.of("g", (), 1.0, T0, "gauge"), Sample.of("g", (), 2.0, T0 + 1000, "gauge")),
                  batch(Sample.of("g", (), 0.5, T0 + 500, "gauge"))):  # arrives late: older than what is stored
            send(b)
            await stored(b)
        assert values((await scrape(free_port))["g"]) == {("g", ()): 2.0}


async def test_a_stale_marker_removes_its_series_only(tmp_path: Path, free_port: int) -> None:
    async with running_sink(free_port, tmp_path) as (send, sink):
        first = batch(Sample.of("up", (("instance", "a"),), 1.0, T0, "gauge"),
                      Sample.of("up", (("instance", "b"),), 1.0, T0, "gauge"))
        send(first)
        await stored(first)
        gone = batch(Sample.of("up", (("instance", "a"),), STALE_NAN, T0 + 1000, "gauge"))
        send(gone)
        await stored(gone)
        assert values((await scrape(free_port))["up"]) == {("up", (("instance", "b"),)): 1.0}
        assert len(sink.store) == 1


async def test_series_not_updated_for_expire_after_are_dropped(tmp_path: Path, free_port: int) -> None:
    async with running_sink(free_port, tmp_path, expire_after=0.3) as (send, _):
        first = batch(Sample.of("old", (), 1.0, T0, "gauge"), Sample.of("kept", (), 1.0, T0, "gauge"))
        send(first)
        await stored(first)
        for i in range(1, 200):  # bounded: "kept" is refreshed every 20 ms, "old" never again
            refresh = batch(Sample.of("kept", (), float(i), T0 + i, "gauge"))
            send(refresh)
            await stored(refresh)
            families = await scrape(free_port)
            if "old" not in families:
                break
            await asyncio.sleep(0.02)
        assert set(families) == {"kept"}


def test_expiry_counts_from_the_last_sample_stored() -> None:
    store = SeriesStore(expire_after=60)
    store.add([Sample.of("a", (), 1.0, T0), Sample.of("b", (), 1.0, T0)], now=100.0)
    store.add([Sample.of("a", (), 2.0, T0 + 1)], now=150.0)
    assert store.expire(now=159.0) == 0
    assert store.expire(now=161.0) == 1
    assert "a 2.0" in store.render() and "b " not in store.render()


async def test_two_sinks_serve_their_own_series_on_their_own_ports(tmp_path: Path) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    async with running_sink(ports[0], tmp_path) as (send_a, _), running_sink(ports[1], tmp_path) as (send_b, _):
        a, b = batch(Sample.of("only_a", (), 1.0, T0, "gauge")), batch(Sample.of("only_b", (), 2.0, T0, "gauge"))
        send_a(a)
        send_b(b)
        await stored(a)
        await stored(b)
        assert set(await scrape(ports[0])) == {"only_a"}
        assert set(await scrape(ports[1])) == {"only_b"}


async def test_a_batch_is_acknowledged_once_stored(tmp_path: Path, free_port: int) -> None:
    batches = [batch(Sample.of("n", (("i", str(i)),), float(i), T0, "counter")) for i in range(3)]
    topo = Topology(pipeline(f"""
sources:
  feed: {{type: test_feed, name: {feed(batches)}, data_type: metrics}}
sinks:
  prom: {{type: prometheus_exporter, inputs: [feed], address: "127.0.0.1:{free_port}"}}
""", tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 10) == 0  # the feed ends once every batch it sent is acknowledged
    assert topo.nodes["feed"].stats.gauges["committed_events"] == 3
    assert topo.nodes["prom"].stats.sent_events == 3


async def test_a_port_in_use_is_one_startup_error_naming_the_sink(tmp_path: Path, free_port: int) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_port))
        holder.listen()
        topo = Topology(pipeline(f"""
sources:
  feed: {{type: test_feed, name: {feed([])}, data_type: metrics}}
sinks:
  prom: {{type: prometheus_exporter, inputs: [feed], address: "127.0.0.1:{free_port}"}}
""", tmp_path), StatsRegistry())
        with pytest.raises(StartupError) as caught:
            await asyncio.wait_for(topo.run(), 5)
    assert str(caught.value) == (f'sink "prom": cannot listen on 127.0.0.1:{free_port}: Address already in use; '
                                 "is another agent or exporter listening? change sinks.prom.address")
