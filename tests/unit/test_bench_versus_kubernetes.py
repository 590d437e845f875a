"""The tail -> kubernetes side by side (agent/bench/versus/kubernetes.py): its files, configs and arithmetic, and
one tiny real run against the fake API server (Fluent Bit's side only where it is installed)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fakes.kubernetes import realistic_pod

from agent.bench.peers.kubernetes import TOKEN, FakeApiServer, kubeconfig, write_pod_logs
from agent.bench.versus import kubernetes as bench
from agent.bench.versus.measure import Window
from agent.bench.versus.run import RunResult
from agent.bench.versus.sides import FluentBitMissing, find_fluent_bit
from agent.kubernetes.config import from_kubeconfig
from agent.sources.tail.files import kubernetes_fields

REPO = Path(__file__).resolve().parents[2]


def test_one_file_per_pod_named_as_the_kubelet_names_its_first_containers_log(tmp_path: Path) -> None:
    pods = [realistic_pod(i) for i in range(3)]
    paths, nbytes = write_pod_logs(tmp_path, 1000, pods)
    assert sum(p.read_bytes().count(b"\n") for p in paths) == 1000 and nbytes == sum(p.stat().st_size for p in paths)
    for path, pod in zip(paths, pods, strict=True):
        fields = kubernetes_fields(str(path))
        status = pod["status"]["containerStatuses"][0]
        assert fields == {"pod": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"],
                          "container": "app", "container_id": status["containerID"].removeprefix("containerd://")}
    assert not list(tmp_path.glob("bench-*.log"))


def test_fluent_bit_reads_the_files_with_a_tag_its_filter_strips_to_the_file_name(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    assert bench.tag_prefix(Path("/var/log/containers")) == "kube.var.log.containers."  # Fluent Bit's default
    text = bench.fluent_bit_config(logs, Path("/p.conf"), 4001, "http://127.0.0.1:4002", tmp_path / "token",
                                   tmp_path / "ca.crt")
    assert f"Path              {logs}/*.log\n    Tag               kube.*\n    Parser            docker" in text
    assert f"Kube_Tag_Prefix   kube.{str(logs).strip('/').replace('/', '.')}." in text
    assert "Kube_URL          http://127.0.0.1:4002" in text and f"Kube_Token_File   {tmp_path / 'token'}" in text
    assert "Use_Kubelet       Off\n    Labels            On\n    Annotations       On\n    Merge_Log         Off" in text
    assert "[OUTPUT]\n    Name   null" in text and "HTTP_Port     4001" in text


def test_the_agent_sides_are_configs_the_loader_accepts(tmp_path: Path) -> None:
    kube = tmp_path / "kubeconfig"
    kube.write_text(kubeconfig("http://127.0.0.1:4002", tmp_path / "token"))
    (tmp_path / "token").write_text("t")
    cluster = from_kubeconfig(kube)
    assert cluster.server == "http://127.0.0.1:4002" and cluster.headers()["Authorization"] == "Bearer t"
    doc = yaml.safe_load(bench.agent_config(tmp_path / "logs", tmp_path / "data", 4001, kube))
    assert doc["transforms"]["k8s"] == {"type": "kubernetes", "inputs": ["in"], "kubeconfig": str(kube),
                                        "node_name": "node-a", "labels": True, "annotations": True,
                                        "merge_log": False}
    assert doc["sinks"]["out"] == {"type": "blackhole", "inputs": ["k8s"]}
    plain = yaml.safe_load(bench.agent_config(tmp_path / "logs", tmp_path / "data", 4001, None))
    assert "transforms" not in plain and plain["sinks"]["out"]["inputs"] == ["in"]
    assert plain["sources"] == doc["sources"]


def test_the_misses_are_read_from_the_metrics_page_by_reason() -> None:
    page = ('# TYPE agent_kubernetes_metadata_misses_total counter\n'
            'agent_kubernetes_metadata_misses_total{component_id="k8s",reason="api_unavailable"} 120.0\n'
            'agent_kubernetes_metadata_misses_total{component_id="k8s",reason="not_found"} 3.0\n'
            'agent_kubernetes_cache_pods{component_id="k8s"} 110.0\n')
    assert bench.parse_misses(page) == {"total": 123, "api_unavailable": 120, "not_found": 3}
    assert bench.parse_misses("") == {"total": 0}


def _run(side: str, cpu_per_million: float, repeat: int = 0, requests: dict[str, int] | None = None,
         misses: dict[str, int] | None = None) -> bench.KubernetesRun:
    window = Window(events=1_000_000, wall_s=2.0, cpu_s=cpu_per_million)
    result = RunResult(side, "s", repeat, 1_000_000, window, cpu_per_million + 0.5, 3.0, 80.0, exit_code=0,
                       delivered=window)
    return bench.KubernetesRun(side, result, requests or {}, misses)


def test_the_summary_gives_each_sides_medians_and_the_ratios_against_fluent_bit_and_plain_tail() -> None:
    runs = [_run("fluent-bit", 4.0, requests={"get pods": 110}), _run("agent", 1.5, requests={"list pods": 1}),
            _run("agent-tail", 1.2), _run("fluent-bit", 5.0, 1), _run("agent", 1.3, 1), _run("agent-tail", 1.2, 1),
            _run("agent", 1.4, 2)]
    out = bench.summary(runs)
    assert out["fluent-bit"]["steady_cpu_s_per_million"] == 4.5 and out["agent"]["steady_cpu_s_per_million"] == 1.4
    assert out["agent"]["repeats"] == 3 and out["fluent-bit"]["api_requests"] == [{"get pods": 110}, {}]
    assert out["agent_over_fluent_bit"]["steady_cpu_s_per_million"] == 0.31
    assert out["agent_over_tail"]["steady_cpu_s_per_million"] == 1.17
    assert out["agent_over_tail"]["met"] is False
    assert bench.summary([_run("agent", 1.3), _run("agent-tail", 1.2)])["agent_over_tail"]["met"] is True
    text = bench.table(runs, out)
    assert "110 get pods" in text and "NOT met (1.17x)" in text and "WARNING" not in text
    flagged = bench.table([_run("agent", 1.3, misses={"total": 50_000, "api_unavailable": 50_000})], {})
    assert "WARNING: agent #1 left 50,000 of 1,000,000 events without pod metadata" in flagged


def test_the_fake_api_server_process_serves_the_pods_and_counts_the_requests(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN)

    async def go() -> tuple[list[str], dict[str, int]]:
        async with await FakeApiServer.start(3, tmp_path / "token", TOKEN) as fake:
            pods = await fake.pods()
            return [p["metadata"]["name"] for p in pods], await fake.requests()

    names, requests = asyncio.run(go())
    assert sorted(names) == sorted(realistic_pod(i)["metadata"]["name"] for i in range(3))
    assert requests == {"list pods": 1}


@pytest.mark.slow
def test_a_tiny_real_run_lists_and_watches_once_where_fluent_bit_gets_every_pod() -> None:
    try:
        find_fluent_bit()
        sides = "fluent-bit,agent,agent-tail"
    except FluentBitMissing:
        sides = "agent,agent-tail"
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "vs_fluent_bit_kubernetes.py"), "--lines", "3000",
                          "--pods", "3", "--repeats", "1", "--sides", sides, "--json"],
                         capture_output=True, text=True, timeout=100, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["failures"] == [] and doc["pods"] == 3
    runs = {r["side"]: r for r in doc["runs"]}
    assert set(runs) == set(sides.split(","))
    for run in runs.values():
        assert run["events"] == 3000 and run["exit_code"] == 0
    assert runs["agent"]["api_requests"].get("get pods", 0) == 0 and runs["agent"]["api_requests"]["list pods"] == 1
    assert runs["agent"]["misses"]["total"] >= 0 and runs["agent-tail"]["api_requests"] == {}
    if "fluent-bit" in runs:
        assert runs["fluent-bit"]["api_requests"] == {"get pods": 3}


def test_the_agent_bench_scenario_enriches_from_one_list_and_watch() -> None:
    from agent.bench import run_scenario

    result = run_scenario("tail_kubernetes_to_blackhole", 5000)
    assert result.events == 5000 and result.extra["lines"] == 5000 and result.extra["pods"] == 110
    requests = result.extra["api_requests"]  # the harness's own list left out; the watch may not have begun
    assert requests["list pods"] == 1 and requests.get("watch pods", 0) <= 1 and set(requests) <= {
        "list pods", "watch pods"}
    assert result.extra["metadata_misses"] == sum(result.extra["metadata_misses_by_reason"].values())
