"""`agent migrate fluent-bit FILE [--parsers FILE]...`: a Fluent Bit config (classic or YAML) as a pipeline.

``[SERVICE]`` gives the root settings (HTTP server -> ``api``, Log_Level, Grace) and ``Flush`` (the sinks'
``batch.timeout``); its ``Parsers_File`` entries (relative to the config) and ``--parsers`` files give the parser
definitions. Each input becomes a source, each filter one or more transforms, each output a sink
(:mod:`agent.migrate.fluent_bit_plugins`). ``Match`` / ``Match_Regex`` are resolved against the inputs' tags
when translating (a tail's ``Tag kube.*`` stands for ``kube.`` + each path with ``/`` as ``.``): the inputs a
filter or output matches become its ``inputs:``. Inputs that meet different filters or outputs get chains of
their own. Fluent Bit's line key ``log`` is the agent's ``message``.

Whatever has no faithful equivalent is listed at the top of the output with its file:line and why; settings
whose meaning differs are translated by meaning, with a comment above the component.
"""

from __future__ import annotations

import copy
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from agent.config.registry import lookup
from agent.core.errors import EXIT_FAILURE, EXIT_OK, ConfigError, ConfigErrors
from agent.migrate import fluent_bit_plugins as fb
from agent.migrate.fluent_bit_conf import Section, read_config, read_parsers

STOCK_PARSERS_FILE = "parsers.conf"
WIDTH = 110  # of the comments written
_LOG_LEVELS = {"off": "error", "error": "error", "warn": "warning", "warning": "warning", "info": "info",
               "debug": "debug", "trace": "debug"}
_FILTER_IDS = {"kubernetes": "kubernetes", "parser": "parse", "grep": "grep", "modify": "modify",
               "nest": "nest", "record_modifier": "record_modifier", "throttle": "throttle"}
_OUTPUT_IDS = {"es": "elasticsearch", "datadog": "datadog", "http": "http",
               "prometheus_remote_write": "remote_write", "stdout": "console", "file": "file", "null": "blackhole"}
_WHY_NOT = {
    "lua": "Lua scripts cannot run in the agent; rewrite the script as modify/filter/route stages",
    "rewrite_tag": "tags are resolved once, when translating: a tag rewritten per record has no equivalent; "
                   "use a route stage",
    "wasm": "WebAssembly filters cannot run in the agent",
    "multiline": "the multiline filter has no equivalent; see the tail source's multiline option",
}


@dataclass
class Component:
    """A translated component: its section (``sources``, ``transforms``, ``sinks``), id, config, comments."""

    kind: str
    cid: str
    body: dict[str, Any]
    comments: list[str] = field(default_factory=list)


@dataclass
class Migration:
    """The pipeline text, and what was left out of it (file, line, why)."""

    text: str
    left_out: list[tuple[str, int, str]]


@dataclass
class _Chain:
    """Inputs that meet the same filters and outputs, and the last stage(s) of their chain."""

    inputs: list[fb.Input]
    filters: list[int]
    outputs: list[int]
    ends: list[str] = field(default_factory=list)


def main(path: str, parser_files: Sequence[str] = (), allow_partial: bool = False) -> int:
    """Print the pipeline; exit 0 when everything was translated (or ``allow_partial``), else 1 (reasons on stderr)."""
    try:
        migration = migrate(path, parser_files)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    sys.stdout.write(migration.text)
    if migration.left_out and not allow_partial:
        print(f"error: {len(migration.left_out)} setting(s) of {path} not translated (listed at the top of the "
              "output); --allow-partial accepts that", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def migrate(path: str, parser_files: Sequence[str] = ()) -> Migration:
    """The pipeline for the Fluent Bit config at ``path``; ConfigError (file:line) when it cannot be read."""
    sections = read_config(path)
    notes = fb.Notes()
    head: list[str] = []
    service = _merged(sections, "service", path)
    parsers = _parsers(service, parser_files, sections, path, notes, head)
    root = _service(service, notes, head)
    taken: set[str] = set()
    inputs = _inputs(sections, parsers, notes, taken)
    filters = [s for s in sections if s.kind == "filter"]
    outputs = [s for s in sections if s.kind == "output"]
    chains = _chains(inputs, filters, outputs, notes)
    transforms = _transforms(chains, filters, parsers, notes, taken)
    sinks = _sinks(chains, outputs, service, notes, taken)
    sources = [Component("sources", i.cid, i.body, [f"[INPUT] {i.plugin.section.plugin}, "
                                                    f"{i.plugin.section.where}", *i.plugin.comments])
               for i in inputs]
    text = _render(path, head, root, sources + transforms + sinks, notes)
    return Migration(text, notes.left_out)


# -- service and parsers -------------------------------------------------------------------------------------


def _merged(sections: list[Section], kind: str, path: str) -> Section:
    merged = Section(kind, path, 0)
    for section in sections:
        if section.kind == kind:
            merged.props.extend(section.props)
            merged.line = merged.line or section.line
            merged.file = section.file
    return merged


def _parsers(service: Section, extra: Sequence[str], sections: list[Section], path: str, notes: fb.Notes,
             head: list[str]) -> dict[str, Section]:
    found: list[Section] = []
    read: set[str] = set()  # each parsers file once, by resolved path (named by Parsers_File and --parsers)
    for prop in service.all("parsers_file"):
        file = prop.value if os.path.isabs(prop.value) else os.path.join(os.path.dirname(prop.file), prop.value)
        if not os.path.isfile(file) and os.path.basename(prop.value) == STOCK_PARSERS_FILE:
            head.append(f"Parsers_File {prop.value} ({prop.where}): not found; its stock parsers docker and cri "
                        "are the tail source's formats")
            continue
        if os.path.realpath(file) in read:
            continue
        read.add(os.path.realpath(file))
        try:
            found.extend(read_parsers(file))
        except ConfigError as exc:
            notes.add(prop.file, prop.line, f"Parsers_File {prop.value}: {exc.message}; its parsers are unknown")
    for file in extra:
        if os.path.realpath(file) not in read:
            read.add(os.path.realpath(file))
            found.extend(read_parsers(file))
    found.extend(s for s in sections if s.kind in ("parser", "multiline_parser"))
    parsers: dict[str, Section] = {}
    for section in found:
        if section.kind == "multiline_parser":
            notes.add(section.file, section.line, f"[MULTILINE_PARSER] {section.get('name')}: no equivalent "
                                                  "(see the tail source's multiline option)")
        elif (name := section.get("name") or "") in parsers:
            head.append(f"[PARSER] {name} at {section.where} is defined before, at {parsers[name].where}: "
                        "Fluent Bit uses the first definition, so does this translation")
        elif name:
            parsers[name] = section
    return parsers


def _service(service: Section, notes: fb.Notes, head: list[str]) -> dict[str, Any]:
    plugin = fb.Plugin(service, notes)
    root: dict[str, Any] = {"data_dir": "/var/lib/agent"}
    level = (plugin.take("log_level") or "info").lower()
    if level != "info":
        root["log_level"] = _LOG_LEVELS.get(level, "info")
    grace = plugin.take("grace")
    if grace and fb.seconds(grace):
        root["shutdown_timeout"] = fb.seconds(grace)
    host, port = plugin.take("http_listen") or "0.0.0.0", plugin.take("http_port") or "2020"
    if plugin.flag("http_server"):
        root["api"] = {"address": f"{host}:{port}"}
        head.append(f"HTTP_Server On: the agent's API on {host}:{port} (/health, /ready, /metrics)")
        if host not in ("127.0.0.1", "localhost", "::1"):
            root["api"]["auth_token"] = "${AGENT_API_TOKEN}"
            head.append("api.auth_token: /api/v1/* (tap, components, reload) want this bearer token off loopback")
    if plugin.flag("health_check"):
        head.append("Health_Check On: /health answers without it")
    plugin.take_all("parsers_file")
    plugin.take("flush")
    plugin.ignore({"daemon": "run the agent under the init system or as a container",
                   "hot_reload": "the agent reloads on SIGHUP and on an edit of its config",
                   "storage.path": "a tail's files are its buffer: positions are committed only once delivered",
                   "storage.sync": "not used", "storage.checksum": "checkpoints are checksummed",
                   "storage.backlog.mem_limit": "not used", "storage.max_chunks_up": "not used",
                   "storage.metrics": "buffer metrics are always on /metrics",
                   "coro_stack_size": "not used", "scheduler.cap": "sinks back off on their own",
                   "scheduler.base": "sinks back off on their own", "log_file": "the agent logs to stderr"})
    head.extend(f"{c} ([SERVICE])" for c in plugin.comments)
    plugin.finish()
    return root


# -- inputs ------------------------------------------------------------------------------------------------


def _unique(base: str, taken: set[str]) -> str:
    cid, n = base, 1
    while cid in taken:
        n += 1
        cid = f"{base}_{n}"
    taken.add(cid)
    return cid


def _inputs(sections: list[Section], parsers: dict[str, Section], notes: fb.Notes, taken: set[str]) -> list[fb.Input]:
    inputs = []
    for index, section in enumerate(s for s in sections if s.kind == "input"):
        plugin = fb.Plugin(section, notes)
        if section.plugin != "tail":
            plugin.left_out(None, f"input {section.plugin or '(no Name)'} is not translated")
            continue
        paths = " ".join(p.value for p in section.all("path"))
        base = section.get("alias") or ("containers" if "/var/log/containers/" in paths else "tail")
        inputs.append(fb.tail(plugin, _unique(base, taken), parsers, notes, f"tail.{index}"))
    return inputs


# -- tags --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _covers(pattern: str, tag: str) -> bool:
    """Whether every tag the glob ``tag`` stands for matches the glob ``pattern`` (``*`` only)."""
    if not pattern:
        return not tag
    if pattern[0] == "*":
        return _covers(pattern[1:], tag) or (bool(tag) and _covers(pattern, tag[1:]))
    return bool(tag) and tag[0] != "*" and tag[0] == pattern[0] and _covers(pattern[1:], tag[1:])


@lru_cache(maxsize=4096)
def _meets(a: str, b: str) -> bool:
    """Whether some tag matches both globs."""
    if not a or not b:
        return a.strip("*") == "" and b.strip("*") == ""
    if a[0] == "*":
        return _meets(a[1:], b) or _meets(a, b[1:])
    if b[0] == "*":
        return _meets(a, b[1:]) or _meets(a[1:], b)
    return a[0] == b[0] and _meets(a[1:], b[1:])


def _matches(section: Section, item: fb.Input, notes: fb.Notes) -> bool:
    """Whether the filter or output ``section`` takes the input's records (a partial match is reported)."""
    pattern, regex = section.prop("match"), section.prop("match_regex")
    results: set[str] = set()
    for tag in item.tags:
        if regex is not None:
            try:
                results.add("all" if re.search(regex.value, tag.replace("*", "x")) else "none")
            except re.error:
                notes.add(regex.file, regex.line, f"Match_Regex {regex.value}: not a regex")
                return False
        elif pattern is not None:
            value = pattern.value.strip()
            results.add("all" if _covers(value, tag) else "some" if _meets(value, tag) else "none")
    if results == {"none"} or not results:
        return False
    if results != {"all"}:
        where = regex or pattern
        assert where is not None
        notes.add(where.file, where.line, f"{where.key} {where.value} matches only some of input {item.cid}'s "
                                          f"files (tags {', '.join(item.tags)}); here it takes all of them")
    return True


def _chains(inputs: list[fb.Input], filters: list[Section], outputs: list[Section], notes: fb.Notes
            ) -> list[_Chain]:
    chains: dict[tuple[Any, ...], _Chain] = {}
    for item in inputs:
        applied = [i for i, s in enumerate(filters) if _matches(s, item, notes)]
        fed = [i for i, s in enumerate(outputs) if _matches(s, item, notes)]
        key = (item.cid if item.first_stages else None, tuple(applied), tuple(fed))
        if key in chains:
            chains[key].inputs.append(item)
        else:
            chains[key] = _Chain([item], applied, fed)
    return list(chains.values())


# -- filters -----------------------------------------------------------------------------------------------


def _annotation_parsers(parsers: dict[str, Section]) -> tuple[dict[str, dict[str, Any]], fb.Notes]:
    scratch = fb.Notes()
    translated = {}
    for name, section in parsers.items():
        if name.lower() in fb.STOCK_DOCKER:
            continue
        options = fb.parser_options(section, scratch)
        if options is not None:
            translated[name] = options
    return translated, scratch


def _filter(section: Section, fields: fb.Fields, parsers: dict[str, Section], notes: fb.Notes
            ) -> tuple[list[dict[str, Any]] | None, fb.Plugin]:
    plugin = fb.Plugin(section, notes)
    name = section.plugin
    if name == "kubernetes":
        translated, scratch = _annotation_parsers(parsers)
        if (plugin.section.get("k8s-logging.parser") or "off").lower() in fb.TRUE:
            for item in scratch.left_out:
                notes.add(*item)
        return fb.kubernetes(plugin, fields, translated), plugin
    simple: dict[str, Callable[[fb.Plugin, fb.Fields], list[dict[str, Any]] | None]] = {
        "grep": fb.grep, "modify": fb.modify, "nest": fb.nest, "record_modifier": fb.record_modifier}
    if name in simple:
        return simple[name](plugin, fields), plugin
    if name == "parser":
        return fb.parser_filter(plugin, fields, parsers, notes), plugin
    if name == "throttle":
        return fb.throttle(plugin), plugin
    plugin.left_out(None, _WHY_NOT.get(name, f"filter {name or '(no Name)'} has no equivalent"))
    return None, plugin


def _transforms(chains: list[_Chain], filters: list[Section], parsers: dict[str, Section], notes: fb.Notes,
                taken: set[str]) -> list[Component]:
    components: list[Component] = []
    for chain in chains:
        ends = [item.cid for item in chain.inputs]
        fields = copy.copy(chain.inputs[0].fields)
        suffix = f"_{chain.inputs[0].cid}" if len(chains) > 1 else ""
        for stage in chain.inputs[0].first_stages:
            cid = _unique(f"{chain.inputs[0].cid}_{stage['type']}", taken)
            components.append(Component("transforms", cid, _wired(stage, ends),
                                        [f"from [INPUT] {chain.inputs[0].plugin.section.where}"]))
            ends = [cid]
        for index in chain.filters:
            section = filters[index]
            bodies, plugin = _filter(section, fields, parsers, notes)
            if not bodies:
                continue
            base = section.get("alias") or _FILTER_IDS.get(section.plugin, section.plugin)
            if section.plugin == "nest":
                base = section.get("alias") or (section.get("operation") or "nest").lower()
            for n, body in enumerate(bodies):
                cid = _unique(base + suffix, taken)
                comments = [f"[FILTER] {section.plugin}, {section.where}", *plugin.comments] if n == 0 else []
                components.append(Component("transforms", cid, _wired(body, ends), comments))
                ends = [cid]
        chain.ends = ends
        _buffer(chain, components)
    return components


def _wired(body: dict[str, Any], inputs: list[str]) -> dict[str, Any]:
    return {"type": body["type"], "inputs": list(inputs), **{k: v for k, v in body.items() if k != "type"}}


def _buffer(chain: _Chain, components: list[Component]) -> None:
    """Mem_Buf_Limit: the buffer of the first stage after the chain's sources."""
    limit = next((i.buffer_bytes for i in chain.inputs if i.buffer_bytes is not None), None)
    sources = {i.cid for i in chain.inputs}
    if limit is None:
        return
    for component in components:
        if sources & set(component.body.get("inputs", [])):
            component.body["buffer"] = {"max_bytes": limit}


# -- outputs -----------------------------------------------------------------------------------------------


def _sinks(chains: list[_Chain], outputs: list[Section], service: Section, notes: fb.Notes,
           taken: set[str]) -> list[Component]:
    flush = fb.seconds(service.get("flush") or "")
    sinks = []
    for index, section in enumerate(outputs):
        plugin = fb.Plugin(section, notes)
        feeding = [c for c in chains if index in c.outputs]
        ends = [end for c in feeding for end in c.ends]
        name = section.plugin
        if name not in _OUTPUT_IDS:
            plugin.left_out(None, f"output {name or '(no Name)'} has no equivalent")
            continue
        if not ends:
            plugin.left_out(None, "its Match takes no translated input")
            continue
        tag = feeding[0].inputs[0].tags[0].replace("*", "_")
        body = fb.file(plugin, tag) if name == "file" else getattr(fb, name)(plugin)
        if body is None:
            continue
        if name == "prometheus_remote_write":
            plugin.left_out(None, "its inputs are logs; prometheus_remote_write takes metrics")
            continue
        config = lookup("sink", body["type"])
        if flush and config is not None and "batch" in config.config.__struct_fields__:
            body.setdefault("batch", {})["timeout"] = flush
            plugin.comment(f"Flush {service.get('flush')}: batch.timeout")
        for chain in feeding:
            limit = next((i.buffer_bytes for i in chain.inputs if i.buffer_bytes is not None), None)
            if limit is not None and set(chain.ends) <= {i.cid for i in chain.inputs}:
                body["buffer"] = {"max_bytes": limit}
        cid = _unique(section.get("alias") or _OUTPUT_IDS[name], taken)
        sinks.append(Component("sinks", cid, _wired(body, ends),
                               [f"[OUTPUT] {name}, {section.where}", *plugin.comments]))
    return sinks


# -- text --------------------------------------------------------------------------------------------------


def _dump(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True, width=110)


def _comment(text: str, indent: str) -> str:
    lines = textwrap.wrap(text, WIDTH - len(indent) - 2, subsequent_indent="  ", break_on_hyphens=False)
    return "".join(f"{indent}# {line}\n" for line in lines)


def _render(path: str, head: list[str], root: dict[str, Any], components: list[Component], notes: fb.Notes) -> str:
    out = [f"# Translated from {path} by `agent migrate fluent-bit`.\n",
           "# Fluent Bit's `log` key (the container's line) is `message` here; the tail source also writes\n"
           "# `file`, `offset`, `stream`, `time` and `kubernetes` (pod, namespace, container from the file name).\n"]
    out.extend(_comment(line, "") for line in head)
    if notes.left_out:
        out.append(f"# Not translated ({len(notes.left_out)}):\n")
        out.extend(f"#   {file}:{line}: {why}\n" for file, line, why in notes.left_out)
    out.append(_dump(root))
    for kind in ("sources", "transforms", "sinks"):
        members = [c for c in components if c.kind == kind]
        if not members:
            continue
        out.append(f"{kind}:\n")
        for component in members:
            out.extend(_comment(line, "  ") for line in component.comments)
            text = _dump({component.cid: component.body})
            out.append("".join(f"  {line}\n" for line in text.splitlines()))
    return "".join(out)
