"""`agent migrate prometheus FILE`: a prometheus.yml as a pipeline.

``global`` and every ``scrape_configs`` job go into one `prometheus_scrape` source, in Prometheus's own
schema (:mod:`agent.prometheus.config`); each ``remote_write`` entry becomes a `prometheus_remote_write`
sink (its ``name`` the sink id) with ``global.external_labels``; without any, a `prometheus_exporter` sink
serves the samples instead. Whatever has no equivalent (rules, alerting, remote_read, unsupported service
discovery, keys the agent does not know, a job that does not check) is left out and named in a comment at
the top of the output, with the line it came from.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec.inspect as mi
import yaml

from agent.config import load
from agent.core.errors import ConfigError
from agent.prometheus import config as prom

SOURCE_ID = "prometheus"
_GLOBAL_KEPT = ("scrape_interval", "scrape_timeout", "external_labels")
_JOB_DEFAULTS = ("sample_limit", "label_limit", "label_name_length_limit", "label_value_length_limit",
                 "body_size_limit")  # global in Prometheus 2.45+: copied into every job that does not set them
_WHY = {
    "rule_files": "recording and alerting rules are not evaluated by the agent",
    "alerting": "the agent sends no alerts",
    "remote_read": "the agent keeps no samples to query",
    "storage": "the agent keeps no local TSDB",
    "tracing": "the agent does not trace itself",
    "scrape_config_files": "paste those jobs into scrape_configs",
    "evaluation_interval": "only rules use it, and rules are not evaluated by the agent",
}
_REMOTE_WRITE_KEYS = {  # remote_write key: its schema (None: taken as it is)
    "url": None, "remote_timeout": None, "headers": None, "bearer_token": None, "bearer_token_file": None,
    "basic_auth": prom.BasicAuth, "authorization": prom.Authorization, "tls_config": prom.TLSConfig,
    "queue_config": prom.QueueConfig, "write_relabel_configs": list[prom.RelabelConfig],
}


class _Notes:
    """What was not translated, by the line of the input it came from."""

    def __init__(self, file: str, lines: load.LineIndex) -> None:
        self.file, self.lines = file, lines
        self.items: list[tuple[int, str]] = []

    def add(self, path: tuple[Any, ...], message: str) -> None:
        self.items.append((self.lines.line_for(path) or 0, f"{load.key_path_str(path)}: {message}"))

    def comment(self) -> str:
        if not self.items:
            return ""
        body = "".join(f"#   {self.file}:{line}: {text}\n" for line, text in sorted(self.items))
        return "# Not translated:\n" + body


def migrate(text: str, file: str) -> str:
    """The pipeline YAML for the prometheus.yml ``text``; ConfigError (file:line) when it is not YAML."""
    data, lines = load.parse_document(text, file=file)
    notes = _Notes(file, lines)
    global_ = _global(data.pop("global", None) or {}, notes)
    jobs = _jobs(data.pop("scrape_configs", None) or [], global_.pop("job_defaults"), notes)
    sinks = _remote_writes(data.pop("remote_write", None) or [], global_.get("external_labels", {}), notes)
    for key in data:
        notes.add((key,), _WHY.get(key, "not a prometheus.yml key the agent knows"))
    source: dict[str, Any] = {"type": "prometheus_scrape"}
    if global_:
        source["global"] = global_
    source["scrape_configs"] = jobs
    head = f"# Translated from {file} by `agent migrate prometheus`.\n"
    if not sinks:
        head += ("# It has no remote_write: the samples are served for scraping at http://127.0.0.1:9598/metrics\n"
                 "# (sink `exported`); replace that sink with where they should go.\n")
        sinks = {"exported": {"type": "prometheus_exporter", "inputs": [SOURCE_ID], "address": "127.0.0.1:9598"}}
    document = _escape({"sources": {SOURCE_ID: source}, "sinks": sinks})
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True, width=110)
    return head + notes.comment() + body


def _global(section: Any, notes: _Notes) -> dict[str, Any]:
    kept: dict[str, Any] = {"job_defaults": {}}
    if not isinstance(section, dict):
        notes.add(("global",), "not a mapping")
        return kept
    for key, value in section.items():
        if key in _GLOBAL_KEPT:
            kept[key] = value
        elif key in _JOB_DEFAULTS:
            kept["job_defaults"][key] = value
        else:
            notes.add(("global", key), _WHY.get(key, "not translated"))
    return kept


def _jobs(jobs: Any, defaults: dict[str, Any], notes: _Notes) -> list[dict[str, Any]]:
    if not isinstance(jobs, list):
        notes.add(("scrape_configs",), "not a list")
        return []
    kept = []
    for index, job in enumerate(jobs):
        path: tuple[Any, ...] = ("scrape_configs", index)
        if not isinstance(job, dict):
            notes.add(path, "not a mapping")
            continue
        job = _fit(job, prom.ScrapeConfig, path, notes)
        for key, value in defaults.items():
            job.setdefault(key, value)
        try:
            load.convert(job, prom.ScrapeConfig, file=notes.file, lines=notes.lines, prefix=path)
        except ConfigError as exc:
            notes.add(path, f"job {job.get('job_name', '?')!s} left out: {exc.key}: {exc.message}")
            continue
        kept.append(job)
    return kept


def _remote_writes(entries: Any, external_labels: dict[str, Any], notes: _Notes) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, list):
        notes.add(("remote_write",), "not a list")
        return {}
    sinks: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        path: tuple[Any, ...] = ("remote_write", index)
        if not isinstance(entry, dict) or "url" not in entry:
            notes.add(path, "no url")
            continue
        sink: dict[str, Any] = {"type": "prometheus_remote_write", "inputs": [SOURCE_ID]}
        for key, value in entry.items():
            if key == "name":
                continue
            if key not in _REMOTE_WRITE_KEYS:
                notes.add((*path, key), "not translated")
                continue
            schema = _REMOTE_WRITE_KEYS[key]
            sink[key] = value if schema is None else _fit(value, schema, (*path, key), notes)
        if external_labels:
            sink["external_labels"] = external_labels
        sinks[_sink_id(entry.get("name"), len(entries), index, sinks)] = sink
    return sinks


def _sink_id(name: Any, count: int, index: int, taken: dict[str, Any]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)) if name else "remote_write"
    cid = f"{base}_{index + 1}" if not name and count > 1 else base
    while cid in taken or cid == SOURCE_ID:
        cid += "_"
    return cid


def _fit(value: Any, schema: Any, path: tuple[Any, ...], notes: _Notes) -> Any:
    """``value`` without the keys ``schema`` (a config struct, or a list of them) does not have, each noted."""
    return _fit_info(value, mi.type_info(schema), path, notes)


def _fit_info(value: Any, info: mi.Type, path: tuple[Any, ...], notes: _Notes) -> Any:
    if isinstance(info, mi.UnionType):
        info = next((t for t in info.types if isinstance(t, mi.StructType | mi.ListType)), info)
    if isinstance(info, mi.ListType) and isinstance(value, list):
        return [_fit_info(item, info.item_type, (*path, i), notes) for i, item in enumerate(value)]
    if not isinstance(info, mi.StructType) or not isinstance(value, dict):
        return value
    fields = {f.encode_name: f for f in info.fields}
    kept = {}
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            why = "this service discovery is not supported: its targets are not scraped" \
                if str(key).endswith("_sd_configs") else "not translated"
            notes.add((*path, key), why)
        else:
            kept[key] = _fit_info(item, field.type, (*path, key), notes)
    return kept


def _escape(value: Any) -> Any:
    """``${`` written as ``$${``: prometheus.yml has no interpolation, a pipeline file does (``${1}`` in a
    relabel replacement must stay as it is)."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {_escape(k): _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value
