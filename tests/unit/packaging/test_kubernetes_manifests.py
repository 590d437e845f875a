"""packaging/kubernetes/ read as the cluster would get it: every manifest parsed and each property the DaemonSet
promises checked against the pipeline it runs (loaded by the agent's own config code), and `kubectl apply
--dry-run=client` accepting the directory (against a loopback stand-in that answers API discovery only)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import __version__
from agent.app import load_pipeline
from agent.config.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "packaging" / "kubernetes"
PIPELINE = ROOT / "pipelines" / "kubernetes-daemonset.yaml"
# Peak RSS in benchmarks/RESULTS.md: tail -> parse json -> elasticsearch 84 MiB, tail -> kubernetes 73 MiB.
PEAK_RSS = 84 * 2**20
SECRETS = {"AGENT_API_TOKEN", "DD_API_KEY"}

Obj = dict[str, Any]


def _documents() -> list[tuple[str, Obj]]:
    return [(path.name, doc) for path in sorted(MANIFESTS.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _one(kind: str) -> Obj:
    [doc] = [doc for _, doc in _documents() if doc["kind"] == kind]
    return doc


@pytest.fixture(scope="module")
def daemonset() -> Obj:
    return _one("DaemonSet")


@pytest.fixture(scope="module")
def container(daemonset: Obj) -> Obj:
    [only] = daemonset["spec"]["template"]["spec"]["containers"]
    return only


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Pipeline:
    """The ConfigMap's pipeline as the agent loads it (the Secret's values set to placeholders)."""
    for name in SECRETS:
        monkeypatch.setenv(name, "placeholder")
    path = tmp_path / "pipeline.yaml"
    path.write_text(_one("ConfigMap")["data"]["pipeline.yaml"])
    return load_pipeline([str(path)])


def _quantity(value: str) -> int:
    """A Kubernetes memory quantity in bytes (binary and decimal suffixes)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9, "": 1}
    number, unit = re.fullmatch(r"(\d+)([KMG]i|[kMG]|)", value).groups()  # type: ignore[union-attr]
    return int(number) * units[unit]


def _env(container: Obj) -> dict[str, Obj]:
    return {item["name"]: item for item in container["env"]}


def _mounts(daemonset: Obj, container: Obj) -> dict[str, tuple[Obj, Obj]]:
    """Mount path -> (volumeMount, volume)."""
    volumes = {volume["name"]: volume for volume in daemonset["spec"]["template"]["spec"]["volumes"]}
    return {mount["mountPath"]: (mount, volumes[mount["name"]]) for mount in container["volumeMounts"]}


def _api_port(pipeline: Pipeline) -> int:
    return int(pipeline.root.api.address.rpartition(":")[2])


# -- the manifests as a whole ------------------------------------------------------------------------------------


def test_every_manifest_is_a_named_object_in_the_agent_namespace() -> None:
    documents = _documents()
    assert {doc["kind"] for _, doc in documents} == {"Namespace", "ServiceAccount", "ClusterRole",
                                                     "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Service"}
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    namespace = _one("Namespace")["metadata"]["name"]
    for name, doc in documents:
        assert doc["apiVersion"] and doc["metadata"]["name"], name
        assert doc["metadata"].get("namespace") == (None if doc["kind"] in cluster_scoped else namespace), name
    assert documents[0][1]["kind"] == "Namespace"  # kubectl applies the files in name order


def test_rbac_allows_get_list_watch_on_pods_and_namespaces_and_nothing_more(daemonset: Obj) -> None:
    role, binding, account = _one("ClusterRole"), _one("ClusterRoleBinding"), _one("ServiceAccount")
    [rule] = role["rules"]
    assert rule == {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]
    assert daemonset["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_the_configmap_holds_the_daemonset_pipeline_word_for_word(daemonset: Obj, container: Obj) -> None:
    config_map = _one("ConfigMap")
    assert config_map["data"]["pipeline.yaml"] == PIPELINE.read_text(), (
        "packaging/kubernetes/20-configmap.yaml is not pipelines/kubernetes-daemonset.yaml: copy the pipeline "
        "under `pipeline.yaml: |`, indented by four spaces")
    mount, volume = _mounts(daemonset, container)["/etc/agent"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"] and mount["readOnly"] is True
    assert container["args"] == ["run", "-c", "/etc/agent/pipeline.yaml"]


def test_the_configmap_pipeline_passes_agent_validate(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(_one("ConfigMap")["data"]["pipeline.yaml"])
    env = {**os.environ, **dict.fromkeys(SECRETS, "placeholder")}
    result = subprocess.run([sys.executable, "-m", "agent", "validate", "--deny-warnings", "-c", str(path)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr


# -- the DaemonSet -------------------------------------------------------------------------------------------------


def test_host_paths_logs_read_only_and_data_dir_writable(daemonset: Obj, container: Obj, pipeline: Pipeline) -> None:
    mounts = _mounts(daemonset, container)
    for path in ("/var/log", "/var/lib/docker/containers"):
        mount, volume = mounts[path]
        assert volume["hostPath"]["path"] == path and mount["readOnly"] is True, path
    mount, volume = mounts[pipeline.root.data_dir]  # checkpoints survive the pod: a restarted one resumes
    assert volume["hostPath"] == {"path": "/var/lib/agent", "type": "DirectoryOrCreate"}
    assert not mount.get("readOnly")
    # The pipeline reads nothing the pod does not mount.
    for include in pipeline.components["containers"].config.include:  # type: ignore[attr-defined]
        assert include.startswith("/var/log/"), include


def test_node_name_comes_from_the_downward_api(container: Obj) -> None:
    assert _env(container)["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_the_secrets_come_from_a_secret_and_every_variable_is_set(container: Obj) -> None:
    env = _env(container)
    for name in SECRETS:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "agent-secrets" and ref["key"] and not ref.get("optional"), name
        assert "value" not in env[name]
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", PIPELINE.read_text()))
    assert used == SECRETS and used <= set(env)


def test_memory_requests_and_limits_fit_the_measured_peak_and_memory_limit(container: Obj,
                                                                           pipeline: Pipeline) -> None:
    resources = container["resources"]
    request, limit = _quantity(resources["requests"]["memory"]), _quantity(resources["limits"]["memory"])
    assert (request, limit) == (128 * 2**20, 256 * 2**20)
    assert request >= 1.5 * PEAK_RSS  # headroom over the benchmarks' peak for bursts and the kubernetes cache
    memory_limit = pipeline.root.memory_limit
    assert memory_limit is not None
    # Sources pause before the process reaches the container's limit: ~80 % of it, as the README advises.
    assert PEAK_RSS < memory_limit < limit and memory_limit >= 0.7 * limit


def test_probes_hit_health_and_ready_on_the_api_port(container: Obj, pipeline: Pipeline) -> None:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert pipeline.root.api.address.startswith("0.0.0.0:")  # the kubelet reaches it from outside the pod
    liveness, readiness = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/health" and readiness["path"] == "/ready"
    for probe in (liveness, readiness):
        assert ports[probe["port"]] == _api_port(pipeline)


def test_termination_grace_outlasts_the_drain(daemonset: Obj, pipeline: Pipeline) -> None:
    grace = daemonset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= pipeline.root.shutdown_timeout + 10


def test_runs_on_every_node_and_updates_one_node_at_a_time(daemonset: Obj) -> None:
    assert {"operator": "Exists"} in daemonset["spec"]["template"]["spec"]["tolerations"]  # every taint
    strategy = daemonset["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxSurge"] == 0  # never two agents on one (locked) data_dir


def test_labels_select_the_pods_and_the_image_is_this_version(daemonset: Obj, container: Obj) -> None:
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert container["image"].rpartition(":")[2] == __version__


def test_root_only_to_read_logs(container: Obj) -> None:
    context = container["securityContext"]
    assert context["runAsUser"] == 0 and context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}


def test_the_service_lets_prometheus_scrape_every_agent(daemonset: Obj, container: Obj, pipeline: Pipeline) -> None:
    service = _one("Service")
    annotations = service["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(_api_port(pipeline)),
                           "prometheus.io/path": "/metrics"}
    assert service["spec"]["clusterIP"] == "None"  # headless: each agent pod is a target of its own
    assert service["spec"]["selector"].items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    [port] = service["spec"]["ports"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["port"] == named[port["targetPort"]] == _api_port(pipeline)
    # Annotated once: pods annotated too would be scraped twice by the usual pods + endpoints jobs.
    assert "annotations" not in daemonset["spec"]["template"]["metadata"]


# -- kubectl -------------------------------------------------------------------------------------------------------

# What the stand-in API server discovers: group version -> [(plural, kind, namespaced)].
RESOURCES = {
    "v1": [("namespaces", "Namespace", False), ("serviceaccounts", "ServiceAccount", True),
           ("configmaps", "ConfigMap", True), ("services", "Service", True), ("secrets", "Secret", True)],
    "apps/v1": [("daemonsets", "DaemonSet", True)],
    "rbac.authorization.k8s.io/v1": [("clusterroles", "ClusterRole", False),
                                     ("clusterrolebindings", "ClusterRoleBinding", False)],
}


class _Discovery(BaseHTTPRequestHandler):
    """API discovery (/api, /apis, /api/v1, /apis/GROUP/VERSION) and a 404 for every object kubectl asks for."""

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        groups = [gv for gv in RESOURCES if "/" in gv]
        body: Obj
        status = 200
        if path == "/api":
            body = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        elif path == "/apis":
            body = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                 "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}} for gv in groups]}
        elif (gv := path.removeprefix("/api/").removeprefix("/apis/")) in RESOURCES:
            body = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind,
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                for plural, kind, namespaced in RESOURCES[gv]]}
        else:
            status, body = 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                 "code": 404, "message": f"{path} not found"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig for a loopback server that only answers discovery (kubectl needs it even for dry runs)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "stand-in", "user": {"token": "dummy"}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}]}))
    yield path
    server.shutdown()
    server.server_close()
    thread.join(5)


def _kubectl(kubeconfig: Path, tmp_path: Path, target: Path) -> subprocess.CompletedProcess[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}  # its cache goes under tmp
    return subprocess.run([kubectl, "apply", "--dry-run=client", "--validate=false", "-f", str(target)],
                          capture_output=True, text=True, timeout=60, env=env)


def test_kubectl_apply_dry_run_accepts_the_manifests(kubeconfig: Path, tmp_path: Path) -> None:
    result = _kubectl(kubeconfig, tmp_path, MANIFESTS)
    assert result.returncode == 0, result.stderr
    created = {line.split(" ")[0] for line in result.stdout.splitlines()}
    expected = set()
    for _, doc in _documents():  # kubectl names a kind of a named group `kind.group`: daemonset.apps/agent
        group = doc["apiVersion"].rpartition("/")[0]
        expected.add(f"{doc['kind'].lower()}{'.' + group if group else ''}/{doc['metadata']['name']}")
    assert created == expected
    assert all(line.endswith("created (dry run)") for line in result.stdout.splitlines())


def test_kubectl_refuses_a_broken_manifest(kubeconfig: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {namespace: agent}\nspec: {}\n")  # no name
    result = _kubectl(kubeconfig, tmp_path, broken)
    assert result.returncode != 0
