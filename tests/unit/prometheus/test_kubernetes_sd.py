"""``kubernetes_sd_configs`` role pod: Prometheus's pod_test.go translated, and the discoverer over the fake
API server (node restriction, add/modify/delete, namespaces, selectors, auth from the job's settings)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trustme
from fakes.kubernetes import FakeKubernetes, make_pod
from helpers import wait_for

from agent.core.errors import BuildError
from agent.core.retry import Backoff
from agent.prometheus.config import KubernetesSDConfig
from agent.prometheus.kubernetes_sd import (
    KubernetesPodDiscoverer,
    cluster_config,
    pod_targets,
    sanitize_label_name,
)

META = {
    "__meta_kubernetes_pod_name": "testpod",
    "__meta_kubernetes_namespace": "default",
    "__meta_kubernetes_pod_node_name": "testnode",
    "__meta_kubernetes_pod_ip": "1.2.3.4",
    "__meta_kubernetes_pod_host_ip": "2.3.4.5",
    "__meta_kubernetes_pod_ready": "true",
    "__meta_kubernetes_pod_phase": "Running",
    "__meta_kubernetes_pod_uid": "abc123",
}


def multi_port_pod() -> dict[str, Any]:
    """pod_test.go's makeMultiPortPods: two containers, one with two ports, one without."""
    return {
        "metadata": {"name": "testpod", "namespace": "default", "uid": "abc123",
                     "labels": {"test/label": "testvalue"}, "annotations": {"test/annotation": "testannotationvalue"},
                     "ownerReferences": [{"kind": "testcontrollerkind", "name": "testcontrollername",
                                          "controller": True}]},
        "spec": {"nodeName": "testnode", "containers": [
            {"name": "testcontainer0", "image": "testcontainer0:latest", "ports": [
                {"name": "testport0", "protocol": "TCP", "containerPort": 9000},
                {"name": "testport1", "protocol": "UDP", "containerPort": 9001}]},
            {"name": "testcontainer1", "image": "testcontainer1:latest"}]},
        "status": {"podIP": "1.2.3.4", "hostIP": "2.3.4.5", "phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "testcontainer0", "containerID": "docker://a1b2c3d4e5f6"},
                                         {"name": "testcontainer1", "containerID": "containerd://6f5e4d3c2b1a"}]},
    }


def test_a_pod_with_two_containers_one_with_two_ports_one_without() -> None:
    group = {
        **META,
        "__meta_kubernetes_pod_label_test_label": "testvalue",
        "__meta_kubernetes_pod_labelpresent_test_label": "true",
        "__meta_kubernetes_pod_annotation_test_annotation": "testannotationvalue",
        "__meta_kubernetes_pod_annotationpresent_test_annotation": "true",
        "__meta_kubernetes_pod_controller_kind": "testcontrollerkind",
        "__meta_kubernetes_pod_controller_name": "testcontrollername",
    }
    c0 = {"__meta_kubernetes_pod_container_name": "testcontainer0",
          "__meta_kubernetes_pod_container_image": "testcontainer0:latest",
          "__meta_kubernetes_pod_container_id": "docker://a1b2c3d4e5f6",
          "__meta_kubernetes_pod_container_init": "false"}
    assert pod_targets(multi_port_pod()) == [
        {**group, **c0, "__address__": "1.2.3.4:9000", "__meta_kubernetes_pod_container_port_name": "testport0",
         "__meta_kubernetes_pod_container_port_number": "9000",
         "__meta_kubernetes_pod_container_port_protocol": "TCP"},
        {**group, **c0, "__address__": "1.2.3.4:9001", "__meta_kubernetes_pod_container_port_name": "testport1",
         "__meta_kubernetes_pod_container_port_number": "9001",
         "__meta_kubernetes_pod_container_port_protocol": "UDP"},
        {**group, "__address__": "1.2.3.4", "__meta_kubernetes_pod_container_name": "testcontainer1",
         "__meta_kubernetes_pod_container_image": "testcontainer1:latest",
         "__meta_kubernetes_pod_container_id": "containerd://6f5e4d3c2b1a",
         "__meta_kubernetes_pod_container_init": "false"},
    ]


def test_init_containers_are_targets_marked_init() -> None:
    pod = multi_port_pod()
    pod["spec"]["containers"] = []
    pod["spec"]["initContainers"] = [{"name": "customlabelssetup", "image": "setup:1",
                                      "ports": [{"name": "init", "protocol": "TCP", "containerPort": 9100}]}]
    pod["status"]["initContainerStatuses"] = [{"name": "customlabelssetup", "containerID": "docker://init1"}]
    [target] = pod_targets(pod)
    assert target["__address__"] == "1.2.3.4:9100"
    assert target["__meta_kubernetes_pod_container_init"] == "true"
    assert target["__meta_kubernetes_pod_container_id"] == "docker://init1"


def test_readiness_is_unknown_without_the_condition_and_a_pod_without_ip_has_no_targets() -> None:
    pod = multi_port_pod()
    pod["status"]["conditions"] = []
    assert {t["__meta_kubernetes_pod_ready"] for t in pod_targets(pod)} == {"unknown"}
    pod["status"]["podIP"] = ""
    assert pod_targets(pod) == []


def test_label_names_are_sanitized_like_prometheus() -> None:
    assert sanitize_label_name("app.kubernetes.io/name") == "app_kubernetes_io_name"
    assert sanitize_label_name("prometheus.io/scrape") == "prometheus_io_scrape"
    assert sanitize_label_name("ünïcode-ok_1") == "_n_code_ok_1"


def test_an_ipv6_pod_address_is_bracketed_with_its_port() -> None:
    pod = multi_port_pod()
    pod["status"]["podIP"] = "fd00::5"
    assert [t["__address__"] for t in pod_targets(pod)] == ["[fd00::5]:9000", "[fd00::5]:9001", "fd00::5"]


def sd_config(k8s: FakeKubernetes, **extra: Any) -> KubernetesSDConfig:
    return msgspec.convert({"role": "pod", "api_server": k8s.url, "bearer_token": "secret-token", **extra},
                           KubernetesSDConfig)



@contextlib.asynccontextmanager
async def discovering(config: KubernetesSDConfig, name: str = "kubernetes_sd/0",
                      groups: dict[str, list[dict[str, str]]] | None = None,
                      ) -> AsyncIterator[dict[str, list[dict[str, str]]]]:
    groups = {} if groups is None else groups
    discoverer = KubernetesPodDiscoverer(name, config, node="node-a", backoff=Backoff(initial=0.01, cap=0.05))
    assert discoverer.name == name
    task = asyncio.create_task(discoverer.run(groups.__setitem__))
    try:
        yield groups
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_discoverer_follows_this_nodes_pods() -> None:
    async with FakeKubernetes(token="secret-token") as k8s:
        k8s.add_pod(make_pod("web", ip="10.0.0.5", spec={"containers": [
            {"name": "app", "image": "web:1", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}))
        k8s.add_pod(make_pod("other-node", node="node-b"))
        async with discovering(sd_config(k8s)) as groups:
            await wait_for(lambda: "kubernetes_sd/0/pod/default/web" in groups)
            assert [t["__address__"] for t in groups["kubernetes_sd/0/pod/default/web"]] == ["10.0.0.5:8080"]
            k8s.modify_pod("default", "web", lambda p: p["status"].update(podIP="10.0.0.6"))
            await wait_for(lambda: groups["kubernetes_sd/0/pod/default/web"][0]["__address__"] == "10.0.0.6:8080")
            k8s.add_pod(make_pod("starting", ip=""))
            await wait_for(lambda: "kubernetes_sd/0/pod/default/starting" in groups)
            assert groups["kubernetes_sd/0/pod/default/starting"] == []
            k8s.delete_pod("default", "web")
            await wait_for(lambda: groups["kubernetes_sd/0/pod/default/web"] == [])
            assert not any("other-node" in source for source in groups)


async def test_two_configs_of_a_job_seeing_one_pod_keep_their_own_groups() -> None:
    groups: dict[str, list[dict[str, str]]] = {}
    async with FakeKubernetes(token="secret-token") as k8s:
        k8s.add_pod(make_pod("web", ip="10.0.0.5"))
        async with discovering(sd_config(k8s), "kubernetes_sd/0", groups), \
                discovering(sd_config(k8s, namespaces={"names": ["default"]}), "kubernetes_sd/1", groups):
            await wait_for(lambda: len(groups) == 2)
            k8s.delete_pod("default", "web")
            await wait_for(lambda: list(groups.values()) == [[], []])
    assert set(groups) == {"kubernetes_sd/0/pod/default/web", "kubernetes_sd/1/pod/default/web"}


async def test_namespaces_and_selectors_narrow_what_is_discovered() -> None:
    async with FakeKubernetes(token="secret-token") as k8s:
        k8s.add_pod(make_pod("a", namespace="ns1", metadata={"labels": {"scrape": "yes"}}))
        k8s.add_pod(make_pod("b", namespace="ns2", metadata={"labels": {"scrape": "yes"}}))
        k8s.add_pod(make_pod("c", namespace="ns3", metadata={"labels": {"scrape": "yes"}}))
        k8s.add_pod(make_pod("d", namespace="ns1", metadata={"labels": {"scrape": "no"}}))
        config = sd_config(k8s, namespaces={"names": ["ns1", "ns2"]},
                           selectors=[{"role": "pod", "label": "scrape=yes"}])
        async with discovering(config) as groups:
            await wait_for(lambda: len(groups) == 2)
            await asyncio.sleep(0.05)
            assert set(groups) == {"kubernetes_sd/0/pod/ns1/a", "kubernetes_sd/0/pod/ns2/b"}
        assert k8s.list_requests[0].query["labelSelector"] == "scrape=yes"


def test_the_jobs_auth_and_tls_reach_the_api_server_with_relative_paths(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "creds").write_text("from-file\n")
    config = msgspec.convert({"role": "pod", "api_server": "https://api:6443/", "tls_config": {"ca_file": "ca.pem"},
                              "authorization": {"credentials_file": "creds"}}, KubernetesSDConfig)
    cluster = cluster_config(config, tmp_path)
    assert cluster.server == "https://api:6443"
    assert cluster.headers() == {"Authorization": "Bearer from-file"}
    assert cluster.ssl_context is not None and cluster.ssl_context.cert_store_stats()["x509_ca"] == 1
    (tmp_path / "creds").write_text("rotated, and longer")
    assert cluster.headers() == {"Authorization": "Bearer rotated, and longer"}
    basic = msgspec.convert({"role": "pod", "api_server": "http://api",
                             "basic_auth": {"username": "u", "password": "p"}}, KubernetesSDConfig)
    assert cluster_config(basic, tmp_path).headers() == {"Authorization": "Basic dTpw"}


def test_without_api_server_or_kubeconfig_it_is_in_cluster(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("monitoring")
    config = msgspec.convert({"role": "pod"}, KubernetesSDConfig)
    cluster = cluster_config(config, tmp_path, {"KUBERNETES_SERVICE_HOST": "10.0.0.1",
                                                "KUBERNETES_SERVICE_PORT": "443"}, tmp_path)
    assert (cluster.server, cluster.namespace, cluster.source) == ("https://10.0.0.1:443", "monitoring", "in-cluster")
    assert cluster.headers() == {"Authorization": "Bearer sa-token"}


def test_no_cluster_and_no_kubeconfig_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"kubernetes_sd_configs: .*KUBERNETES_SERVICE_HOST"):
        KubernetesPodDiscoverer("kubernetes_sd/0", msgspec.convert({"role": "pod"}, KubernetesSDConfig),
                                environ={}, service_account_dir=tmp_path)
    config = msgspec.convert({"role": "pod", "kubeconfig_file": "absent.yaml"}, KubernetesSDConfig)
    with pytest.raises(BuildError, match=r"absent\.yaml"):
        KubernetesPodDiscoverer("kubernetes_sd/0", config, tmp_path)
