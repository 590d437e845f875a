"""The prometheus_scrape source: prometheus.yml's schema, discovery driving the scrape loops, self metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from components import GateSink
from fakes.exporter import FakeExporter
from helpers import pipeline, wait_for
from prometheus_client import generate_latest

from agent.core.errors import ConfigErrors
from agent.core.metric import Sample
from agent.observe.metrics import AgentCollector, build_registry
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.prometheus import is_stale
from agent.sources.prometheus_scrape import PrometheusScrapeSource
from agent.topology.running import Topology, build_component

PAGE = "# TYPE node_load1 gauge\nnode_load1 0.5\n"


def scrape_pipeline(tmp_path: Path, body: str) -> str:
    return f"""
sources:
  node:
    type: prometheus_scrape
    global: {{scrape_interval: 200ms, scrape_timeout: 150ms, external_labels: {{cluster: eu}}}}
    scrape_configs:
{body}
sinks:
  got: {{type: test_gate, inputs: [node], open: true}}
"""


def test_config_errors_name_the_problem(tmp_path: Path) -> None:
    twice = "      - {job_name: a}\n      - {job_name: a}\n"
    with pytest.raises(ConfigErrors, match="multiple scrape configs with job name 'a'"):
        pipeline(scrape_pipeline(tmp_path, twice), tmp_path)
    with pytest.raises(ConfigErrors, match=r"test\.yaml:.*scrape_intervall"):
        pipeline(scrape_pipeline(tmp_path, "      - {job_name: a, scrape_intervall: 1s}\n"), tmp_path)
    with pytest.raises(ConfigErrors, match="scrape_timeout"):
        pipeline(scrape_pipeline(tmp_path, "      - {job_name: a, scrape_timeout: 1s}\n"), tmp_path)  # > global interval


async def test_scrapes_static_targets_through_the_pipeline(tmp_path: Path) -> None:
    async with FakeExporter() as a, FakeExporter() as b:
        a.serve("/metrics", PAGE)
        b.serve("/metrics", PAGE)
        targets = ", ".join(f'"{e.base.removeprefix("http://")}"' for e in (a, b))
        body = f"      - {{job_name: node, static_configs: [{{targets: [{targets}], labels: {{env: prod}}}}]}}\n"
        stats = StatsRegistry()
        topo = Topology(pipeline(scrape_pipeline(tmp_path, body), tmp_path), stats)
        run = asyncio.create_task(topo.run())
        await topo.ready.wait()
        got = GateSink.instances["got"]

        def up_instances() -> set[str]:
            return {dict(s.labels)["instance"] for s in got.events if isinstance(s, Sample) and s.name == "up"
                    and s.value == 1}

        await wait_for(lambda: len(up_instances()) == 2)
        text = generate_latest(build_registry(AgentCollector(stats, dict, {}))).decode()
        labels = 'component_id="node",component_kind="source",component_type="prometheus_scrape"'
        assert f'agent_scrape_targets{{{labels},health="up"}} 2.0' in text
        assert f'agent_scrape_duration_seconds_count{{{labels},job="node"}}' in text
        assert f'agent_scrape_samples{{{labels},instance="{a.base[7:]}",job="node"}} 1.0' in text
        topo.request_stop()
        assert await asyncio.wait_for(run, 5) == 0
        load = next(s for s in got.events if isinstance(s, Sample) and s.name == "node_load1")
        assert dict(load.labels).keys() == {"cluster", "env", "instance", "job"}
        assert dict(load.labels)["cluster"] == "eu"  # global.external_labels
        assert not any(is_stale(s.value) for s in got.events if isinstance(s, Sample))  # none at shutdown


def build_source(tmp_path: Path, body: str) -> tuple[PrometheusScrapeSource, ComponentStats]:
    stats = ComponentStats("node", "source", "prometheus_scrape")
    source = build_component(pipeline(scrape_pipeline(tmp_path, body), tmp_path).components["node"], tmp_path, stats)
    assert isinstance(source, PrometheusScrapeSource)
    return source, stats


class Sent:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    async def send(self, batch: object) -> None:
        self.samples.extend(batch.events)  # type: ignore[attr-defined]


async def test_discovery_changes_add_and_remove_loops_without_restarting_the_others(tmp_path: Path) -> None:
    from agent.core.component import SourceContext

    async with FakeExporter() as a, FakeExporter() as b, FakeExporter() as c:
        for exporter in (a, b, c):
            exporter.serve("/metrics", PAGE)
        source, node_stats = build_source(tmp_path, "      - {job_name: node}\n")
        job = source.config.scrape_configs[0]
        sent = Sent()
        ctx = SourceContext("node", sent, asyncio.Event(), tmp_path, node_stats, False)
        run = asyncio.create_task(source.run(ctx))
        await asyncio.sleep(0)

        def address(e: FakeExporter) -> dict[str, str]:
            return {"__address__": e.base.removeprefix("http://")}

        def scrapes(e: FakeExporter) -> int:
            return len(e.requests)

        source.update(job, "file_sd/0", [address(a), address(b)])
        await wait_for(lambda: scrapes(a) >= 1 and scrapes(b) >= 1)
        loops = dict(source._loops["node"])
        a_task = next(loop._task for loop in loops.values() if loop.target.url.startswith(a.base))

        source.update(job, "file_sd/0", [address(a), address(c)])  # b goes, c comes
        await wait_for(lambda: scrapes(c) >= 1)
        now = source._loops["node"]
        assert {loop.target.url for loop in now.values()} == {a.url(), c.url()}
        assert next(loop._task for loop in now.values() if loop.target.url == a.url()) is a_task
        assert not a_task.done()  # a kept scraping, untouched
        b_instance = b.base.removeprefix("http://")
        await wait_for(lambda: any(is_stale(s.value) and dict(s.labels)["instance"] == b_instance
                                   for s in sent.samples if s.name == "up"))
        gone = {s.name for s in sent.samples if is_stale(s.value)}
        assert gone == {"node_load1", "up", "scrape_duration_seconds", "scrape_samples_scraped",
                        "scrape_samples_post_metric_relabeling", "scrape_series_added"}
        b_scrapes = scrapes(b)
        await wait_for(lambda: scrapes(a) >= 3)
        assert scrapes(b) == b_scrapes  # stopped

        health = node_stats.scrape
        assert health is not None and set(health.health) == {("node", a.base[7:]), ("node", c.base[7:])}
        ctx.shutdown.set()
        await asyncio.wait_for(run, 5)
        assert source._loops["node"] and all(loop._task.done() for loop in source._loops["node"].values())


async def test_a_discoverer_that_fails_is_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.core.component import SourceContext
    from agent.sources import prometheus_scrape

    runs = 0

    class Flaky:
        name = "flaky/0"

        async def run(self, update: object) -> None:
            nonlocal runs
            runs += 1
            if runs == 1:
                raise RuntimeError("boom")
            await asyncio.Event().wait()

    monkeypatch.setattr(prometheus_scrape, "discoverers_for", lambda config, config_dir: [Flaky()])
    monkeypatch.setattr(prometheus_scrape, "DISCOVERY_MAX_BACKOFF", 0.01)
    source, stats = build_source(tmp_path, "      - {job_name: node}\n")
    ctx = SourceContext("node", Sent(), asyncio.Event(), tmp_path, stats, False)
    run = asyncio.create_task(source.run(ctx))
    await wait_for(lambda: runs == 2, timeout=5)
    assert stats.errors[("discovery_failed", "discovery")] == 1
    ctx.shutdown.set()
    await asyncio.wait_for(run, 5)
