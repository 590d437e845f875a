"""Bytes a scraped series keeps alive: the scrape loop's caches plus the remote-write sink's series cache.

50 targets of the bench exporter's page (1,000 series each: `agent.bench.peers.targets`) are processed by
their scrape loops three times, every sample encoded by a `prometheus_remote_write` sink; then everything
the scrapes built but not kept is let go, and tracemalloc's count of what is still allocated is divided by
the series. `--top` lists the allocation sites.

    .venv/bin/python benchmarks/memory_per_series.py [--top]
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path

from agent.bench.peers.targets import Targets
from agent.bench.scenarios.common import _pipeline
from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.delivery.batcher import Request
from agent.observe.stats import ScrapeStats, StatsRegistry
from agent.prometheus.scrape import ScrapeClient, ScrapeLoop
from agent.prometheus.targets import build_targets
from agent.sinks.prometheus_remote_write import PrometheusRemoteWriteSink

TARGETS, SERIES, SCRAPES = 50, 1000, 3


async def _never(batch: Batch) -> None:
    raise AssertionError("process() is called, not scrape_once()")


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="memory-per-series-")
    addresses = [f"127.0.0.1:{10000 + t}" for t in range(TARGETS)]
    source = {"type": "prometheus_scrape", "scrape_configs": [{"job_name": "bench",
                                                               "static_configs": [{"targets": addresses}]}]}
    sink = {"type": "prometheus_remote_write", "inputs": ["in"], "url": "http://127.0.0.1:9/api/v1/write"}
    pipeline = _pipeline("memory", tmp, {"in": source}, {"out": sink})
    scrape_config = pipeline.components["in"].config
    job = scrape_config.scrape_configs[0]
    targets, _ = build_targets(job, scrape_config.global_, [{"__address__": a} for a in addresses])
    stats = StatsRegistry().get("out", "sink", "prometheus_remote_write")
    context = BuildContext("out", Path(tmp), Path(tmp), stats)
    writer = PrometheusRemoteWriteSink(pipeline.components["out"].config, context)
    client = ScrapeClient(job, Path(tmp))
    pages = Targets(TARGETS, SERIES)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    loops = [ScrapeLoop(target, client, _never, ScrapeStats()) for target in targets]
    for scrape in range(SCRAPES):
        for i, loop in enumerate(loops):
            samples, _, _, _ = loop.process(pages.page(i), "text/plain; version=0.0.4",
                                            1_700_000_000_000 + scrape * 15_000)
            for start in range(0, len(samples), 2000):
                writer.encode(Request(Kind.METRICS, None, samples[start:start + 2000], [], 0))
        del samples
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    series = TARGETS * SERIES
    print(f"{kept / series:.0f} bytes per series ({series} series: scrape loop caches + remote-write series cache)")
    if "--top" in sys.argv:
        for stat in tracemalloc.take_snapshot().statistics("lineno")[:10]:
            print(f"{stat.size / series:7.0f} B/series  {stat.traceback}")
    asyncio.run(client.close())


if __name__ == "__main__":
    main()
