"""One target's scrape loop, as Prometheus's ``scrape/scrape.go`` runs it.

Every ``interval``, at an offset inside the interval that is stable per target (so targets are spread),
the loop GETs the target's page within ``timeout``, parses it (text 0.0.4 or OpenMetrics, by the
response's Content-Type), attaches the target labels (``honor_labels``), applies
``metric_relabel_configs``, checks the limits, and sends one batch: the samples, staleness markers for the
series that went away, and the five report series (``up``, ``scrape_duration_seconds``...). A scrape that
fails for any reason (refused, timed out, HTTP status, garbage, a limit) sends ``up`` 0 and marks the
previous scrape's series stale; nothing a target does ends the loop.

Labels are worked out once per series, not once per sample: the same series come back every scrape, so
the result of label handling and relabelling, a :class:`~agent.core.metric.Series`, is cached per series as
written on the page (the parser's key, whose hash it computed already; a series in the cache is not parsed
again), and the cache keeps only the series of the last successful scrape. A scrape then builds
only a ``Sample(series, value, timestamp)`` per sample, and the series that went away are a set difference.

Most exporters write the same page every time but for its values. So the loop also keeps the last page's
shape (:class:`~agent.prometheus.exposition.PageShape`: its comment lines, and where each sample line is). A
page with that shape becomes its samples in a few passes over the whole page, with no Python step per line:
each sample line is split at its last space, and the parts before it must equal the last page's series keys
in order. The values are then checked as the parser checks them, and the comment lines must be unchanged.
Nothing is new or gone then, so nothing is marked stale. Any difference, a value the format does not allow
included, sends the page through the full parse.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
import time
import zlib
from array import array
from collections.abc import Awaitable, Callable, Iterable
from itertools import repeat
from pathlib import Path

import aiohttp

from agent import __version__
from agent.core.batch import Batch, Kind
from agent.core.metric import Sample, Series
from agent.observe.stats import ScrapeStats
from agent.prometheus import STALE_NAN
from agent.prometheus.client import Credentials, CredentialsError, ssl_context
from agent.prometheus.config import DEFAULT_BODY_SIZE_LIMIT, ScrapeConfig
from agent.prometheus.exposition import Exposition, PageShape, kind_of, page_shape, parse_exposition, repeat_values
from agent.prometheus.relabel import Relabeler
from agent.prometheus.targets import ScrapeTarget

log = logging.getLogger(__name__)

ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
USER_AGENT = f"agent/{__version__}"
SHAPE_RETRY = 10  # scrapes to wait before looking for the shape of a page again after one had none
LARGE_PAGE = 1024 * 1024  # a page this big (~10,000 samples, 0.01-0.02 s to parse) is parsed in a thread
SAMPLE_BYTES = 128  # a Sample in memory: the object, its value and timestamp (name and labels are shared)
REPORT_NAMES = ("up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                "scrape_series_added")

Labels = tuple[tuple[str, str], ...]
Send = Callable[[Batch], Awaitable[None]]


class ScrapeError(Exception):
    """A scrape that failed; ``reason`` is what it is counted as (timeout, http_status, sample_limit...)."""

    def __init__(self, reason: str, message: str, scraped: int = 0, kept: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.scraped = scraped  # samples on the page (for scrape_samples_scraped), when it was parsed
        self.kept = kept


def offset(key: str, interval: float, now: float | None = None) -> float:
    """Seconds until this target's next slot: a point inside the interval fixed by the target's key (like
    Prometheus's ``Target.offset``), pinned to absolute time so it does not move between calls."""
    interval_ns = max(1, int(interval * 1e9))
    now_ns = time.time_ns() if now is None else int(now * 1e9)
    slot = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") % interval_ns
    delay = interval_ns - now_ns % interval_ns + slot
    if delay > interval_ns:
        delay -= interval_ns
    return delay / 1e9


class ScrapeClient:
    """The HTTP side of one job's scrapes: one connection pool, its TLS, its credentials."""

    def __init__(self, config: ScrapeConfig, config_dir: Path) -> None:
        self.config = config
        self._ssl = ssl_context(config.tls_config, config_dir)  # BuildError for an unreadable CA or key
        self._credentials = Credentials(config, config_dir)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=0)
            # cookies are ignored, as Prometheus's client (no cookie jar) ignores them
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def fetch(self, url: str, seconds: float) -> tuple[bytes, str]:
        """The decoded body and Content-Type of one scrape, within ``seconds``; raises ScrapeError."""
        headers = {"Accept": ACCEPT, "Accept-Encoding": "gzip", "User-Agent": USER_AGENT,
                   "X-Prometheus-Scrape-Timeout-Seconds": f"{seconds:g}"}
        try:
            headers.update(self._credentials.header())
        except CredentialsError as exc:
            raise ScrapeError("auth", str(exc)) from None
        try:
            async with asyncio.timeout(seconds), self._open().get(url, headers=headers) as response:
                if response.status != 200:
                    raise ScrapeError("http_status", f"server returned HTTP status {response.status} "
                                      f"{response.reason or ''}".rstrip())
                limit = self.config.body_size_limit
                body = await _read_body(response, DEFAULT_BODY_SIZE_LIMIT if limit is None else int(limit))
                return body, response.headers.get("Content-Type", "")
        except TimeoutError:
            raise ScrapeError("timeout", f"scrape timed out after {seconds:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ScrapeError("connection", f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, gunzipped if it was sent gzipped; ``limit`` (0: none) bounds the decoded size as Prometheus
    does (a body of ``limit`` bytes or more fails), so a gzip bomb stops at the limit."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("gzip", "identity", ""):
        raise ScrapeError("content_encoding", f"unsupported Content-Encoding {encoding!r}")
    inflate = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(256 * 1024):
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk, limit - size if limit else 0)
            except zlib.error as exc:
                raise ScrapeError("gzip", f"invalid gzip body: {exc}") from None
        size += len(chunk)
        if limit and size >= limit:
            raise ScrapeError("body_size_limit", f"body size limit of {limit} bytes exceeded")
        parts.append(chunk)
    if inflate is not None and not inflate.eof:
        raise ScrapeError("gzip", "gzip body cut short")
    return b"".join(parts)


class _Repeat:
    """A target's last page shape (:class:`~agent.prometheus.exposition.PageShape`) with the series of its
    samples: a page with that shape becomes its samples in a few passes over the page."""

    def __init__(self, shape: PageShape, series: list[Series | None], series_set: set[Series]) -> None:
        self.shape = shape
        self.series_set = series_set
        self.kept: array[int] | None = None  # the samples relabelling keeps, when it drops some
        if any(s is None for s in series):
            self.kept = array("l", [i for i, s in enumerate(series) if s is not None])
        self.series: list[Series] = [s for s in series if s is not None]

    def samples(self, body: bytes, openmetrics: bool, timestamp_ms: int) -> list[Sample] | None:
        """The page's samples stamped ``timestamp_ms``, or None if the page does not have this shape."""
        values = repeat_values(body, openmetrics, self.shape)
        if values is None:
            return None
        if self.kept is not None:
            values = list(map(values.__getitem__, self.kept))
        return list(map(Sample, self.series, values, repeat(timestamp_ms)))


class ScrapeLoop:
    """Scrapes one :class:`ScrapeTarget` until stopped; ``send`` takes each scrape's batch."""

    def __init__(self, target: ScrapeTarget, client: ScrapeClient, send: Send, stats: ScrapeStats,
                 external_labels: dict[str, str] | None = None) -> None:
        self.target = target
        self.client = client
        self.send = send
        self.stats = stats
        self.external = sorted((external_labels or {}).items())
        self.relabeler = Relabeler(target.metric_relabel_configs)
        self.instance = dict(target.labels).get("instance", "")
        self.report_labels = self._with_external(target.labels)
        self.report_series = [Series(name, self.report_labels, "gauge") for name in REPORT_NAMES]
        self._shared_pairs = {pair: pair for pair in (*target.labels, *self.external)}
        self._cache: dict[str, Series | None] = {}  # a series' key on the page (Exposition.keys) -> its Series
        self._last: set[Series] = set()  # the series of the last successful scrape (staleness)
        self._repeat: _Repeat | None = None  # the last page's shape, for a page that repeats it
        self._shape_retry = 0  # scrapes left before looking for a shape again
        self._task: asyncio.Task[None] | None = None
        self._retired = False

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.stats.set_health(self.target.job, self.instance, "unknown")
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"scrape {self.target.url}")

    async def stop(self, mark_stale: bool) -> None:
        """Stop scraping; ``mark_stale`` (the target went away) ends its series with stale markers first.
        On agent shutdown nothing is marked stale, as in Prometheus."""
        self._retired = mark_stale
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.stats.forget(self.target.job, self.instance)

    async def run(self) -> None:
        try:
            await self._schedule()
        except asyncio.CancelledError:
            if self._retired:
                await self._send_stale_all()
            raise

    async def _schedule(self) -> None:
        interval = self.target.interval
        loop = asyncio.get_running_loop()
        due = loop.time() + offset(self.target.key, interval)
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self.scrape_once()
            due += interval
            now = loop.time()
            if due < now:  # a scrape (or backpressure) took longer than an interval: skip the missed slots
                due += ((now - due) // interval + 1) * interval

    # -- one scrape -----------------------------------------------------------------------------------------

    async def scrape_once(self) -> None:
        """One scrape: fetch, parse, label, check, and send the batch (samples, stale markers, report)."""
        started = time.monotonic()
        scrape_ms = int(time.time() * 1000)
        try:
            samples, scraped, kept, added = await self._attempt(scrape_ms)
            up = True
        except ScrapeError as error:
            self.stats.fail(self.target.job, self.instance, error.reason)
            log.warning("scrape of %s failed (%s): %s", self.target.url, error.reason, error, extra={
                "job": self.target.job, "instance": self.instance, "reason": error.reason})
            samples = self._stale(self._last, scrape_ms)  # as Prometheus: a failed scrape ends them
            self._last = set()
            scraped, kept, added, up = error.scraped, error.kept, 0, False
        duration = time.monotonic() - started
        report = (float(up), duration, float(scraped), float(kept), float(added))
        samples.extend(Sample(series, value, scrape_ms)
                       for series, value in zip(self.report_series, report, strict=True))
        self.stats.observe(self.target.job, self.instance, up, duration, kept if up else 0)
        await self.send(Batch(samples, Kind.METRICS, SAMPLE_BYTES * len(samples)))

    async def _attempt(self, scrape_ms: int) -> tuple[list[Sample], int, int, int]:
        """Fetch (within ``timeout``) and process; every failure becomes a ScrapeError."""
        try:
            body, content_type = await self.client.fetch(self.target.url, self.target.timeout)
            if len(body) > LARGE_PAGE:  # parsed off the event loop, so the other targets' scrapes go on
                return await asyncio.to_thread(self.process, body, content_type, scrape_ms)
            return self.process(body, content_type, scrape_ms)
        except ScrapeError:
            raise
        except Exception as exc:  # a fault of this scrape (an odd page, a bug): never of the loop
            log.exception("scrape of %s failed unexpectedly", self.target.url, extra={
                "job": self.target.job, "instance": self.instance})
            raise ScrapeError("error", f"{type(exc).__name__}: {exc}") from None

    def process(self, body: bytes, content_type: str, scrape_ms: int) -> tuple[list[Sample], int, int, int]:
        """The samples of a page and its stale markers; (samples, on the page, after relabelling, series added)."""
        openmetrics = content_type.split(";", 1)[0].strip().lower() == "application/openmetrics-text"
        if self._repeat is not None:
            repeated = self._repeat.samples(body, openmetrics, scrape_ms)
            if repeated is not None:
                return self._repeated(repeated)
        cache = self._cache
        try:
            page = parse_exposition(body, openmetrics, cache)
        except ValueError as exc:
            raise ScrapeError("parse", str(exc)) from None
        honor_timestamps = self.target.config.honor_timestamps
        fresh: dict[str, Series | None] = {}
        current: set[Series] = set()
        mark = current.add
        out: list[Sample] = []
        append = out.append
        new: list[Series] = []
        for key, (name, labels, value, timestamp) in zip(page.keys, page.samples, strict=True):
            try:
                series = cache[key]
            except KeyError:
                series = self._series(name, labels, page)
                if series is not None:
                    new.append(series)
            fresh[key] = series
            if series is None:
                continue
            if timestamp is None or not honor_timestamps:  # only these get stale markers, as in Prometheus
                timestamp = scrape_ms
                mark(series)
            append(Sample(series, value, timestamp))
        limit = self.target.config.sample_limit
        if limit and len(out) > limit:
            raise ScrapeError("sample_limit", f"sample_limit exceeded ({len(out)} samples, limit {limit})",
                              len(page.samples), len(out))
        kept = len(out)
        gone = self._last - current
        if gone and new:  # a series back under another type is not gone: no stale marker beside its sample
            back = {(s.name, s.labels) for s in new}
            gone = {s for s in gone if (s.name, s.labels) not in back}
        out.extend(self._stale(gone, scrape_ms))
        self._cache, self._last = fresh, current
        self._remember_shape(body, openmetrics, page, fresh)
        return out, len(page.samples), kept, len(new)

    def _repeated(self, samples: list[Sample]) -> tuple[list[Sample], int, int, int]:
        """A page that repeats the last one but for its values: the same series, none new, none gone."""
        assert self._repeat is not None
        limit = self.target.config.sample_limit
        scraped = len(self._repeat.shape.keys)
        if limit and len(samples) > limit:
            raise ScrapeError("sample_limit", f"sample_limit exceeded ({len(samples)} samples, limit {limit})",
                              scraped, len(samples))
        self._last = self._repeat.series_set  # a failed scrape in between emptied it
        return samples, scraped, len(samples), 0

    def _remember_shape(self, body: bytes, openmetrics: bool, page: Exposition,
                        series: dict[str, Series | None]) -> None:
        """The shape of a page just parsed, so that the next page, if it repeats it, is read in a few passes."""
        self._repeat = None
        if self._shape_retry > 0:
            self._shape_retry -= 1
            return
        shape = page_shape(body, openmetrics, page)
        if shape is None:
            self._shape_retry = SHAPE_RETRY
            return
        self._repeat = _Repeat(shape, [series[key] for key in shape.keys], self._last)

    def _series(self, name: str, scraped: Labels, page: Exposition) -> Series | None:
        """One series' final labels: target labels attached (``honor_labels``), ``metric_relabel_configs``
        applied, limits checked, external labels added; None when relabelling dropped it."""
        labels = {k: v for k, v in scraped if v}
        if self.target.config.honor_labels:
            for k, v in self.target.labels:
                labels.setdefault(k, v)
        else:
            clashes = sorted(((k, labels[k]) for k, _ in self.target.labels if labels.get(k)),
                             key=lambda kv: len(kv[0]))
            labels.update(self.target.labels)
            for k, v in clashes:
                exported = "exported_" + k
                while labels.get(exported):
                    exported = "exported_" + exported
                labels[exported] = v
        labels["__name__"] = name
        if self.relabeler:
            relabelled = self.relabeler.apply(labels)
            if relabelled is None:
                return None
            labels = {k: v for k, v in relabelled.items() if v}
        new_name = labels.pop("__name__", "")
        if not new_name:
            raise ScrapeError("no_metric_name", f"a series of {name} has no metric name after relabelling")
        self._check_limits(new_name, labels)
        shared = self._shared_pairs  # the target's and external labels: one tuple each, not one per series
        pairs = tuple([shared.get(pair, pair) for pair in sorted(labels.items())])
        return Series(sys.intern(new_name), self._with_external(pairs), kind_of(name, page.types))

    def _check_limits(self, name: str, labels: dict[str, str]) -> None:
        config = self.target.config
        if config.label_limit and len(labels) + 1 > config.label_limit:
            raise ScrapeError("label_limit", f"label_limit exceeded (metric: {name:.50}, "
                              f"{len(labels) + 1} labels, limit {config.label_limit})")
        for key, value in (("__name__", name), *labels.items()):
            if config.label_name_length_limit and len(key) > config.label_name_length_limit:
                raise ScrapeError("label_name_length_limit", f"label_name_length_limit exceeded (metric: "
                                  f"{name:.50}, label: {key:.50}, limit {config.label_name_length_limit})")
            if config.label_value_length_limit and len(value) > config.label_value_length_limit:
                raise ScrapeError("label_value_length_limit", f"label_value_length_limit exceeded (metric: "
                                  f"{name:.50}, label: {key:.50}, limit {config.label_value_length_limit})")

    def _with_external(self, labels: Labels) -> Labels:
        """``labels`` with the external labels they do not have (they never override a series' own)."""
        if not self.external:
            return labels
        have = {k for k, _ in labels}
        extra = [pair for pair in self.external if pair[0] not in have]
        return tuple(sorted((*labels, *extra))) if extra else labels

    # -- staleness ------------------------------------------------------------------------------------------

    @staticmethod
    def _stale(series: Iterable[Series], timestamp_ms: int) -> list[Sample]:
        return [Sample(s, STALE_NAN, timestamp_ms) for s in series]

    async def _send_stale_all(self) -> None:
        """The target went away: its last series and its report series end now."""
        now = int(time.time() * 1000)
        samples = self._stale(self._last, now)
        samples.extend(self._stale(self.report_series, now))
        self._last = set()
        await self.send(Batch(samples, Kind.METRICS, SAMPLE_BYTES * len(samples)))
