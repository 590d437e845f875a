"""Prometheus's own config schema, as users paste it from prometheus.yml: ``global``, ``scrape_configs``,
``remote_write`` and what they share (auth, TLS, service discovery). Keys and defaults as Prometheus's
``config/config.go`` has them; an unknown key is a config error naming file, line and key.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from agent.config.units import ByteSize, Duration
from agent.prometheus.relabel import RelabelConfig

DEFAULT_SCRAPE_TIMEOUT = 10.0
_FILE_SD_NAME = re.compile(r"[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)")  # Prometheus's patFileSDName


class BasicAuth(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``basic_auth``: a user and either ``password`` or ``password_file`` (read at each request)."""

    username: str
    password: str | None = None
    password_file: str | None = None

    def __post_init__(self) -> None:
        if self.password is not None and self.password_file is not None:
            raise ValueError("at most one of password and password_file must be configured")


class Authorization(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``authorization``: ``Authorization: <type> <credentials>``, the credentials given or read from a file."""

    type: str = "Bearer"
    credentials: str | None = None
    credentials_file: str | None = None

    def __post_init__(self) -> None:
        if self.credentials is not None and self.credentials_file is not None:
            raise ValueError("at most one of credentials and credentials_file must be configured")
        if self.type.strip().lower() == "basic":
            raise ValueError('authorization type cannot be set to "basic", use "basic_auth" instead')


class TLSConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``tls_config``."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be configured together")


class HttpClientSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What every Prometheus HTTP client config has: at most one way to authenticate, and TLS."""

    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    bearer_token: str | None = None  # the pre-2.26 spellings of authorization, still accepted
    bearer_token_file: str | None = None
    tls_config: TLSConfig = msgspec.field(default_factory=TLSConfig)

    def __post_init__(self) -> None:
        ways = [self.basic_auth is not None, self.authorization is not None,
                self.bearer_token is not None or self.bearer_token_file is not None]
        if sum(ways) > 1:
            raise ValueError("at most one of basic_auth, authorization and bearer_token(_file) must be configured")
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("at most one of bearer_token and bearer_token_file must be configured")


class StaticConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``static_configs``: targets (``host:port``) and the labels they all get."""

    targets: list[str] = msgspec.field(default_factory=list)
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class FileSDConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``file_sd_configs``: YAML or JSON files (globs in the last path element) of target groups, watched."""

    files: list[str]
    refresh_interval: Duration = Duration(300.0)

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("file service discovery config must contain at least one path name")
        for name in self.files:
            if not _FILE_SD_NAME.fullmatch(name):
                raise ValueError(f"path name {name!r} is not valid for file discovery (a .json, .yml or .yaml "
                                 "file; a * only in the last path element)")


class HTTPSDConfig(HttpClientSettings, kw_only=True):
    """``http_sd_configs``: a URL answering a JSON list of target groups, polled."""

    url: str
    refresh_interval: Duration = Duration(60.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        url = urlsplit(self.url)
        if url.scheme not in ("http", "https"):
            raise ValueError("URL scheme must be 'http' or 'https'")
        if not url.netloc:
            raise ValueError("host is missing in URL")
        if self.refresh_interval <= 0:  # Prometheus's ticker would panic; a poll loop would spin
            raise ValueError("refresh_interval must be greater than 0")


class KubernetesNamespaces(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``namespaces``: which namespaces' pods to watch (all when empty)."""

    own_namespace: bool = False
    names: list[str] = msgspec.field(default_factory=list)


class KubernetesSelector(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``selectors``: label and field selectors the API server applies to the watch."""

    role: Literal["pod"]
    label: str | None = None
    field: str | None = None


class KubernetesSDConfig(HttpClientSettings, kw_only=True):
    """``kubernetes_sd_configs`` with role ``pod``, restricted to the pods of this node (``spec.nodeName``).

    ``api_server`` unset: in-cluster (the service account's token and CA), or ``kubeconfig_file``.
    """

    role: Literal["pod"]
    api_server: str | None = None
    kubeconfig_file: str | None = None
    namespaces: KubernetesNamespaces = msgspec.field(default_factory=KubernetesNamespaces)
    selectors: list[KubernetesSelector] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.api_server is not None and self.kubeconfig_file is not None:
            raise ValueError("at most one of api_server and kubeconfig_file must be configured")


DEFAULT_BODY_SIZE_LIMIT = 64 * 1024 * 1024  # of a page once unzipped: Prometheus has none, so a gzip bomb takes
# its memory; 64 MiB is ~1,000 times a node exporter's page


class ScrapeConfig(HttpClientSettings, kw_only=True):
    """One ``scrape_configs`` entry (a job). Unset intervals and timeouts come from ``global``."""

    job_name: str
    scrape_interval: Duration | None = None
    scrape_timeout: Duration | None = None
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    params: dict[str, list[str]] = msgspec.field(default_factory=dict)
    honor_labels: bool = False
    honor_timestamps: bool = True
    sample_limit: int = 0  # 0: no limit
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0
    body_size_limit: ByteSize | None = None  # unset: DEFAULT_BODY_SIZE_LIMIT; 0: none, as in Prometheus
    static_configs: list[StaticConfig] = msgspec.field(default_factory=list)
    file_sd_configs: list[FileSDConfig] = msgspec.field(default_factory=list)
    http_sd_configs: list[HTTPSDConfig] = msgspec.field(default_factory=list)
    kubernetes_sd_configs: list[KubernetesSDConfig] = msgspec.field(default_factory=list)
    relabel_configs: list[RelabelConfig] = msgspec.field(default_factory=list)
    metric_relabel_configs: list[RelabelConfig] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.job_name:
            raise ValueError("job_name is empty")
        urls = [t for static in self.static_configs for t in static.targets if "/" in t]
        if urls and not self.relabel_configs:  # Prometheus refuses a URL unless relabelling may rewrite it
            raise ValueError(f"{urls[0]!r} is not a valid hostname (host:port, without scheme or path)")
        if self.scrape_interval is not None and self.scrape_timeout is not None \
                and self.scrape_timeout > self.scrape_interval:
            raise ValueError(f"scrape_timeout {self.scrape_timeout:g}s is longer than scrape_interval "
                             f"{self.scrape_interval:g}s")


class GlobalConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``global``: the defaults of every job, and the labels every series gets."""

    scrape_interval: Duration = Duration(60.0)
    scrape_timeout: Duration = Duration(0.0)  # unset: 10s, or the interval when that is shorter (config.go)
    evaluation_interval: Duration = Duration(60.0)  # accepted (pasted prometheus.yml files have it), unused
    external_labels: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.scrape_timeout:
            self.scrape_timeout = Duration(min(DEFAULT_SCRAPE_TIMEOUT, self.scrape_interval))
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError(f"global scrape_timeout {self.scrape_timeout:g}s is longer than scrape_interval "
                             f"{self.scrape_interval:g}s")


class QueueConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``remote_write.queue_config``, Prometheus's defaults (config/config.go ``DefaultQueueConfig``)."""

    capacity: int = 10_000
    max_shards: int = 50
    min_shards: int = 1
    max_samples_per_send: int = 2_000
    batch_send_deadline: Duration = Duration(5.0)
    min_backoff: Duration = Duration(0.03)
    max_backoff: Duration = Duration(5.0)
    retry_on_http_429: bool = True

    def __post_init__(self) -> None:
        for name in ("capacity", "max_shards", "min_shards", "max_samples_per_send"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.min_shards > self.max_shards:
            raise ValueError("min_shards is greater than max_shards")
        if self.min_backoff > self.max_backoff:
            raise ValueError("min_backoff is greater than max_backoff")
