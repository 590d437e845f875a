from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PIPELINES_DIR = Path(__file__).resolve().parents[2] / "pipelines"
PIPELINES = sorted(PIPELINES_DIR.glob("*.yaml"))
# one per deployment of ../shared/examples and of the Kafka tier (pipelines/README.md)
DEPLOYMENTS = {"kubernetes-daemonset.yaml", "vm-filebeat.yaml", "logstash-central.yaml", "metrics.yaml",
               "edge-kafka.yaml", "aggregator-kafka.yaml"}


def test_every_deployment_has_its_pipeline() -> None:
    assert DEPLOYMENTS <= {path.name for path in PIPELINES}
    assert not (PIPELINES_DIR / "examples").exists()  # one file per deployment, at the top level


def test_the_readme_has_a_line_for_each_pipeline() -> None:
    listed = set(re.findall(r"^\| \[([\w.-]+\.yaml)\]", (PIPELINES_DIR / "README.md").read_text(), re.M))
    assert listed == {path.name for path in PIPELINES}


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_example_pipeline_validates(path: Path) -> None:
    required = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text())  # secrets a user must set
    env = {**os.environ, **dict.fromkeys(required, "placeholder")}
    result = subprocess.run([sys.executable, "-m", "agent", "validate", "--no-environment", "--deny-warnings",
                             "-c", str(path)], capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr


def test_the_default_pipeline_adds_the_demo_only_without_container_logs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import glob

    from agent.app import default_pipeline_text, load_pipeline

    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    pipeline = load_pipeline([])
    assert set(pipeline.components) == {"containers", "host", "demo", "console"}
    assert pipeline.components["console"].inputs == ["containers", "host", "demo"]
    monkeypatch.setattr(glob, "glob", lambda pattern: ["/var/log/containers/a_b_c-0.log"])
    assert "type: generate" not in default_pipeline_text()


def test_the_metrics_pipeline_is_the_translation_of_prometheus_yml() -> None:
    """metrics.yaml is `agent migrate prometheus` of the example but for what its header says it changed: the
    global scrape_timeout written out, external_labels on the sink only."""
    from agent.migrate.prometheus import migrate

    example = Path(__file__).parent / "examples" / "prometheus.yml"
    translated = yaml.safe_load(migrate(example.read_text(), str(example)))
    shipped = yaml.safe_load((PIPELINES_DIR / "metrics.yaml").read_text())
    translated_global = translated["sources"]["prometheus"]["global"]
    assert translated_global.pop("external_labels") == shipped["sinks"]["remote_write"]["external_labels"]
    translated_global["scrape_timeout"] = "10s"
    assert shipped == translated
