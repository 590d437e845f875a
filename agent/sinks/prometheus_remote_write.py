"""Sink `prometheus_remote_write`: metric samples to a remote-write 1.0 receiver, configured like a ``remote_write``
entry of prometheus.yml.

Each request is one snappy-compressed protobuf ``WriteRequest`` (:mod:`agent.prometheus.remote_write`) with
the protocol's headers: the samples of one series grouped into one TimeSeries, labels sorted, samples in time
order. A series' labels are its name and labels, plus every ``external_labels`` label it does not have
already, then ``write_relabel_configs``; a series those drop, or leave without a name, is not sent (counted
in ``agent_prometheus_remote_write_dropped_samples_total`` and as discarded, ``write_relabel``). What that
gives for a series, and its encoded label fields, are remembered (:class:`SeriesLabels`: what was seen in
the last 10 to 20 minutes), so a series costs its relabelling and encoding once, not once a sample.

``queue_config`` maps onto the shared HTTP delivery: a fixed number of ordered shards (a series always hashes
to the same one, and a shard never has two requests in flight, so one series' samples never arrive out of
order) and as many requests in flight at most: :data:`DEFAULT_SHARDS` (the other HTTP sinks' concurrency),
at least ``min_shards``, at most ``max_shards`` (Prometheus reshards between the two by load; the agent does
not: set ``min_shards`` for more requests in flight). Fewer shards means fuller requests: 50 shards sent 50
small requests a deadline where 4 send a few full ones (about 15 % less CPU per sample at 10,000 samples/s).
Requests carry at most ``max_samples_per_send`` samples, sent once full or ``batch_send_deadline`` after their
first sample; retries back off between ``min_backoff`` and ``max_backoff``. ``capacity`` is accepted and
unused (the sink's ``buffer:`` is its queue).

Answers, as the spec has them: 2xx delivers; 5xx, and 429 unless ``retry_on_http_429: false``, are retried
for as long as it takes, never sooner than a Retry-After; any other answer is final: the request's samples
go to the ``dead_letter`` (if set) with the receiver's message, capped at :data:`MESSAGE_LIMIT` bytes,
and are counted as rejected. A batch is acknowledged to its source once every request holding part of it
is delivered or rejected.

Credentials and TLS are Prometheus's (:mod:`agent.prometheus.client`): ``basic_auth`` (``password`` or
``password_file``), ``authorization`` (``credentials`` or ``credentials_file``) or ``bearer_token(_file)``, a
file read again once it changes, so a rotated secret is picked up, its content never logged; ``tls_config``
with ``server_name``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import msgspec

from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.config.units import ByteSize, Duration
from agent.core.component import SinkContext
from agent.core.errors import PermanentError, RetryableError
from agent.core.metric import Series
from agent.delivery.batcher import Request
from agent.delivery.config import BatchConfig, DeadLetterConfig, HttpSinkConfig, RequestConfig
from agent.delivery.driver import HttpDriver, Outcome
from agent.delivery.http import HttpClient, ThrottledError, redacted, retry_after
from agent.prometheus.client import Credentials, ssl_context
from agent.prometheus.config import Authorization, BasicAuth, HttpClientSettings, QueueConfig, TLSConfig
from agent.prometheus.relabel import RelabelConfig, Relabeler
from agent.prometheus.remote_write import PROTOCOL_HEADERS, compress, encode_groups, encode_labels

log = logging.getLogger("agent.sinks.prometheus_remote_write")
DEFAULT_SHARDS = 4  # ordered shards unless min_shards asks for more or max_shards for fewer

SERIES_CACHE = 1_000_000  # series whose label fields are remembered, at most, per generation
GENERATION_S = 600.0  # seconds a generation of the series cache is young
MESSAGE_LIMIT = 1024  # bytes of a refusing receiver's answer kept with the dead letters
MAX_REQUEST_BYTES = 256 * 1024 * 1024  # the batch limit in bytes: max_samples_per_send is what bounds a request
# Prometheus's config.go reservedHeaders, and Authorization (set only through the credentials keys)
RESERVED_HEADERS = frozenset({
    "authorization", "host", "content-encoding", "content-length", "content-type", "user-agent", "connection",
    "keep-alive", "proxy-authenticate", "proxy-authorization", "www-authenticate", "accept-encoding",
    "x-prometheus-remote-write-version", "x-prometheus-remote-read-version", "x-amz-date",
    "x-amz-security-token", "x-amz-content-sha256"})
_MISSING: Any = object()


class PrometheusRemoteWriteConfig(SinkConfig, tag="prometheus_remote_write", kw_only=True):
    """A ``remote_write`` entry of prometheus.yml, with the agent's ``inputs``, ``buffer`` and ``dead_letter``.

    Remote-write 1.0: snappy-compressed protobuf, labels sorted, the reserved headers set. A series always goes through
    the same shard, one request in flight per shard, so no series goes back in time. 5xx and 429 are retried with
    backoff for as long as it takes; any other answer is final (dead letter, counted). A scrape's samples are
    acknowledged only once the receiver took them.
    """

    input_types: ClassVar[frozenset[str]] = frozenset({"metrics"})
    url: str
    """The receiver's remote-write URL."""
    name: str | None = None
    """Name of the remote_write entry (agent migrate prometheus names the sink after it)."""
    remote_timeout: Duration = Duration(30.0)
    """How long one request may take."""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra HTTP headers; the reserved remote-write headers are refused."""
    external_labels: dict[str, str] = msgspec.field(default_factory=dict)
    """Labels added to every series that does not have them (before write_relabel_configs)."""
    write_relabel_configs: list[RelabelConfig] = msgspec.field(default_factory=list)
    """Relabelling applied to each series before it is sent; a dropped series is counted."""
    queue_config: QueueConfig = msgspec.field(default_factory=QueueConfig)
    """Shards, request size and retry backoff."""
    basic_auth: BasicAuth | None = None
    """HTTP basic authentication."""
    authorization: Authorization | None = None
    """Authorization header: a type and credentials."""
    bearer_token: str | None = None
    """Bearer token (the pre-2.26 spelling of authorization)."""
    bearer_token_file: str | None = None
    """File holding the bearer token, read at each request."""
    tls_config: TLSConfig = msgspec.field(default_factory=TLSConfig)
    """TLS for an https url."""
    dead_letter: DeadLetterConfig | None = None
    """Where samples the receiver refused for good are written, with its message (counted as discarded either way)."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        for header in self.headers:
            if header.lower() == "authorization":
                raise ValueError("the authorization header must be set with basic_auth, authorization or "
                                 "bearer_token, not headers")
            if header.lower() in RESERVED_HEADERS:
                raise ValueError(f"{header} is a reserved header; it cannot be set in headers")
        settings = self.client_settings()  # at most one way to authenticate
        if urlsplit(self.url).username is not None and (
                settings.basic_auth or settings.authorization or settings.bearer_token or settings.bearer_token_file):
            raise ValueError("url has a user and password, and basic_auth, authorization or bearer_token is set "
                             "too: give the credentials one way")

    def client_settings(self) -> HttpClientSettings:
        return HttpClientSettings(basic_auth=self.basic_auth, authorization=self.authorization,
                                  bearer_token=self.bearer_token, bearer_token_file=self.bearer_token_file,
                                  tls_config=self.tls_config)

    def http_config(self) -> HttpSinkConfig:
        """The shared HTTP delivery's config: ``queue_config`` as batches, shards, backoff (module docstring);
        TLS is :func:`agent.prometheus.client.ssl_context`'s."""
        queue = self.queue_config
        return HttpSinkConfig(
            inputs=self.inputs, buffer=self.buffer, dead_letter=self.dead_letter, healthcheck=False,
            batch=BatchConfig(max_events=queue.max_samples_per_send, max_bytes=ByteSize(MAX_REQUEST_BYTES),
                              timeout=queue.batch_send_deadline),
            request=RequestConfig(concurrency=shard_count(queue), timeout=self.remote_timeout,
                                  retry_initial_backoff=queue.min_backoff, retry_max_backoff=queue.max_backoff,
                                  headers=dict(self.headers)))


class SeriesLabels:
    """A series' final labels as encoded label fields (None: not sent), computed once and remembered.

    Two generations keyed by :class:`~agent.core.metric.Series`: lookups go to :attr:`young`; a series found
    only in the old one moves up. The young generation becomes the old one (and the old one is let go) every
    :data:`GENERATION_S` seconds, or once it holds :data:`SERIES_CACHE` series; so every series seen in the
    last 10 minutes stays (500,000 live series scraped every 15 s are hits scrape after scrape) and memory is
    bounded by the series seen in two generations, at most ``2 x SERIES_CACHE``.
    """

    def __init__(self, external_labels: dict[str, str], relabel: Relabeler,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.external = external_labels
        self.relabel = relabel if relabel else None
        self.young: dict[Series, bytes | None] = {}
        self._old: dict[Series, bytes | None] = {}
        self._clock = clock
        self._swap_at = clock() + GENERATION_S

    def __len__(self) -> int:
        return len(self.young) + len(self._old)

    def get(self, series: Series) -> bytes | None:
        fields = self.young.get(series, _MISSING)
        return self.resolve(series) if fields is _MISSING else fields  # type: ignore[no-any-return]

    def age(self) -> None:
        """Start a new generation if the young one is old enough (called once per request, not per sample)."""
        now = self._clock()
        if now >= self._swap_at:
            self._swap(now)

    def _swap(self, now: float) -> None:
        self._old, self.young = self.young, {}
        self._swap_at = now + GENERATION_S

    def resolve(self, series: Series) -> bytes | None:
        """What :attr:`young` lacks: from the older generation, or computed now."""
        fields = self._old.pop(series, _MISSING)
        if fields is _MISSING:
            fields = self.compute(series)
        if len(self.young) >= SERIES_CACHE:
            self._swap(self._clock())
        self.young[series] = fields
        return fields  # type: ignore[no-any-return]

    def compute(self, series: Series) -> bytes | None:
        merged = dict(series.labels)
        merged["__name__"] = series.name
        for label, value in self.external.items():
            merged.setdefault(label, value)
        final = merged if self.relabel is None else self.relabel.apply(merged)
        if final is None or not final.get("__name__"):
            return None
        return encode_labels(sorted((k, v) for k, v in final.items() if v))


def shard_count(queue: QueueConfig) -> int:
    """The sink's ordered shards (and requests in flight): DEFAULT_SHARDS within [min_shards, max_shards]."""
    return min(max(DEFAULT_SHARDS, queue.min_shards), queue.max_shards)


@register("sink", "prometheus_remote_write", PrometheusRemoteWriteConfig,
          "Sends metrics to a Prometheus remote-write 1.0 receiver.")
class PrometheusRemoteWriteSink:
    """Requests of samples as WriteRequests, in ordered shards by series (see the module docstring)."""

    ordered_partitions = True
    partition_key: Callable[[Any], Hashable] | None

    def __init__(self, config: PrometheusRemoteWriteConfig, ctx: BuildContext) -> None:
        self.config = config
        self.stats = ctx.stats
        self.series = SeriesLabels(config.external_labels, Relabeler(config.write_relabel_configs))
        self.credentials = Credentials(config.client_settings(), ctx.config_dir)
        shards = shard_count(config.queue_config)
        self.partition_key = None if shards == 1 else (lambda sample: hash(sample.series) % shards)
        self.driver = HttpDriver(self, config.http_config(), ctx.component_id, ctx.stats,
                                 ssl_context(config.tls_config, ctx.config_dir))

    def encode(self, request: Request) -> bytes:
        """The compressed WriteRequest of the request's samples; dropped series leave the request for good."""
        self.series.age()
        young, resolve = self.series.young, self.series.resolve
        groups: dict[bytes, Any] = {}  # label fields -> the series' sample, or its samples once there are two
        dropped = 0
        for sample in request.events:
            series = sample.series
            fields = young.get(series, _MISSING)
            if fields is _MISSING:
                fields = resolve(series)
            if fields is None:
                dropped += 1
                continue
            group = groups.get(fields)
            if group is None:
                groups[fields] = sample
            elif type(group) is list:
                group.append(sample)
            else:
                groups[fields] = [group, sample]
        if dropped:
            self._forget(request, dropped)
        return compress(encode_groups(groups.items())) if groups else b""

    def _forget(self, request: Request, dropped: int) -> None:
        """Count the samples of dropped series and take them out of the request (a retry never counts them again)."""
        self.stats.count("dropped_samples", dropped)
        self.stats.discard("write_relabel", dropped)
        lookup = self.series.get
        request.events = [s for s in request.events if lookup(s.series) is not None]

    async def send(self, client: HttpClient, request: Request, body: bytes) -> Outcome:
        if not body:
            return Outcome()
        url = self.config.url
        headers = {**PROTOCOL_HEADERS, **self.credentials.header()}
        response = await client.request("POST", url, body, headers)
        status = response.status
        if 200 <= status < 300:
            return Outcome()
        message = response.body[:MESSAGE_LIMIT].decode("utf-8", "replace").strip()
        detail = f"POST {redacted(url)}: HTTP {status}: {message}"
        if status >= 500:
            raise RetryableError(detail, retry_after(response.headers))
        if status == 429 and self.config.queue_config.retry_on_http_429:
            raise ThrottledError(detail, retry_after(response.headers))
        raise PermanentError(detail)

    async def check(self, client: HttpClient) -> None:
        return None  # remote-write has no read-only request to check a receiver with

    async def healthcheck(self) -> None:
        await self.driver.healthcheck()

    async def run(self, ctx: SinkContext) -> None:
        await self.driver.run(ctx)
