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
    """User name."""
    password: str | None = None
    """Password (give it as ${VAR}); or password_file."""
    password_file: str | None = None
    """File holding the password, read at each request."""

    def __post_init__(self) -> None:
        if self.password is not None and self.password_file is not None:
            raise ValueError("at most one of password and password_file must be configured")


class Authorization(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``authorization``: ``Authorization: <type> <credentials>``, the credentials given or read from a file."""

    type: str = "Bearer"
    """The header's scheme: Authorization: <type> <credentials>."""
    credentials: str | None = None
    """The credentials (give them as ${VAR}); or credentials_file."""
    credentials_file: str | None = None
    """File holding the credentials, read at each request."""

    def __post_init__(self) -> None:
        if self.credentials is not None and self.credentials_file is not None:
            raise ValueError("at most one of credentials and credentials_file must be configured")
        if self.type.strip().lower() == "basic":
            raise ValueError('authorization type cannot be set to "basic", use "basic_auth" instead')


class TLSConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``tls_config``."""

    ca_file: str | None = None
    """PEM file of the CAs to trust instead of the system's."""
    cert_file: str | None = None
    """PEM client certificate, for mutual TLS (with key_file)."""
    key_file: str | None = None
    """PEM private key of cert_file."""
    server_name: str | None = None
    """Name the server's certificate must have (and SNI sends) when it differs from the host connected to."""
    insecure_skip_verify: bool = False
    """Accept any certificate; for testing only."""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be configured together")


class HttpClientSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What every Prometheus HTTP client config has: at most one way to authenticate, and TLS."""

    basic_auth: BasicAuth | None = None
    """HTTP basic authentication."""
    authorization: Authorization | None = None
    """Authorization header: a type and credentials."""
    bearer_token: str | None = None
    """Bearer token (the pre-2.26 spelling of authorization)."""
    bearer_token_file: str | None = None
    """File holding the bearer token, read at each request."""
    tls_config: TLSConfig = msgspec.field(default_factory=TLSConfig)
    """TLS for https."""

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
    """host:port of each target."""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    """Labels every target of this group gets."""


class FileSDConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``file_sd_configs``: YAML or JSON files (globs in the last path element) of target groups, watched."""

    files: list[str]
    """YAML or JSON files of target groups; a * only in the last path element; relative to the config file."""
    refresh_interval: Duration = Duration(300.0)
    """How often the files are read again (a change is also seen within a second)."""

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
    """URL answering a JSON list of target groups."""
    refresh_interval: Duration = Duration(60.0)
    """How often the URL is polled."""

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
    """Watch the agent's own namespace (from its service account)."""
    names: list[str] = msgspec.field(default_factory=list)
    """Namespaces whose pods are targets; none: all."""


class KubernetesSelector(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``selectors``: label and field selectors the API server applies to the watch."""

    role: Literal["pod"]
    """pod, the only role."""
    label: str | None = None
    """Label selector the API server applies, e.g. app=web."""
    field: str | None = None
    """Field selector the API server applies."""


class KubernetesSDConfig(HttpClientSettings, kw_only=True):
    """``kubernetes_sd_configs`` with role ``pod``, restricted to the pods of this node (``spec.nodeName``).

    ``api_server`` unset: in-cluster (the service account's token and CA), or ``kubeconfig_file``.
    """

    role: Literal["pod"]
    """pod: this node's pods (spec.nodeName is NODE_NAME, else the hostname)."""
    api_server: str | None = None
    """API server URL; unset: in-cluster (the service account's token and CA) or kubeconfig_file."""
    kubeconfig_file: str | None = None
    """kubeconfig to use instead of the in-cluster account (exec and auth-provider plugins are not supported)."""
    namespaces: KubernetesNamespaces = msgspec.field(default_factory=KubernetesNamespaces)
    """Which namespaces' pods to watch; all when empty."""
    selectors: list[KubernetesSelector] = msgspec.field(default_factory=list)
    """Label and field selectors the API server applies to the watch."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.api_server is not None and self.kubeconfig_file is not None:
            raise ValueError("at most one of api_server and kubeconfig_file must be configured")


DEFAULT_BODY_SIZE_LIMIT = 64 * 1024 * 1024  # of a page once unzipped: Prometheus has none, so a gzip bomb takes
# its memory; 64 MiB is ~1,000 times a node exporter's page


class ScrapeConfig(HttpClientSettings, kw_only=True):
    """One ``scrape_configs`` entry (a job). Unset intervals and timeouts come from ``global``."""

    job_name: str
    """The job label of its targets; unique among the jobs."""
    scrape_interval: Duration | None = None
    """How often each target is scraped; unset: global's."""
    scrape_timeout: Duration | None = None
    """How long one scrape may take; unset: global's, at most the interval."""
    metrics_path: str = "/metrics"
    """Path scraped on each target."""
    scheme: Literal["http", "https"] = "http"
    """http or https."""
    params: dict[str, list[str]] = msgspec.field(default_factory=dict)
    """Query parameters of each scrape."""
    honor_labels: bool = False
    """Keep scraped labels that clash with target labels (else they become exported_<name>)."""
    honor_timestamps: bool = True
    """Keep the timestamps a page gives (else the scrape's time)."""
    sample_limit: int = 0
    """A scrape with more samples (after metric relabelling) fails; 0: no limit."""
    label_limit: int = 0
    """A scrape with a series of more labels fails; 0: no limit."""
    label_name_length_limit: int = 0
    """A scrape with a longer label name fails; 0: no limit."""
    label_value_length_limit: int = 0
    """A scrape with a longer label value fails; 0: no limit."""
    body_size_limit: ByteSize | None = None  # unset: DEFAULT_BODY_SIZE_LIMIT; 0: none, as in Prometheus
    """A page larger than this once unzipped fails the scrape; unset: 64MiB (Prometheus has none); 0: no limit."""
    static_configs: list[StaticConfig] = msgspec.field(default_factory=list)
    """Fixed target groups."""
    file_sd_configs: list[FileSDConfig] = msgspec.field(default_factory=list)
    """Target groups read from files."""
    http_sd_configs: list[HTTPSDConfig] = msgspec.field(default_factory=list)
    """Target groups polled from URLs."""
    kubernetes_sd_configs: list[KubernetesSDConfig] = msgspec.field(default_factory=list)
    """Targets from this node's pods."""
    relabel_configs: list[RelabelConfig] = msgspec.field(default_factory=list)
    """Relabelling of targets before they are scraped (keep, drop, rewrite the address, ...)."""
    metric_relabel_configs: list[RelabelConfig] = msgspec.field(default_factory=list)
    """Relabelling of each scraped series before it is passed on."""

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
    """How often targets are scraped, unless their job says otherwise."""
    scrape_timeout: Duration = Duration(0.0)
    """How long one scrape may take, unless its job says otherwise; unset: 10s, or the interval when that is shorter."""
    evaluation_interval: Duration = Duration(60.0)
    """Accepted, as prometheus.yml files have it; unused (the agent evaluates no rules)."""
    external_labels: dict[str, str] = msgspec.field(default_factory=dict)
    """Labels added to every series that lacks them."""

    def __post_init__(self) -> None:
        if not self.scrape_timeout:
            self.scrape_timeout = Duration(min(DEFAULT_SCRAPE_TIMEOUT, self.scrape_interval))
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError(f"global scrape_timeout {self.scrape_timeout:g}s is longer than scrape_interval "
                             f"{self.scrape_interval:g}s")


class QueueConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``remote_write.queue_config``, Prometheus's defaults (config/config.go ``DefaultQueueConfig``)."""

    capacity: int = 10_000
    """Accepted as Prometheus has it; the sink's buffer bounds what waits."""
    max_shards: int = 50
    """Shards at most (the agent runs 4, within min_shards and max_shards; it does not reshard by load)."""
    min_shards: int = 1
    """Shards at least; raise it for more requests in flight."""
    max_samples_per_send: int = 2_000
    """Samples per request at most."""
    batch_send_deadline: Duration = Duration(5.0)
    """A request leaves at the latest this long after its first sample."""
    min_backoff: Duration = Duration(0.03)
    """First wait before a retry; it doubles after each failure."""
    max_backoff: Duration = Duration(5.0)
    """Longest wait between two retries."""
    retry_on_http_429: bool = True
    """Retry requests the receiver answered with 429; false makes a 429 final."""

    def __post_init__(self) -> None:
        for name in ("capacity", "max_shards", "min_shards", "max_samples_per_send"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.min_shards > self.max_shards:
            raise ValueError("min_shards is greater than max_shards")
        if self.min_backoff > self.max_backoff:
            raise ValueError("min_backoff is greater than max_backoff")
