"""Source `prometheus_scrape`: scrapes Prometheus exporters, configured with prometheus.yml's own schema.

``global`` and ``scrape_configs`` are pasted as they are. Each job's discoverers (static, file, HTTP,
Kubernetes) report their target groups; the job's targets are rebuilt from them (``relabel_configs``) on
every change, and one scrape loop runs per target (:mod:`agent.prometheus.scrape`): a new target gets a
loop, a target that went away has its loop stopped (its series marked stale), and the other loops go on
untouched. ``global.external_labels`` are added to every series that does not have the label (Prometheus
adds them when it writes remotely, which is where these samples go). The source keeps no position: a
scrape that a crash interrupted is not repeated, as in Prometheus.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from agent.config.model import SourceConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch
from agent.core.component import SourceContext
from agent.observe.stats import ComponentStats, ScrapeStats
from agent.prometheus.config import GlobalConfig, ScrapeConfig
from agent.prometheus.discovery import Discoverer, discoverers_for
from agent.prometheus.scrape import ScrapeClient, ScrapeLoop
from agent.prometheus.targets import ScrapeTarget, build_targets, job_interval_timeout

log = logging.getLogger(__name__)

DISCOVERY_MAX_BACKOFF = 30.0


class PrometheusScrapeConfig(SourceConfig, tag="prometheus_scrape"):
    """Scrape Prometheus exporters as Prometheus does: paste ``global`` and ``scrape_configs`` of a prometheus.yml.

    Targets come from ``static_configs``, ``file_sd_configs``, ``http_sd_configs`` and ``kubernetes_sd_configs`` (this
    node's pods); relabelling, limits, ``honor_labels`` and stale markers follow Prometheus. Each target is scraped on
    its own schedule and a bad target fails only its own scrape (``up`` is 0, the reason counted). Emits metric samples,
    including ``up`` and the other per-target series Prometheus writes. Job names are unique.
    """

    global_: GlobalConfig = msgspec.field(default_factory=GlobalConfig, name="global")
    """prometheus.yml's global: default interval and timeout of every job, and external_labels added to every series."""
    scrape_configs: list[ScrapeConfig] = msgspec.field(default_factory=list)
    """prometheus.yml's scrape_configs: one entry per job, keys and defaults as in Prometheus."""

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for job in self.scrape_configs:
            if job.job_name in seen:
                raise ValueError(f"found multiple scrape configs with job name {job.job_name!r}")
            seen.add(job.job_name)
            job_interval_timeout(job, self.global_)  # a timeout longer than the (global) interval

    def output_type(self) -> str:
        return "metrics"


@register("source", "prometheus_scrape", PrometheusScrapeConfig,
          "Scrapes Prometheus exporters (prometheus.yml's scrape_configs).")
class PrometheusScrapeSource:
    """Runs discovery per job and one scrape loop per target, until shutdown."""

    output_type = "metrics"

    def __init__(self, config: PrometheusScrapeConfig, ctx: BuildContext) -> None:
        self.config = config
        self.config_dir = ctx.config_dir
        self.stats = ctx.stats
        self.scrape_stats = ctx.stats.scrape = ctx.stats.scrape or ScrapeStats()
        self.clients = {job.job_name: ScrapeClient(job, ctx.config_dir) for job in config.scrape_configs}
        self._groups: dict[str, dict[str, list[dict[str, str]]]] = {job.job_name: {} for job in config.scrape_configs}
        self._loops: dict[str, dict[str, ScrapeLoop]] = {job.job_name: {} for job in config.scrape_configs}
        self._dropped: dict[str, int] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._ctx: SourceContext | None = None
        ctx.stats.gauges["targets_dropped"] = lambda: float(sum(self._dropped.values()))

    async def run(self, ctx: SourceContext) -> None:
        self._ctx = ctx
        tasks = [asyncio.create_task(self._discover(job, d), name=f"discovery {job.job_name} {d.name}")
                 for job in self.config.scrape_configs for d in discoverers_for(job, self.config_dir)]
        try:
            await ctx.shutdown.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loops = [loop for by_key in self._loops.values() for loop in by_key.values()]
            await asyncio.gather(*(loop.stop(mark_stale=False) for loop in loops))  # no stale markers on shutdown
            await asyncio.gather(*self._stopping, return_exceptions=True)
            await asyncio.gather(*(client.close() for client in self.clients.values()))

    async def _send(self, batch: Batch) -> None:
        assert self._ctx is not None
        stats: ComponentStats = self._ctx.stats
        stats.received_events += len(batch.events)
        stats.received_bytes += batch.byte_size
        await self._ctx.out.send(batch)

    async def _discover(self, job: ScrapeConfig, discoverer: Discoverer) -> None:
        """Runs one discoverer; one that fails is logged, counted and started again after a backoff."""
        backoff = 1.0
        while True:
            try:
                await discoverer.run(lambda name, label_sets: self.update(job, name, label_sets))
                return
            except Exception:
                log.exception("discovery %s of job %s failed; restarting it", discoverer.name, job.job_name)
                self.stats.error("discovery_failed", "discovery")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, DISCOVERY_MAX_BACKOFF)

    def update(self, job: ScrapeConfig, name: str, label_sets: list[dict[str, str]]) -> None:
        """A discoverer's current groups: the job's targets are rebuilt and its loops brought in line."""
        groups = self._groups[job.job_name]
        groups[name] = label_sets
        try:
            targets, dropped = build_targets(job, self.config.global_, [s for sets in groups.values() for s in sets])
        except Exception:
            log.exception("building the targets of job %s failed; keeping the current ones", job.job_name)
            self.stats.error("target_build_failed", "discovery")
            return
        self._dropped[job.job_name] = dropped
        self._sync(job.job_name, {target.key: target for target in targets})

    def _sync(self, job: str, wanted: dict[str, ScrapeTarget]) -> None:
        loops = self._loops[job]
        for key in [key for key, loop in loops.items() if wanted.get(key) != loop.target]:
            task = asyncio.get_running_loop().create_task(loops.pop(key).stop(mark_stale=True))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        for key, target in wanted.items():
            if key not in loops:
                loop = loops[key] = ScrapeLoop(target, self.clients[job], self._send, self.scrape_stats,
                                               self.config.global_.external_labels)
                loop.start()
