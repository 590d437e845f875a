"""Where the API server is and how to authenticate to it: in-cluster (the service account) or a kubeconfig.

Secrets kept in files (the service account's token, a ``credentials_file``) are re-read whenever the file
changes: bound service-account tokens are rotated by the kubelet about every hour.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RACY_NS = 2_000_000_000  # a file changed this recently may change again unseen: mtimes are coarse (a clock tick)


class KubeConfigError(ValueError):
    """No usable cluster configuration (not in a cluster, a kubeconfig that is unreadable or incomplete)."""


class SecretFile:
    """A secret in a file that may be replaced at any time: read again when its inode, size or mtime change.

    An mtime only has the resolution of the kernel's clock tick, so a file rewritten in place with a value of
    the same length within that tick looks unchanged: one modified less than :data:`RACY_NS` before it was
    read is read again each time until it has settled (as git treats a "racily clean" file).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stat: tuple[int, int, int] | None = None
        self._settled = False
        self._value = ""

    def read(self) -> str:
        st = self.path.stat()  # follows the ..data symlink the kubelet swaps atomically
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stat or not self._settled:
            self._settled = time.time_ns() - st.st_mtime_ns > RACY_NS
            self._value = self.path.read_text().strip()
            self._stat = stamp
        return self._value


Secret = str | SecretFile


def _reveal(secret: Secret) -> str:
    return secret.read() if isinstance(secret, SecretFile) else secret


@dataclass
class ClusterConfig:
    """An API server's address, the TLS context to reach it, credentials and the namespace the agent runs in.

    ``source`` names where this came from (``in-cluster``, ``kubeconfig:<path>#<context>``, ``api_server``):
    with ``server`` it identifies the cluster and credentials, so that components share one watch.
    """

    server: str
    ssl_context: ssl.SSLContext | None = None  # None: plain http (tests) or the platform's defaults
    server_name: str | None = None
    authorization: tuple[str, Secret] | None = None  # (type, credentials): "Authorization: <type> <credentials>"
    basic_auth: tuple[str, Secret] | None = None  # (username, password)
    namespace: str = "default"
    source: str = "api_server"

    def headers(self) -> dict[str, str]:
        """The Authorization header, with credentials read afresh from their files if those changed."""
        return authorization_header(self.authorization, self.basic_auth)


def authorization_header(authorization: tuple[str, Secret] | None,
                         basic_auth: tuple[str, Secret] | None) -> dict[str, str]:
    """``Authorization: <type> <credentials>`` or ``Basic`` of (username, password), secrets read now from their
    files if those changed (OSError if one cannot be read); no header without either."""
    if authorization is not None:
        kind, credentials = authorization
        return {"Authorization": f"{kind} {_reveal(credentials)}"}
    if basic_auth is not None:
        user, password = basic_auth
        token = base64.b64encode(f"{user}:{_reveal(password)}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


def make_ssl_context(*, ca_file: str | None = None, ca_data: str | None = None, cert_file: str | None = None,
                     key_file: str | None = None, cert_data: bytes | None = None, key_data: bytes | None = None,
                     insecure: bool = False) -> ssl.SSLContext:
    """A client TLS context: the cluster's CA (a file or PEM text), an optional client certificate."""
    try:
        context = ssl.create_default_context(cafile=ca_file, cadata=ca_data)
        if cert_file and key_file:
            context.load_cert_chain(cert_file, key_file)
        elif cert_data and key_data:
            _load_cert_chain_data(context, cert_data, key_data)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise KubeConfigError(f"TLS: {exc}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_cert_chain_data(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl loads certificates from files only: write them to a private directory for the time of the load
    with tempfile.TemporaryDirectory(prefix="agent-kube-") as tmp:
        cert_path, key_path = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        context.load_cert_chain(cert_path, key_path)


def in_cluster(environ: Mapping[str, str] = os.environ, root: Path = SERVICE_ACCOUNT_DIR) -> ClusterConfig:
    """The service account's view: ``KUBERNETES_SERVICE_HOST``/``_PORT`` over https, its token (re-read when
    rotated), ``ca.crt`` and ``namespace``, as client-go's ``rest.InClusterConfig`` reads them."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError("not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
                              "are not set (set api_server or kubeconfig_file)")
    token = SecretFile(root / "token")
    try:
        token.read()
    except OSError as exc:
        raise KubeConfigError(f"service account token: {exc}") from None
    ca = root / "ca.crt"
    namespace_file = root / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else "default"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return ClusterConfig(server=f"https://{host}:{port}",
                         ssl_context=make_ssl_context(ca_file=str(ca) if ca.is_file() else None),
                         authorization=("Bearer", token), namespace=namespace, source="in-cluster")


def from_kubeconfig(path: str | Path, context: str | None = None) -> ClusterConfig:
    """The cluster and user of a kubeconfig's context (its ``current-context`` unless named): server, CA
    (data or file, relative to the kubeconfig), client certificate and key, token or token file,
    username and password, ``insecure-skip-tls-verify``. Exec and auth-provider plugins are refused."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"kubeconfig {path}: {exc}") from None
    name = context or doc.get("current-context")
    if not name:
        raise KubeConfigError(f"kubeconfig {path}: no current-context")
    ctx = _named(doc, "contexts", name, "context", path)
    cluster = _named(doc, "clusters", ctx.get("cluster"), "cluster", path)
    user = _named(doc, "users", ctx.get("user"), "user", path) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeConfigError(f"kubeconfig {path}: cluster {ctx.get('cluster')!r} has no server")
    base = path.parent

    def file_of(key: str) -> str | None:
        value = cluster.get(key) if key.startswith("certificate-authority") else user.get(key)
        return str(base / value) if value else None

    def data_of(section: dict[str, Any], key: str) -> bytes | None:
        value = section.get(key)
        return base64.b64decode(value) if value else None

    if "exec" in user or "auth-provider" in user:
        raise KubeConfigError(f"kubeconfig {path}: user {ctx.get('user')!r}: exec and auth-provider credential "
                              "plugins are not supported (use a token, a token file or a client certificate)")
    ca_data = data_of(cluster, "certificate-authority-data")
    ssl_context = None
    if server.startswith("https:"):
        ssl_context = make_ssl_context(
            ca_file=file_of("certificate-authority"), ca_data=ca_data.decode() if ca_data else None,
            cert_file=file_of("client-certificate"), key_file=file_of("client-key"),
            cert_data=data_of(user, "client-certificate-data"), key_data=data_of(user, "client-key-data"),
            insecure=bool(cluster.get("insecure-skip-tls-verify")))
    authorization: tuple[str, Secret] | None = None
    basic: tuple[str, Secret] | None = None
    if user.get("token"):
        authorization = ("Bearer", str(user["token"]))
    elif user.get("tokenFile"):
        authorization = ("Bearer", SecretFile(base / user["tokenFile"]))
    elif user.get("username"):
        basic = (str(user["username"]), str(user.get("password", "")))
    return ClusterConfig(server=server.rstrip("/"), ssl_context=ssl_context,
                         server_name=cluster.get("tls-server-name"), authorization=authorization,
                         basic_auth=basic, namespace=ctx.get("namespace") or "default",
                         source=f"kubeconfig:{path}#{name}")


def _named(doc: dict[str, Any], section: str, name: Any, key: str, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if entry.get("name") == name:
            return dict(entry.get(key) or {})
    raise KubeConfigError(f"kubeconfig {path}: no {key} named {name!r}")
