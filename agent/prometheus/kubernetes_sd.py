"""``kubernetes_sd_configs`` with role ``pod``, restricted to this node's pods: Prometheus's
``discovery/kubernetes/pod.go`` over the shared node-scoped pod cache (``agent.kubernetes.pods``).

Each pod is one group (``<discoverer>/pod/<namespace>/<name>``): one target per declared container port (``__address__``
``podIP:port``) and one per container without ports (``__address__`` the pod IP), init containers included
(``__meta_kubernetes_pod_container_init="true"``). A pod without an IP, or deleted, is an empty group.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.core.errors import BuildError
from agent.kubernetes.config import SERVICE_ACCOUNT_DIR, ClusterConfig, KubeConfigError, from_kubeconfig, in_cluster
from agent.kubernetes.pods import node_name, shared_pod_watcher
from agent.prometheus.client import Credentials, ssl_context
from agent.prometheus.config import KubernetesSDConfig

META = "__meta_kubernetes_"
POD = META + "pod_"
_INVALID_LABEL_CHAR = re.compile(r"[^a-zA-Z0-9_]")


def sanitize_label_name(name: str) -> str:
    """Prometheus's ``strutil.SanitizeLabelName``: every character outside ``[a-zA-Z0-9_]`` becomes ``_``."""
    return _INVALID_LABEL_CHAR.sub("_", name)


def pod_labels(pod: dict[str, Any]) -> dict[str, str]:
    """The labels every target of the pod shares (pod.go ``podLabels`` and the namespace)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    labels = {
        META + "namespace": meta.get("namespace", ""),
        POD + "name": meta.get("name", ""),
        POD + "ip": status.get("podIP", ""),
        POD + "ready": _ready(status),
        POD + "phase": status.get("phase", ""),
        POD + "node_name": spec.get("nodeName", ""),
        POD + "host_ip": status.get("hostIP", ""),
        POD + "uid": meta.get("uid", ""),
    }
    for kind, section in (("label", "labels"), ("annotation", "annotations")):
        for key, value in (meta.get(section) or {}).items():
            name = sanitize_label_name(key)
            labels[f"{POD}{kind}_{name}"] = value
            labels[f"{POD}{kind}present_{name}"] = "true"
    controller = next((ref for ref in meta.get("ownerReferences") or [] if ref.get("controller")), None)
    if controller is not None:
        if controller.get("kind"):
            labels[POD + "controller_kind"] = controller["kind"]
        if controller.get("name"):
            labels[POD + "controller_name"] = controller["name"]
    return labels


def _ready(status: dict[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "")).lower()
    return "unknown"


def pod_targets(pod: dict[str, Any]) -> list[dict[str, str]]:
    """The pod's targets, each with the pod's shared labels (a target's own labels win, as in Prometheus)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ip = status.get("podIP") or ""
    if not ip:  # a pod starting, or evicted
        return []
    shared = pod_labels(pod)
    host = f"[{ip}]" if ":" in ip else ip  # net.JoinHostPort
    targets = []
    for init, containers, statuses in ((False, spec.get("containers"), status.get("containerStatuses")),
                                       (True, spec.get("initContainers"), status.get("initContainerStatuses"))):
        ids = {s.get("name"): s.get("containerID", "") for s in statuses or []}
        for container in containers or []:
            common = {**shared, POD + "container_name": container.get("name", ""),
                      POD + "container_id": ids.get(container.get("name"), ""),
                      POD + "container_image": container.get("image", ""),
                      POD + "container_init": "true" if init else "false"}
            ports = container.get("ports") or []
            if not ports:
                targets.append({**common, "__address__": ip})
            for port in ports:
                number = str(port.get("containerPort", 0))
                targets.append({**common, "__address__": f"{host}:{number}",
                                POD + "container_port_name": port.get("name", ""),
                                POD + "container_port_number": number,
                                POD + "container_port_protocol": port.get("protocol", "TCP")})
    return targets


def cluster_config(config: KubernetesSDConfig, config_dir: Path = Path("."), environ: Mapping[str, str] = os.environ,
                   service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> ClusterConfig:
    """How to reach the API server: ``api_server`` with the job's HTTP client settings, a ``kubeconfig_file``,
    or in-cluster (the service account). Relative paths are taken from ``config_dir``, as Prometheus does."""

    if config.kubeconfig_file:
        return from_kubeconfig(config_dir / config.kubeconfig_file)
    if not config.api_server:
        return in_cluster(environ, service_account_dir)
    tls = config.tls_config
    credentials = Credentials(config, config_dir)
    context = ssl_context(tls, config_dir) if config.api_server.startswith("https:") else None
    return ClusterConfig(server=config.api_server.rstrip("/"), ssl_context=context, server_name=tls.server_name,
                         authorization=credentials.authorization, basic_auth=credentials.basic_auth,
                         source="api_server")


class KubernetesPodDiscoverer:
    """A ``Discoverer`` for one ``kubernetes_sd_configs`` entry (role pod): ``run(update)`` calls
    ``update(source, targets)`` for each pod of this node as it is added, changed or deleted, ``source`` being
    ``<name>/pod/<namespace>/<pod>`` (two entries of one job seeing the same pod keep their own groups).

    Built with the cluster's configuration read: no cluster and no usable kubeconfig is a BuildError."""

    def __init__(self, name: str, config: KubernetesSDConfig, config_dir: Path = Path("."), *,
                 node: str | None = None, environ: Mapping[str, str] = os.environ,
                 service_account_dir: Path = SERVICE_ACCOUNT_DIR, **watch_options: Any) -> None:
        self.name = name
        self.config = config
        self.node = node or node_name(environ)
        self.watch_options = watch_options
        try:  # a kubeconfig that cannot be read, or no cluster around: the agent does not start
            self.cluster = cluster_config(config, config_dir, environ, service_account_dir)
        except (KubeConfigError, BuildError) as exc:
            raise BuildError(f"kubernetes_sd_configs: {exc}") from None

    async def run(self, update: Callable[[str, list[dict[str, str]]], None]) -> None:
        cluster = self.cluster
        namespaces = set(self.config.namespaces.names)
        if self.config.namespaces.own_namespace:
            namespaces.add(cluster.namespace)
        selector = next((s for s in self.config.selectors if s.role == "pod"), None)

        def on_event(event: str, pod: dict[str, Any]) -> None:
            meta = pod.get("metadata") or {}
            namespace, name = meta.get("namespace", ""), meta.get("name", "")
            if namespaces and namespace not in namespaces:
                return
            update(f"{self.name}/pod/{namespace}/{name}", [] if event == "DELETED" else pod_targets(pod))

        async with shared_pod_watcher(cluster, self.node, label_selector=selector.label if selector else None,
                                      field_selector=selector.field if selector else None,
                                      **self.watch_options) as watcher:
            unsubscribe = watcher.subscribe(on_event)
            try:
                await asyncio.Event().wait()  # until cancelled
            finally:
                unsubscribe()
