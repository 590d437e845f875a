"""`agent migrate prometheus`: prometheus.yml into a pipeline that validates; what has no equivalent is named
with its line; YAML errors exit 78 with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.cli import main
from agent.config.pipeline import load_texts
from agent.core.errors import ConfigError
from agent.migrate.prometheus import migrate

EXAMPLES = Path(__file__).parent / "examples"  # copies of ../shared/examples/, pasted by users
EXAMPLE_FILES = ["prometheus.yml", "netra-prometheus.yml"]

FULL = """\
global:
  scrape_interval: 10s
  scrape_timeout: 5s
  external_labels: {cluster: eu-1}
  sample_limit: 5000
rule_files: [rules.yml]
scrape_configs:
  - job_name: node
    static_configs: [{targets: ['127.0.0.1:9100'], labels: {team: infra}}]
    relabel_configs:
      - source_labels: [__address__]
        regex: '([^:]+):.*'
        target_label: host
        replacement: '${1}'
    enable_http2: false
  - job_name: services
    consul_sd_configs: [{server: 'consul:8500'}]
    file_sd_configs: [{files: [targets/*.json]}]
  - job_name: nodes
    kubernetes_sd_configs: [{role: node}]
remote_read:
  - url: http://thanos/read
remote_write:
  - url: http://mimir/api/v1/push
    name: mimir
    headers: {X-Scope-OrgID: team-a}
    remote_timeout: 30s
    send_exemplars: true
    queue_config: {max_samples_per_send: 500, sample_age_limit: 1h}
    write_relabel_configs:
      - {source_labels: [__name__], regex: 'go_.*', action: drop}
  - url: http://backup/api/v1/write
    authorization: {credentials_file: /etc/token}
tracing: {endpoint: 'jaeger:4317'}
"""


def translated(text: str, file: str = "prometheus.yml") -> tuple[str, dict]:
    out = migrate(text, file)
    return out, yaml.safe_load(out)


def comments(out: str) -> list[str]:
    return [line.removeprefix("#   ") for line in out.splitlines() if line.startswith("#   ")]


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_the_example_files_translate_into_pipelines_that_validate(name: str) -> None:
    path = EXAMPLES / name
    out = migrate(path.read_text(), str(path))
    pipeline = load_texts([(out, "migrated.yaml")])
    source = pipeline.components["prometheus"].config
    prometheus_yml = yaml.safe_load(path.read_text())
    assert [job.job_name for job in source.scrape_configs] == [j["job_name"] for j in prometheus_yml["scrape_configs"]]
    assert source.global_.scrape_interval == 15
    assert f"{path}:{_line_of(path, 'rule_files')}: rule_files:" in out
    assert f"{path}:{_line_of(path, 'alerting')}: alerting:" in out
    sinks = {cid: decl.type for cid, decl in pipeline.components.items() if decl.kind == "sink"}
    if "remote_write" in prometheus_yml:
        assert sinks == {"remote_write": "prometheus_remote_write"}
        sink = pipeline.components["remote_write"].config
        assert sink.basic_auth.password_file == "/etc/prometheus/remote-storage-password"
        assert sink.external_labels == {"cluster": "insights-prod", "environment": "production"}
    else:
        assert sinks == {"exported": "prometheus_exporter"}


def _line_of(path: Path, key: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(f"{key}:"))


def test_what_cannot_be_translated_is_named_with_its_line() -> None:
    out, _ = translated(FULL)
    assert comments(out) == [
        "prometheus.yml:6: rule_files: recording and alerting rules are not evaluated by the agent",
        "prometheus.yml:15: scrape_configs[0].enable_http2: not translated",
        "prometheus.yml:17: scrape_configs[1].consul_sd_configs: this service discovery is not supported: "
        "its targets are not scraped",
        "prometheus.yml:19: scrape_configs[2]: job nodes left out: scrape_configs[2].kubernetes_sd_configs[0].role: "
        'invalid value "node", expected one of: pod',
        "prometheus.yml:21: remote_read: the agent keeps no samples to query",
        "prometheus.yml:28: remote_write[0].send_exemplars: not translated",
        "prometheus.yml:29: remote_write[0].queue_config.sample_age_limit: not translated",
        "prometheus.yml:34: tracing: the agent does not trace itself",
    ]


def test_jobs_and_remote_writes_keep_their_keys() -> None:
    _, doc = translated(FULL)
    source = doc["sources"]["prometheus"]
    assert source["global"] == {"scrape_interval": "10s", "scrape_timeout": "5s", "external_labels": {"cluster": "eu-1"}}
    node, services = source["scrape_configs"]
    assert node["relabel_configs"][0]["replacement"] == "$${1}"  # written escaped: it is not a variable
    assert node["sample_limit"] == services["sample_limit"] == 5000  # a global limit, given to every job
    assert services == {"job_name": "services", "file_sd_configs": [{"files": ["targets/*.json"]}], "sample_limit": 5000}
    assert doc["sinks"] == {
        "mimir": {"type": "prometheus_remote_write", "inputs": ["prometheus"], "url": "http://mimir/api/v1/push",
                  "headers": {"X-Scope-OrgID": "team-a"}, "remote_timeout": "30s",
                  "queue_config": {"max_samples_per_send": 500},
                  "write_relabel_configs": [{"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}],
                  "external_labels": {"cluster": "eu-1"}},
        "remote_write_2": {"type": "prometheus_remote_write", "inputs": ["prometheus"],
                           "url": "http://backup/api/v1/write", "authorization": {"credentials_file": "/etc/token"},
                           "external_labels": {"cluster": "eu-1"}},
    }


def test_the_translation_validates_and_keeps_dollar_braces_literal() -> None:
    pipeline = load_texts([(migrate(FULL, "prometheus.yml"), "migrated.yaml")])
    source = pipeline.components["prometheus"].config
    assert source.scrape_configs[0].relabel_configs[0].replacement == "${1}"
    assert sorted(cid for cid, d in pipeline.components.items() if d.kind == "sink") == ["mimir", "remote_write_2"]


def test_the_output_is_the_same_every_time() -> None:
    assert migrate(FULL, "prometheus.yml") == migrate(FULL, "prometheus.yml")


def test_a_yaml_error_names_file_and_line() -> None:
    with pytest.raises(ConfigError) as caught:
        migrate("global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: [\n", "p.yml")
    assert str(caught.value).startswith("p.yml:5: invalid YAML")


def test_the_command_prints_the_pipeline_or_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "prometheus.yml"
    good.write_text("scrape_configs:\n  - job_name: node\n    static_configs: [{targets: ['a:9100']}]\n")
    assert main(["migrate", "prometheus", str(good)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["sources"]["prometheus"]["scrape_configs"][0]["job_name"] == "node"
    bad = tmp_path / "bad.yml"
    bad.write_text("scrape_configs:\n  - job_name: 'node\n")
    assert main(["migrate", "prometheus", str(bad)]) == 78
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"error: {bad}:3: invalid YAML")
    assert main(["migrate", "prometheus", str(tmp_path / "missing.yml")]) == 78
