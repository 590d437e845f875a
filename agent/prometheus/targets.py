"""Scrape targets: what discovery found, turned into what one scrape loop needs.

``ScrapeTarget`` is the contract between target building (discovered label sets, ``relabel_configs``,
Prometheus's ``PopulateLabels``) and the scrape loop. ``build_targets`` does what Prometheus 2.42's
``scrape/target.go`` does (the version Debian ships, the one the integration tests run against), including
its default ports: an address without a port gets ``:80`` (http) or ``:443`` (https).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import orjson

from agent.prometheus.config import GlobalConfig, ScrapeConfig
from agent.prometheus.relabel import RelabelConfig, Relabeler

log = logging.getLogger("agent.prometheus.targets")

ADDRESS = "__address__"
SCHEME = "__scheme__"
METRICS_PATH = "__metrics_path__"
SCRAPE_INTERVAL = "__scrape_interval__"
SCRAPE_TIMEOUT = "__scrape_timeout__"
PARAM_PREFIX = "__param_"
META_PREFIX = "__meta_"
RESERVED_PREFIX = "__"

# Prometheus's model.ParseDuration: units in this order, each at most once, whole numbers only.
_PROM_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_UNIT_MS = (("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000),
            ("m", 60_000), ("s", 1000), ("ms", 1))
_PATH_SAFE = "/$&+,:;=@"  # what Go's url.URL leaves unescaped in a path


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One target of one job, after relabelling: where to scrape, how often, and the labels its series get.

    ``labels`` are the final target labels (``job``, ``instance`` and whatever relabelling left), sorted by
    name, without any ``__``-prefixed label. ``key`` identifies the target across discovery updates (the
    job and its labels before ``__meta_*`` were dropped: Prometheus's target hash). ``config`` is the job's
    (auth, TLS, limits, honor_* and ``metric_relabel_configs``); ``interval`` and ``timeout`` are resolved
    against ``global``.
    """

    key: str
    url: str  # scheme://address/metrics_path?params
    labels: tuple[tuple[str, str], ...]
    interval: float
    timeout: float
    config: ScrapeConfig

    @property
    def job(self) -> str:
        return self.config.job_name

    @property
    def metric_relabel_configs(self) -> list[RelabelConfig]:
        return self.config.metric_relabel_configs


class TargetError(ValueError):
    """A discovered target that cannot be scraped (no address, a URL for an address, a bad interval...)."""


def job_interval_timeout(config: ScrapeConfig, global_: GlobalConfig) -> tuple[float, float]:
    """A job's interval and timeout in seconds, resolved against ``global`` as Prometheus's config.go does.

    Raises ``ValueError`` when the timeout is longer than the interval (a config error in Prometheus).
    """
    interval = config.scrape_interval or global_.scrape_interval
    timeout = config.scrape_timeout
    if timeout is None:
        timeout = min(global_.scrape_timeout, interval)
    if timeout > interval:
        raise ValueError(f"scrape_timeout {format_duration(timeout)} is longer than scrape_interval "
                         f"{format_duration(interval)} in job {config.job_name!r}")
    return interval, timeout


def format_duration(seconds: float) -> str:
    """A duration as Prometheus's ``model.Duration.String()`` writes it (``1m30s``, ``2w``, ``500ms``)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in _UNIT_MS:
        if unit in ("y", "w") and ms % size:
            continue  # years and weeks only when exact: 90d reads better than 12w6d
        if count := ms // size:
            parts.append(f"{count}{unit}")
            ms -= count * size
    return "".join(parts)


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration (``model.ParseDuration``: ``30s``, ``1h30m``, ``0``); ValueError if not one."""
    if text == "0":
        return 0.0
    match = _PROM_DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"not a valid duration string: {text!r}")
    return sum(int(n) * size for n, (_, size) in zip(match.groups(), _UNIT_MS, strict=True) if n) / 1000


def split_host_port(address: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``: (host, port), or None when it reports an error."""
    i = address.rfind(":")
    if i < 0:
        return None
    if address.startswith("["):
        end = address.find("]")
        if end < 0 or end + 1 != i:
            return None  # no "]", "[host]" without a port, or something between "]" and ":"
        host, j, k = address[1:end], 1, end + 1
    else:
        host, j, k = address[:i], 0, 0
        if ":" in host:
            return None  # too many colons
    if "[" in address[j:] or "]" in address[k:]:
        return None
    return host, address[i + 1:]


def build_targets(config: ScrapeConfig, global_: GlobalConfig,
                  label_sets: list[dict[str, str]]) -> tuple[list[ScrapeTarget], int]:
    """The targets of one job from its discovered label sets, and how many were dropped or invalid.

    Each label set is one discovered target (``__address__``, its group's labels, ``__meta_*``). Two label
    sets that end up as the same target give one target.
    """
    relabeler = Relabeler(config.relabel_configs)
    interval, timeout = job_interval_timeout(config, global_)
    defaults = {"job": config.job_name, SCRAPE_INTERVAL: format_duration(interval),
                SCRAPE_TIMEOUT: format_duration(timeout), METRICS_PATH: config.metrics_path, SCHEME: config.scheme}
    params = {PARAM_PREFIX + name: values[0] for name, values in config.params.items() if values}
    targets: dict[str, ScrapeTarget] = {}
    dropped = 0
    for discovered in label_sets:
        labels = {**discovered}
        for name, value in defaults.items():
            if not labels.get(name):
                labels[name] = value
        labels.update(params)
        try:
            relabelled = relabeler.apply(labels) if relabeler else labels
            target = None if relabelled is None else _populate(relabelled, config)
        except TargetError as exc:
            log.warning("target dropped", extra={"job": config.job_name, "error": str(exc),
                                                 "address": labels.get(ADDRESS, "")})
            target = None
        if target is None:
            dropped += 1
        else:
            targets.setdefault(target.key, target)
    return list(targets.values()), dropped


def _populate(labels: dict[str, str], config: ScrapeConfig) -> ScrapeTarget:
    """``PopulateLabels`` after relabelling: checks, default port, ``instance``; raises TargetError."""
    address = labels.get(ADDRESS, "")
    if not address:
        raise TargetError("no address")
    scheme = labels.get(SCHEME, "")
    if split_host_port(address) is None and split_host_port(address + ":1234") is not None:
        if scheme in ("http", ""):
            address += ":80"
        elif scheme == "https":
            address += ":443"
        else:
            raise TargetError(f"invalid scheme: {config.scheme!r}")
        labels[ADDRESS] = address
    if "/" in address:
        raise TargetError(f"{address!r} is not a valid hostname")
    interval = _duration_label(labels, SCRAPE_INTERVAL, "interval")
    timeout = _duration_label(labels, SCRAPE_TIMEOUT, "timeout")
    if timeout > interval:
        raise TargetError(f"scrape timeout cannot be greater than scrape interval "
                          f"({labels[SCRAPE_TIMEOUT]!r} > {labels[SCRAPE_INTERVAL]!r})")
    kept = {name: value for name, value in labels.items() if not name.startswith(META_PREFIX)}
    if not kept.get("instance"):
        kept["instance"] = address
    for name, value in kept.items():
        if not _valid_utf8(value):
            raise TargetError(f"invalid label value for {name!r}: {value!r}")
    ordered = sorted(kept.items())
    return ScrapeTarget(
        key=orjson.dumps([config.job_name, ordered]).decode(),
        url=_url(kept, config.params),
        labels=tuple(item for item in ordered if not item[0].startswith(RESERVED_PREFIX)),
        interval=interval,
        timeout=timeout,
        config=config,
    )


def _duration_label(labels: dict[str, str], name: str, what: str) -> float:
    try:
        seconds = parse_duration(labels.get(name, ""))
    except ValueError as exc:
        raise TargetError(f"error parsing scrape {what}: {exc}") from None
    if seconds == 0:
        raise TargetError(f"scrape {what} cannot be 0")
    return seconds


def _url(labels: dict[str, str], config_params: dict[str, list[str]]) -> str:
    """Prometheus's ``Target.URL()``: the job's params, each ``__param_<name>`` replacing its first value."""
    params = {name: list(values) for name, values in config_params.items()}
    for name, value in labels.items():
        if name.startswith(PARAM_PREFIX):
            values = params.setdefault(name[len(PARAM_PREFIX):], [])
            values[:1] = [value]
    query = urlencode([(name, value) for name in sorted(params) for value in params[name]])
    path = quote(labels.get(METRICS_PATH, ""), safe=_PATH_SAFE)
    if path and not path.startswith("/"):
        path = "/" + path
    url = f"{labels.get(SCHEME, '')}://{labels[ADDRESS]}{path}"
    return f"{url}?{query}" if query else url


def _valid_utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\ud800"
        return False
    return True
