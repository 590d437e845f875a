"""In-cluster and kubeconfig configuration: addresses, CA, client certificates, tokens, errors."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import trustme
import yaml

from agent.kubernetes.config import KubeConfigError, SecretFile, from_kubeconfig, in_cluster

ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def service_account(root: Path, ca: trustme.CA, namespace: str | None = "monitoring") -> Path:
    root.mkdir(exist_ok=True)
    (root / "token").write_text("token-1\n")
    ca.cert_pem.write_to_path(str(root / "ca.crt"))
    if namespace is not None:
        (root / "namespace").write_text(namespace)
    return root


def test_in_cluster_reads_the_service_account(tmp_path: Path) -> None:
    ca = trustme.CA()
    config = in_cluster(ENV, service_account(tmp_path, ca))
    assert config.server == "https://10.96.0.1:443"
    assert config.namespace == "monitoring"
    assert config.headers() == {"Authorization": "Bearer token-1"}
    assert config.ssl_context is not None and config.ssl_context.cert_store_stats()["x509_ca"] == 1
    assert config.source == "in-cluster"


def test_in_cluster_brackets_an_ipv6_service_host_and_defaults_the_namespace(tmp_path: Path) -> None:
    config = in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"},
                        service_account(tmp_path, trustme.CA(), namespace=None))
    assert config.server == "https://[fd00::1]:6443"
    assert config.namespace == "default"


def test_in_cluster_outside_a_cluster_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster({}, service_account(tmp_path, trustme.CA()))
    with pytest.raises(KubeConfigError, match="token"):
        in_cluster(ENV, tmp_path / "missing")


def test_a_token_file_is_read_again_once_replaced(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old")
    secret = SecretFile(path)
    assert secret.read() == "old"
    new = tmp_path / "token.new"
    new.write_text("new\n")
    os.replace(new, path)
    assert secret.read() == "new"


def kubeconfig(tmp_path: Path, cluster: dict[str, object], user: dict[str, object],
               namespace: str | None = None) -> Path:
    context: dict[str, object] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "dev",
           "clusters": [{"name": "other", "cluster": {"server": "https://wrong"}}, {"name": "c", "cluster": cluster}],
           "contexts": [{"name": "dev", "context": context}],
           "users": [{"name": "u", "user": user}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_with_inline_ca_client_certificate_and_token(tmp_path: Path) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("agent")
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    path = kubeconfig(tmp_path,
                      {"server": "https://api.example:6443/", "certificate-authority-data": b64(ca.cert_pem.bytes())},
                      {"client-certificate-data": b64(client.cert_chain_pems[0].bytes()),
                       "client-key-data": b64(client.private_key_pem.bytes()), "token": "tok"},
                      namespace="team-a")
    config = from_kubeconfig(path)
    assert config.server == "https://api.example:6443"
    assert config.namespace == "team-a"
    assert config.headers() == {"Authorization": "Bearer tok"}
    assert config.ssl_context is not None and config.ssl_context.cert_store_stats()["x509_ca"] == 1
    assert config.source == f"kubeconfig:{path}#dev"
    assert not list(tmp_path.glob("agent-kube-*"))


def test_kubeconfig_files_are_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "token").write_text("from-file")
    path = kubeconfig(tmp_path, {"server": "https://api:6443", "certificate-authority": "ca.pem"},
                      {"tokenFile": "token"})
    config = from_kubeconfig(path)
    assert config.headers() == {"Authorization": "Bearer from-file"}
    assert config.namespace == "default"


def test_kubeconfig_insecure_and_basic_auth(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, {"server": "https://api:6443", "insecure-skip-tls-verify": True},
                      {"username": "admin", "password": "pw"})
    config = from_kubeconfig(path)
    assert config.ssl_context is not None and not config.ssl_context.check_hostname
    assert config.headers() == {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}


@pytest.mark.parametrize(("user", "message"), [
    ({"exec": {"command": "aws"}}, "exec and auth-provider"),
    ({"auth-provider": {"name": "gcp"}}, "exec and auth-provider"),
])
def test_kubeconfig_credential_plugins_are_refused(tmp_path: Path, user: dict[str, object], message: str) -> None:
    with pytest.raises(KubeConfigError, match=message):
        from_kubeconfig(kubeconfig(tmp_path, {"server": "https://api:6443"}, user))


def test_kubeconfig_errors_name_the_file_and_what_is_missing(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, {"server": "https://api:6443"}, {})
    with pytest.raises(KubeConfigError, match="no context named 'prod'"):
        from_kubeconfig(path, context="prod")
    with pytest.raises(KubeConfigError, match="kubeconfig"):
        from_kubeconfig(tmp_path / "absent")
