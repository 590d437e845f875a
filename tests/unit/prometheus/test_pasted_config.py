"""prometheus.yml pieces that `promtool check config` (Prometheus 2.42) accepts load as they are."""

from __future__ import annotations

from agent.config.pipeline import load_texts
from agent.prometheus.relabel import Relabeler
from agent.prometheus.targets import job_interval_timeout
from agent.sources.prometheus_scrape import PrometheusScrapeConfig

PIPELINE = """\
sources:
  prom:
    type: prometheus_scrape
    global: {global_}
    scrape_configs:
    - job_name: node
      static_configs: [{{targets: ['127.0.0.1:9100']}}]
      metric_relabel_configs: [{rule}]
sinks:
  out: {{type: blackhole, inputs: [prom]}}
"""
KEEP = "{source_labels: [__name__], regex: 'node_.*', action: keep}"


def source(global_: str = "{}", rule: str = KEEP) -> PrometheusScrapeConfig:
    pipeline = load_texts([(PIPELINE.format(global_=global_, rule=rule), "pipeline.yaml")])
    config = pipeline.components["prom"].config
    assert isinstance(config, PrometheusScrapeConfig)
    return config


def test_a_global_interval_under_10s_without_a_timeout_times_out_at_the_interval() -> None:
    config = source("{scrape_interval: 2s}")  # config.go: an unset timeout is 10s, capped at the interval
    assert config.global_.scrape_timeout == 2.0
    assert job_interval_timeout(config.scrape_configs[0], config.global_) == (2.0, 2.0)


def test_a_global_timeout_unset_is_10s_and_one_given_is_kept() -> None:
    assert source("{scrape_interval: 15s}").global_.scrape_timeout == 10.0
    assert source().global_.scrape_timeout == 10.0
    assert source("{scrape_interval: 15s, scrape_timeout: 3s}").global_.scrape_timeout == 3.0


def test_relabel_actions_are_read_in_any_case() -> None:  # relabel.go lower-cases the action it reads
    rule = source(rule="{source_labels: [__name__], regex: 'node_.*', action: Keep}").scrape_configs[0]
    assert rule.metric_relabel_configs[0].action == "keep"
    labeldrop = source(rule="{regex: tmp_.*, action: LabelDrop}").scrape_configs[0].metric_relabel_configs[0]
    assert labeldrop.action == "labeldrop"
    keep = Relabeler([rule.metric_relabel_configs[0]])
    assert keep.apply({"__name__": "node_load1"}) == {"__name__": "node_load1"}
    assert keep.apply({"__name__": "go_goroutines"}) is None
