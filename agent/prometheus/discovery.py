"""Service discovery: the target groups of a job (``static_configs``, ``file_sd_configs``, ``http_sd_configs``;
``kubernetes_sd_configs`` in ``agent.prometheus.kubernetes_sd``).

A target group is Prometheus's ``{"targets": ["host:port", ...], "labels": {...}}``. A ``Discoverer`` turns its
groups into label sets, one per target (``__address__``, the group's labels, its ``__meta_*`` labels), and hands
its full current list to ``update`` whenever it changes. Addresses are checked where Prometheus checks them,
after ``relabel_configs`` (``agent.prometheus.targets``), since relabelling may rewrite them. Discovery never
fails a job: a file or an answer that cannot be read keeps what it gave before, logged and counted in
``errors``.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson
import yaml

from agent.core.errors import BuildError, RetryableError
from agent.delivery.http import HttpClient
from agent.prometheus.client import Credentials, ssl_context
from agent.prometheus.config import FileSDConfig, HTTPSDConfig, ScrapeConfig, StaticConfig
from agent.prometheus.kubernetes_sd import KubernetesPodDiscoverer

log = logging.getLogger("agent.prometheus.discovery")

Update = Callable[[str, list[dict[str, str]]], None]
LabelSets = list[dict[str, str]]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_JSON_TYPE = re.compile(r"application/json(;.*)?")  # what Prometheus's http_sd accepts, as it matches it
_YAML_LOADER: Any = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # scalars stay text, as Go's yaml gives a string


class Discoverer(Protocol):
    """One source of target groups within a job; ``name`` (``static/0``, ``file_sd/1``...) keys its groups."""

    name: str

    async def run(self, update: Update) -> None:
        """Call update(name, label_sets) with its full current list whenever it changes (at least once at
        start); run until cancelled. A label set has __address__ and the group's labels and __meta_* labels."""


def discoverers_for(config: ScrapeConfig, config_dir: Path) -> list[Discoverer]:
    """The discoverers of a job's ``static_configs``, ``file_sd_configs``, ``http_sd_configs`` and
    ``kubernetes_sd_configs``.

    Relative paths (files, password and CA files) are taken from ``config_dir``.
    """
    found: list[Discoverer] = []
    if config.static_configs:
        found.append(StaticDiscoverer("static/0", config.static_configs))
    found += [FileDiscoverer(f"file_sd/{i}", sd, config_dir) for i, sd in enumerate(config.file_sd_configs)]
    found += [HttpDiscoverer(f"http_sd/{i}", sd, config_dir) for i, sd in enumerate(config.http_sd_configs)]
    found += [KubernetesPodDiscoverer(f"kubernetes_sd/{i}", sd, config_dir)
              for i, sd in enumerate(config.kubernetes_sd_configs)]
    return found


def label_sets_of(groups: object, meta: dict[str, str], *, strict: bool) -> LabelSets:
    """The label sets of a list of target groups (decoded JSON or YAML), each with the ``meta`` labels.

    A target's ``__address__`` wins over a group label of that name. Raises ValueError for what Prometheus
    rejects: not a list, a null group, a label name that is not one, a value that is not text, and with
    ``strict`` (YAML files, read with yaml.UnmarshalStrict) a key other than targets and labels.
    """
    if groups is None or groups == "":
        return []
    if not isinstance(groups, list):
        raise ValueError("expected a list of target groups")
    label_sets = []
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            raise ValueError(f"target group {i}: {'nil target group item found' if group is None else 'not a map'}")
        if strict and (unknown := set(group) - {"targets", "labels"}):
            raise ValueError(f"target group {i}: unknown field {sorted(unknown)[0]!r}")
        targets, labels = group.get("targets") or [], group.get("labels") or {}
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"target group {i}: targets must be a list of strings")
        if not isinstance(labels, dict):
            raise ValueError(f"target group {i}: labels must be a map")
        for name, value in labels.items():
            if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
                raise ValueError(f"target group {i}: {name!r} is not a valid label name")
            if not isinstance(value, str):
                raise ValueError(f"target group {i}: the value of label {name!r} is not a string")
        common = {**labels, **meta}
        label_sets += [{**common, "__address__": target} for target in targets]
    return label_sets


async def _forever() -> None:
    await asyncio.Event().wait()


class StaticDiscoverer:
    """``static_configs``: its targets, once."""

    def __init__(self, name: str, configs: list[StaticConfig]) -> None:
        self.name = name
        self.errors = 0
        groups = [{"targets": c.targets, "labels": c.labels} for c in configs]
        self._label_sets = label_sets_of(groups, {}, strict=False)

    async def run(self, update: Update) -> None:
        update(self.name, self._label_sets)
        await _forever()


class FileDiscoverer:
    """``file_sd_configs``: YAML and JSON files (by extension; globs), re-read when one changes and every
    ``refresh_interval``. Changes are noticed by polling the files' names, sizes and mtimes every
    ``poll_interval`` seconds. Each label set gets ``__meta_filepath``.
    """

    poll_interval = 1.0

    def __init__(self, name: str, config: FileSDConfig, config_dir: Path) -> None:
        self.name = name
        self.errors = 0
        self._patterns = [str(config_dir / pattern) for pattern in config.files]
        self._refresh_interval = config.refresh_interval
        self._files: dict[str, LabelSets] = {}  # what each file gave last time it was read

    async def run(self, update: Update) -> None:
        sent: LabelSets | None = None
        seen: dict[str, tuple[int, int, int]] | None = None
        due = 0.0
        while True:
            now = time.monotonic()
            stats = self._stat()
            if stats != seen or now >= due:
                seen, due = stats, now + self._refresh_interval
                label_sets = await asyncio.to_thread(self._read_all, sorted(stats))
                if label_sets != sent:
                    update(self.name, label_sets)
                    sent = label_sets
            await asyncio.sleep(self.poll_interval)

    def _stat(self) -> dict[str, tuple[int, int, int]]:
        """The matched files, each with what tells a change: (inode, size, mtime)."""
        stats = {}
        for pattern in self._patterns:
            for path in glob.glob(pattern, include_hidden=True):
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # gone since the glob: the next poll sees it missing
                stats[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return stats

    def _read_all(self, paths: list[str]) -> LabelSets:
        """Read every matched file; one that cannot be read keeps its previous groups, a gone one has none."""
        files: dict[str, LabelSets] = {}
        for path in paths:
            try:
                files[path] = self._read(path)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                self.errors += 1
                log.error("file_sd: cannot read the file; keeping its previous targets",
                          extra={"path": path, "error": str(exc)})
                if path in self._files:
                    files[path] = self._files[path]
        self._files = files
        return [label_set for path in paths if path in files for label_set in files[path]]

    @staticmethod
    def _read(path: str) -> LabelSets:
        extension = os.path.splitext(path)[1].lower()
        if extension not in (".json", ".yml", ".yaml"):
            raise ValueError(f"unsupported file extension {extension!r} (json, yml or yaml)")
        data = Path(path).read_bytes()
        if extension == ".json":
            groups = orjson.loads(data)
        else:
            groups = yaml.load(data, Loader=_YAML_LOADER)  # BaseLoader builds no objects: safe
        return label_sets_of(groups, {"__meta_filepath": path}, strict=extension != ".json")


class HttpDiscoverer:
    """``http_sd_configs``: GET ``url`` every ``refresh_interval`` (a JSON list of target groups, status 200,
    ``application/json``), with the config's auth and TLS. Each label set gets ``__meta_url``.
    """

    def __init__(self, name: str, config: HTTPSDConfig, config_dir: Path) -> None:
        self.name = name
        self.errors = 0
        self._config = config
        self._dir = config_dir
        self._credentials = Credentials(config, config_dir)

    async def run(self, update: Update) -> None:
        sent: LabelSets | None = None
        client: HttpClient | None = None
        try:
            while True:
                try:
                    client = client or self._client()
                    label_sets = await self._fetch(client)
                except (BuildError, RetryableError, OSError, ValueError) as exc:
                    self.errors += 1
                    log.error("http_sd: refresh failed; keeping the previous targets",
                              extra={"url": self._config.url, "error": str(exc)})
                    label_sets = [] if sent is None else sent
                if label_sets != sent:
                    update(self.name, label_sets)
                    sent = label_sets
                await asyncio.sleep(self._config.refresh_interval)
        finally:
            if client is not None:
                await client.close()

    def _client(self) -> HttpClient:
        return HttpClient(
            ssl_context(self._config.tls_config, self._dir),
            None,
            {"Accept": "application/json",
             "X-Prometheus-Refresh-Interval-Seconds": f"{self._config.refresh_interval:g}"},
            timeout=self._config.refresh_interval,
        )

    async def _fetch(self, client: HttpClient) -> LabelSets:
        url = self._config.url
        response = await client.request("GET", url, headers=self._credentials.header())
        if response.status != 200:
            raise ValueError(f"server returned HTTP status {response.status}")
        if not _JSON_TYPE.fullmatch(response.headers.get("content-type", "")):
            raise ValueError(f"unsupported content type {response.headers.get('content-type', '')!r}")
        return label_sets_of(orjson.loads(response.body), {"__meta_url": url}, strict=False)
