"""The metrics scenarios: a scrape's page to remote-write requests, in process and end to end.

``scrape_page_to_remote_write`` is the metrics path's CPU cost per sample with nothing else around it: a
real node-exporter page (``agent/bench/data/node_exporter.prom``, 1,490 samples) processed by the scrape
loop of a static target over and over (parse, target labels, ``metric_relabel_configs`` with a drop and a
replace rule, external labels), each round with a new scrape timestamp, and its samples cut into requests
and encoded by the remote-write sink as it does it (its partitions, ``max_samples_per_send`` 2000, its
``encode``: WriteRequest and snappy). No HTTP. One round first warms the caches (the scrape loop's
per-series labels, the sink's per-series label fields) and is not timed: a target's series are the same at
every scrape, so the steady state is what a long-running agent pays. ``--events`` counts samples (whole
pages). A wrong request fails the run: three requests are decoded and checked against the page.

``scrape_500_targets_to_remote_write`` is the agent at work: 500 simulated exporters of 1,000 series
each in another process (``python -m agent.bench.peers targets``), scraped every 15 s by a
``prometheus_scrape`` source, written by ``prometheus_remote_write`` (Prometheus's queue defaults) to a
receiver in another process (``remote_write``) that decodes every request. The first interval warms up
(connections, caches); the CPU of the agent's process over the following intervals, as a fraction of one
core, is the figure. ``--events`` counts samples: rounded up to whole intervals, at least two. Then the
targets stop answering (a scrape after that is held, never answered), the agent delivers what it has, and
the receiver must have exactly 1,005 samples (1,000 + the 5 report series, ``up`` 1) per scrape the targets
answered, and no stale marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from agent.bench.peers import RemoteWriteReceiver, ScrapeTargets
from agent.bench.peers.lines import HOST
from agent.bench.peers.remote_write import iter_series
from agent.bench.peers.targets import raise_open_files
from agent.bench.scenarios.common import (
    BenchError,
    Meter,
    ProgressFn,
    Result,
    _pipeline,
    _progress,
    _sink_stats,
    _stop_agent,
)
from agent.config.registry import BuildContext
from agent.config.units import parse_duration
from agent.core.batch import Batch, Kind
from agent.delivery.batcher import Batcher, Request
from agent.observe.stats import ScrapeStats, StatsRegistry
from agent.prometheus.scrape import REPORT_NAMES, SAMPLE_BYTES, ScrapeClient, ScrapeLoop
from agent.prometheus.targets import build_targets
from agent.sinks.prometheus_remote_write import PrometheusRemoteWriteSink
from agent.topology.running import Topology

PAGE = "node_exporter.prom"
PAGE_INTERVAL_MS = 15_000
# What users write: drop the exporter's own Go runtime and collector series, copy a NIC's device to interface.
METRIC_RELABEL = [
    {"source_labels": ["__name__"], "regex": "go_.*|node_scrape_collector_.*", "action": "drop"},
    {"source_labels": ["__name__", "device"], "regex": "node_network_.+;(.+)", "target_label": "interface"},
]
EXTERNAL_LABELS = {"cluster": "bench", "replica": "a"}
TARGETS, SERIES, INTERVAL_S = 500, 1_000, 15.0
SETTLE_S = 15.0  # after the freeze: how long the delivery of the last scrapes may take beyond batch_send_deadline


def load_page() -> bytes:
    """The node-exporter page the scenario scrapes (package data)."""
    return (resources.files("agent") / "bench" / "data" / PAGE).read_bytes()


# -- scrape_page_to_remote_write --------------------------------------------------------------------------


async def scrape_page_to_remote_write(events: int, progress: ProgressFn | None = None) -> Result:
    """A node-exporter page: scrape loop processing -> remote-write requests (encoded, snappy), in process."""
    name = "scrape_page_to_remote_write"
    page = load_page()
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        source = {"type": "prometheus_scrape", "global": {"external_labels": EXTERNAL_LABELS},
                  "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": [f"{HOST}:9100"]}],
                                      "metric_relabel_configs": METRIC_RELABEL}]}
        sink = {"type": "prometheus_remote_write", "inputs": ["in"], "url": f"http://{HOST}:9/api/v1/write"}
        pipeline = _pipeline(name, tmp, {"in": source}, {"out": sink})
        scrape_config, sink_config = pipeline.components["in"].config, pipeline.components["out"].config
        job = scrape_config.scrape_configs[0]
        (target,), _ = build_targets(job, scrape_config.global_, [{"__address__": f"{HOST}:9100"}])

        async def never(batch: Batch) -> None:
            raise AssertionError("the scenario calls process, not scrape_once")

        loop = ScrapeLoop(target, ScrapeClient(job, Path(tmp)), never, ScrapeStats(),
                          scrape_config.global_.external_labels)
        stats = StatsRegistry().get("out", "sink", "prometheus_remote_write")
        writer = PrometheusRemoteWriteSink(sink_config, BuildContext("out", Path(tmp), Path(tmp), stats))
        limits = writer.driver.config.batch  # the batching its driver does

        def batcher() -> Batcher:
            return Batcher(writer.partition_key, limits.max_events, int(limits.max_bytes), float(limits.timeout))

        first_ms = int(time.time() * 1000)
        warm, scraped, kept, _ = loop.process(page, "text/plain; version=0.0.4", first_ms)  # caches fill
        warm_batcher = batcher()
        for request in warm_batcher.add(Batch(warm, Kind.METRICS, SAMPLE_BYTES * len(warm))) + warm_batcher.drain():
            writer.encode(request)
        expected = {(s.name, s.labels): s.value for s in warm}
        rounds = max(1, math.ceil(events / kept))
        checked: list[tuple[Request, bytes]] = []
        requests = wire_bytes = encoded = 0
        timed = batcher()
        meter = Meter()
        for r in range(1, rounds + 1):
            samples, _, _, _ = loop.process(page, "text/plain; version=0.0.4", first_ms + r * PAGE_INTERVAL_MS)
            full = timed.add(Batch(samples, Kind.METRICS, SAMPLE_BYTES * len(samples)))
            if r == rounds:
                full += timed.drain()
            for request in full:
                body = writer.encode(request)
                requests += 1
                wire_bytes += len(body)
                encoded += len(request.events)
                if requests == 1 or (len(checked) < 3 and r == rounds):
                    checked.append((request, body))
            if progress is not None and r % 64 == 0:
                progress(r * kept)
        result = meter.stop(name, rounds * kept, rounds * len(page))
        if progress is not None:
            progress(rounds * kept)
    problems = [] if encoded == rounds * kept else [f"{encoded} samples encoded, not {rounds * kept}"]
    problems += [problem for request, body in checked for problem in _check_request(request, body, expected)]
    if stats.discarded:
        problems.append(f"samples discarded by the sink: {dict(stats.discarded)}")
    if problems:
        raise BenchError(f"{name}: {'; '.join(problems[:5])}")
    result.extra.update({"samples_per_scrape": kept, "scraped_per_scrape": scraped, "requests": requests,
                         "request_wire_bytes": wire_bytes, "samples_per_s": round(result.events_per_s)})
    return result


def _check_request(request: Request, body: bytes, expected: dict[tuple[str, Any], float]) -> list[str]:
    """What is wrong with one encoded request: its samples, their values and labels against the page's."""
    import cramjam

    problems: list[str] = []
    series = list(iter_series(bytes(cramjam.snappy.decompress_raw(body))))
    if sum(len(points) for _, points in series) != len(request.events):
        problems.append(f"a request of {len(request.events)} samples decodes to "
                        f"{sum(len(points) for _, points in series)}")
    stamps = {s.timestamp_ms for s in request.events}
    for labels, points in series:
        fields = dict(labels)
        name = fields.pop("__name__", "")
        key = (name, tuple(sorted(fields.items())))
        if labels != sorted(labels) or key not in expected:
            problems.append(f"unexpected series {labels}")
        elif any(value != expected[key] or stamp not in stamps for value, stamp in points):
            problems.append(f"series {labels}: samples {points[:3]} differ from the page's {expected[key]}")
        if name.startswith(("go_", "node_scrape_collector_")) or fields.get("interface", "") != (
                fields.get("device", "") if name.startswith("node_network_") else ""):
            problems.append(f"series {labels} not relabelled as configured")
    return problems


# -- scrape_500_targets_to_remote_write -------------------------------------------------------------------


async def scrape_500_targets_to_remote_write(events: int, progress: ProgressFn | None = None) -> Result:
    """500 simulated exporters (another process) -> prometheus_scrape -> prometheus_remote_write -> receiver."""
    return await scrape_targets_to_remote_write("scrape_500_targets_to_remote_write", events, progress)


async def scrape_targets_to_remote_write(name: str, events: int, progress: ProgressFn | None = None,
                                         targets: int = TARGETS, series: int = SERIES,
                                         interval: float = INTERVAL_S,
                                         batch_send_deadline: str = "5s") -> Result:
    """The scenario with its sizes as parameters (the tests run it small and fast)."""
    per_scrape = series + len(REPORT_NAMES)
    intervals = max(2, math.ceil(events / (targets * per_scrape)))
    needed = targets + 256  # a connection per target, the sink's shards, the peers' pipes
    if raise_open_files(needed) < needed:
        raise BenchError(f"{name}: the open files limit is below {needed}: raise ulimit -n")
    async with contextlib.AsyncExitStack() as stack:
        receiver = await RemoteWriteReceiver.start()
        stack.push_async_callback(receiver.close)
        exporters = await ScrapeTargets.start(targets, series)
        stack.push_async_callback(exporters.close)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-"))
        ms = f"{round(interval * 1000)}ms"
        source = {"type": "prometheus_scrape",
                  "global": {"scrape_interval": ms, "scrape_timeout": f"{round(min(interval, 10.0) * 1000)}ms"},
                  "scrape_configs": [{"job_name": "bench", "static_configs": [
                      {"targets": [f"{HOST}:{port}" for port in exporters.ports]}]}]}
        sink = {"type": "prometheus_remote_write", "inputs": ["in"], "url": f"http://{HOST}:{receiver.port}/api/v1/write",
                "queue_config": {"batch_send_deadline": batch_send_deadline}}
        pipeline = _pipeline(name, tmp, {"in": source}, {"out": sink})
        stats = StatsRegistry()
        sink_stats = _sink_stats(stats, pipeline)
        topology = Topology(pipeline, stats)
        meter = Meter()
        started = time.monotonic()
        agent = asyncio.create_task(topology.run(), name="bench-agent")
        stack.push_async_callback(_stop_agent, topology, agent)
        async with _progress(lambda: sink_stats.sent_events, progress):
            await _until(agent, started + interval)
            steady = Meter()
            await _until(agent, started + intervals * interval)
            window = steady.stop(name, 0, 0)
            served = await exporters.ask(b"freeze")
            expected = served["scrapes"] * per_scrape
            counted = await _delivered(receiver, agent, expected, parse_duration(batch_send_deadline) + SETTLE_S)
        await _stop_agent(topology, agent)
        result = meter.stop(name, counted["samples"], served["bytes"])
        final = await receiver.final()
        problems = _check_delivery(final, served, expected, intervals)
        if agent.result() != 0:
            problems.append(f"agent exit code {agent.result()}")
        if problems:
            raise BenchError(f"{name}: {'; '.join(problems)} (targets answered {served['scrapes']} scrapes, "
                             f"{per_scrape} samples each; receiver: {final})")
    steady_samples = targets * per_scrape * (intervals - 1)
    result.extra.update({
        "targets": targets, "series_per_target": series, "interval_s": interval, "intervals": intervals,
        "scrapes": served["scrapes"], "steady_wall_s": round(window.wall_s, 3), "steady_cpu_s": round(window.cpu_s, 3),
        "steady_cpu_fraction": round(window.cpu_s / window.wall_s, 4),
        "steady_cpu_s_per_million_samples": round(window.cpu_s / steady_samples * 1e6, 3),
        "requests": final["requests"], "request_wire_bytes": final["wire_bytes"],
        "receiver_cpu_s": final["cpu_s"], "targets_cpu_s": served["cpu_s"]})
    return result


async def _until(agent: asyncio.Task[int], deadline: float) -> None:
    """Sleep until ``deadline`` (monotonic); BenchError if the agent stops first."""
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.wait([agent], timeout=min(left, 1.0))
        if agent.done():
            why = "cancelled" if agent.cancelled() else agent.exception() or f"exit code {agent.result()}"
            raise BenchError(f"the agent stopped early ({why})")


async def _delivered(receiver: RemoteWriteReceiver, agent: asyncio.Task[int], expected: int,
                     wait_s: float) -> dict[str, Any]:
    """The receiver's counts once ``expected`` samples arrived, or after ``wait_s`` (the check then fails)."""
    deadline = time.monotonic() + wait_s
    while True:
        counted = await receiver.ask()
        if counted["samples"] >= expected or time.monotonic() > deadline or agent.done():
            return counted
        await asyncio.sleep(0.2)


def _check_delivery(final: dict[str, Any], served: dict[str, Any], expected: int, intervals: int) -> list[str]:
    problems = []
    if final["samples"] != expected:
        problems.append(f"the receiver decoded {final['samples']} samples, expected {expected}")
    if final["up"] != served["scrapes"] or final["up_not_one"]:
        problems.append(f"{final['up']} up samples ({final['up_not_one']} not 1) for {served['scrapes']} scrapes")
    if final["stale"] or final["refused"]:
        problems.append(f"{final['stale']} stale markers, {final['refused']} requests refused")
    if served["min_scrapes"] < intervals - 1:
        problems.append(f"a target was scraped {served['min_scrapes']} times in {intervals} intervals")
    return problems
