"""The metrics path end to end, with the real peers: `agent run` scrapes the real node exporter and
remote-writes into the real Prometheus, and Prometheus's query API says what arrived."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml
from agent_process import AgentProcess, metric_value
from peers.prometheus import Prometheus


def _write_targets(path: Path, targets: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": targets, "labels": {"team": "infra"}}] if targets else []))
    tmp.replace(path)  # file_sd reads whole files: never a half-written one


def _wait_gone(prometheus: Prometheus, expr: str, timeout: float) -> list[dict]:
    """Query until nothing matches (a stale series is not returned by an instant query); the last result."""
    deadline = time.monotonic() + timeout
    while (result := prometheus.query(expr)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return result


def test_node_exporter_to_prometheus_relabelled_with_external_labels_and_staleness(
        tmp_path: Path, free_port: int, node_exporter: str, prometheus: Prometheus,
        start_agent: Callable[..., AgentProcess]) -> None:
    targets = tmp_path / "targets.json"
    address = node_exporter.removeprefix("http://")
    _write_targets(targets, [address])
    config = {
        "data_dir": str(tmp_path / "data"),
        "api": {"address": f"127.0.0.1:{free_port}"},
        "sources": {"node": {
            "type": "prometheus_scrape",
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "external_labels": {"cluster": "e2e"}},
            "scrape_configs": [{
                "job_name": "node",
                "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
                "relabel_configs": [{"target_label": "env", "replacement": "test"}],
                "metric_relabel_configs": [
                    {"source_labels": ["__name__"], "regex": "node_scrape_collector_.*", "action": "drop"},
                    {"source_labels": ["mode"], "target_label": "cpu_mode"},
                ],
            }],
        }},
        "sinks": {"prom": {"type": "prometheus_remote_write", "inputs": ["node"], "url": prometheus.write_url,
                           "queue_config": {"batch_send_deadline": "200ms", "max_shards": 4}}},
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    agent = start_agent(["run", "-c", str(path)])
    agent.wait_ready()

    up = prometheus.wait_for('up{job="node"} == 1', timeout=20)
    assert up, agent.logs()[-2000:]
    labels = up[0]["metric"]
    assert (labels["instance"], labels["env"], labels["team"], labels["cluster"]) == (address, "test", "infra", "e2e")

    cpu = prometheus.wait_for('node_cpu_seconds_total{cpu_mode="idle", env="test", cluster="e2e"}', timeout=10)
    assert cpu and all(series["metric"]["mode"] == "idle" for series in cpu)
    assert prometheus.wait_for('scrape_samples_scraped{job="node"} > 100', timeout=10)
    # the page has node_scrape_collector_* series (checked), and metric_relabel_configs dropped every one
    with urllib.request.urlopen(f"{node_exporter}/metrics", timeout=5) as response:
        assert b"node_scrape_collector_success" in response.read()
    assert prometheus.query('count({__name__=~"node_scrape_collector_.*"})') == []

    _, page = agent.get("/metrics")
    assert metric_value(page.decode(), "agent_scrape_targets", health="up") == 1

    _write_targets(targets, [])  # the target goes away: its series end with stale markers
    assert _wait_gone(prometheus, 'up{job="node"}', timeout=15) == [], agent.logs()[-2000:]
    assert _wait_gone(prometheus, 'node_cpu_seconds_total{job="node"}', timeout=5) == []
    # still there as samples, ended by the stale marker rather than missing
    assert prometheus.query('count_over_time(up{job="node"}[1m]) > 0')
