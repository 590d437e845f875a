"""Scrape targets: what discovery found, turned into what one scrape loop needs.

``ScrapeTarget`` is the contract between target building (discovered label sets, ``relabel_configs``,
Prometheus's ``PopulateLabels``) and the scrape loop; the building itself is written next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.prometheus.config import ScrapeConfig
from agent.prometheus.relabel import RelabelConfig


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One target of one job, after relabelling: where to scrape, how often, and the labels its series get.

    ``labels`` are the final target labels (``job``, ``instance`` and whatever relabelling left), sorted by
    name, without any ``__``-prefixed label. ``key`` identifies the target across discovery updates (the
    job and its labels before ``__meta_*`` were dropped: Prometheus's target hash). ``config`` is the job's
    (auth, TLS, limits, honor_* and ``metric_relabel_configs``); ``interval`` and ``timeout`` are resolved
    against ``global``.
    """

    key: str
    url: str  # scheme://address/metrics_path?params
    labels: tuple[tuple[str, str], ...]
    interval: float
    timeout: float
    config: ScrapeConfig

    @property
    def job(self) -> str:
        return self.config.job_name

    @property
    def metric_relabel_configs(self) -> list[RelabelConfig]:
        return self.config.metric_relabel_configs
