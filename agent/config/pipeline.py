"""Load pipeline files into a checked :class:`Pipeline`.

Steps: interpolate ``${...}`` on the raw text, parse YAML keeping line
marks, check the root document, then check each component against the
config struct of its ``type:``, and finally the graph. Every problem found is
reported at once, each naming file, line and key path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from agent.config import load, units
from agent.config.graph import Graph, check_graph, check_inputs, named_outputs
from agent.config.model import RootConfig
from agent.config.registry import KINDS, lookup, types_of
from agent.core.errors import ConfigError, ConfigErrors

SECTION = {"source": "sources", "transform": "transforms", "sink": "sinks"}


@dataclass(slots=True)
class ComponentDecl:
    """One component as declared: id, kind, typed config and where it was written."""

    kind: str
    id: str
    type: str
    config: Any
    file: str
    lines: load.LineIndex

    @property
    def inputs(self) -> list[str]:
        return list(getattr(self.config, "inputs", []))

    def where(self, *path: str | int) -> tuple[str, int | None]:
        return self.file, self.lines.line_for((SECTION[self.kind], self.id, *path))

    def error(self, message: str, *path: str | int) -> ConfigError:
        file, line = self.where(*path)
        return ConfigError(message, file=file, line=line, key=load.key_path_str((SECTION[self.kind], self.id, *path)))

    def fingerprint(self) -> bytes:
        """Identity of the config apart from its wiring: equal means no restart is needed on reload."""
        data = msgspec.to_builtins(self.config)
        data.pop("inputs", None)
        return msgspec.json.encode(data)


@dataclass(slots=True)
class Pipeline:
    """A checked pipeline: root settings, components and their graph.

    ``secrets`` holds every value that came from ``${...}`` and the API token: errors and logs
    must not show them.
    """

    root: RootConfig
    components: dict[str, ComponentDecl]
    graph: Graph
    files: list[str]
    warnings: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set, repr=False)


def load_files(paths: list[str]) -> Pipeline:
    """Read, merge and check pipeline files (later files override root keys; ids must be unique)."""
    return _raise_errors(*check_files(paths))


def load_texts(documents: list[tuple[str, str]]) -> Pipeline:
    """Check pipeline documents given as (text, file name) pairs."""
    return _raise_errors(*check_texts(documents))


def _raise_errors(pipeline: Pipeline, errors: list[ConfigError]) -> Pipeline:
    if errors:
        raise ConfigErrors(errors)
    return pipeline


def check_files(paths: list[str]) -> tuple[Pipeline, list[ConfigError]]:
    """Like :func:`check_texts` for files; one that cannot be read or is not UTF-8 is an error too."""
    documents, errors = [], []
    for path in paths:
        try:
            raw = Path(path).read_bytes()
            documents.append((raw.decode("utf-8"), path))
        except OSError as exc:
            errors.append(ConfigError(f"cannot read config: {exc.strerror}", file=path))
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            errors.append(ConfigError(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded "
                                      "(save the file as UTF-8)", file=path, line=line))
    pipeline, more = check_texts(documents, files=paths)
    return pipeline, errors + more


def check_texts(documents: list[tuple[str, str]], *,
                files: list[str] | None = None) -> tuple[Pipeline, list[ConfigError]]:
    """Check documents without stopping at the first problem: a pipeline of what is valid, and every
    error found (root keys, each component, the graph among the valid ones), redacted and sorted by
    file and line.

    A component that fails to check still has the ``inputs:`` of its raw mapping checked. Every
    ``${...}`` that cannot be expanded is reported with its key; the document is checked on with it
    unresolved, the errors that follow from it (on its line) left out, and a component holding one
    is treated as invalid.
    """
    errors: list[ConfigError] = []
    unresolved: list[ConfigError] = []  # ${...} that could not be expanded, each at its key
    tainted: set[tuple[str, str, str]] = set()  # (file, section, id) of components holding one
    root_data: dict[str, Any] = {}
    raw_components: list[_Raw] = []
    first_seen: dict[str, tuple[str, load.LineIndex, tuple[str, str]]] = {}
    substituted: set[str] = set()
    for text, file in documents:
        found: list[ConfigError] = []
        try:
            data, lines = load.parse_document(
                load.interpolate(text, file=file, substituted=substituted, errors=found), file=file, errors=errors)
        except ConfigError as exc:
            errors.append(exc)
            unresolved += found
            continue
        for error in found:
            path = lines.key_at(error.line or 0)
            error.key = load.key_path_str(path)
            if len(path) >= 2 and path[0] in SECTION.values():
                tainted.add((file, str(path[0]), str(path[1])))
        unresolved += found
        raw_components += _take_components(data, file, lines, first_seen, errors)
        try:
            load.convert(data, RootConfig, file=file, lines=lines)
            root_data.update(data)
        except ConfigError as exc:
            errors.append(exc)
    root = _root(root_data)
    components = {}
    for kind, cid, body, file, lines in raw_components:
        try:
            decl = _component(kind, cid, body, file, lines)
            if (file, SECTION[kind], cid) not in tainted:
                components[cid] = decl
        except ConfigError as exc:
            errors.append(exc)
    declared = {cid: kind for kind, cid, *_ in raw_components}
    graph, graph_errors, warnings = check_graph(components, declared)
    outputs = {cid: named_outputs(decl.config) for cid, decl in components.items()}
    errors += graph_errors + _raw_input_errors([raw for raw in raw_components if raw[1] not in components],
                                               declared, outputs)
    consequences = {(error.file, error.line) for error in unresolved}
    errors = unresolved + [error for error in errors if (error.file, error.line) not in consequences]
    names = files if files is not None else [f for _, f in documents]
    if not raw_components and not errors and len(documents) == len(names):
        errors.append(ConfigError("no sources, transforms or sinks are defined", file=names[0]))
    if root.api.auth_token:
        substituted.add(root.api.auth_token)
    if errors:
        warnings = []  # "no consumers" may only mean that the consumer is invalid
    warnings += _api_warnings(root) + _component_warnings(root, components)
    redact_and_sort(errors, substituted, names)
    return Pipeline(root, components, graph, names, warnings, substituted), errors


_Raw = tuple[str, str, Any, str, load.LineIndex]  # kind, id, body, file, lines


def _take_components(data: dict[str, Any], file: str, lines: load.LineIndex,
                     first_seen: dict[str, tuple[str, load.LineIndex, tuple[str, str]]],
                     errors: list[ConfigError]) -> list[_Raw]:
    """Pop the component sections out of ``data``; an id already used elsewhere is an error."""
    taken: list[_Raw] = []
    for kind in KINDS:
        section = data.pop(SECTION[kind], None)
        if section is None:
            continue
        if not isinstance(section, dict):
            errors.append(_error(f"expected a mapping of {kind} ids", file, lines, (SECTION[kind],)))
            continue
        for cid, body in section.items():
            cid = str(cid)
            if cid in first_seen:
                first_file, first_lines, first_path = first_seen[cid]
                errors.append(_error(f'component id "{cid}" is already used at '
                                     f'{first_file}:{first_lines.line_for(first_path)}',
                                     file, lines, (SECTION[kind], cid)))
                continue
            first_seen[cid] = (file, lines, (SECTION[kind], cid))
            taken.append((kind, cid, body, file, lines))
    return taken


def _raw_input_errors(unchecked: list[_Raw], declared: dict[str, str],
                      outputs: dict[str, list[str] | None]) -> list[ConfigError]:
    """The wiring errors of components that did not check, read from the ``inputs:`` of their mapping."""
    errors: list[ConfigError] = []
    for kind, cid, body, file, lines in unchecked:
        listed = body.get("inputs") if isinstance(body, dict) else None
        if kind != "source" and isinstance(listed, list):
            decl = ComponentDecl(kind, cid, str(body.get("type")), None, file, lines)
            errors += check_inputs(decl, listed, declared, outputs)[1]
    return errors


def redact_and_sort(errors: list[ConfigError], secrets: set[str], files: list[str]) -> None:
    """Hide ``secrets`` in ``errors`` and order them by file (in the order given) and line."""
    for error in errors:
        error.redact(secrets)
    order = {file: index for index, file in enumerate(files)}
    errors.sort(key=lambda e: (order.get(e.file or "", len(order)), e.line or 0))


def _root(data: dict[str, Any]) -> RootConfig:
    """The merged root settings; the defaults when they do not check (their errors are reported)."""
    try:
        return msgspec.convert(data, RootConfig, dec_hook=units.dec_hook)
    except msgspec.ValidationError:
        return RootConfig()


def _api_warnings(root: RootConfig) -> list[str]:
    api = root.api
    if not api.enabled or api.auth_token or api.is_loopback():
        return []
    return [f"api.address {api.address} is not a loopback address and api.auth_token is not set: "
            "/api/v1/components, /api/v1/tap and /api/v1/reload answer 403 until it is set "
            "(/health, /ready and /metrics stay open)"]


def _component_warnings(root: RootConfig, components: dict[str, ComponentDecl]) -> list[str]:
    """What a component's config finds dubious beside the root settings: its ``warnings(root)``, if it has one,
    as ``(message, key)`` pairs (a key, or a path of keys), located like errors."""
    found = []
    for decl in components.values():
        check = getattr(decl.config, "warnings", None)
        if callable(check):
            for message, key in check(root):
                found.append(str(decl.error(message, *(key if isinstance(key, tuple) else (key,)))))
    return found


def _error(message: str, file: str, lines: load.LineIndex, path: tuple[str | int, ...]) -> ConfigError:
    return ConfigError(message, file=file, line=lines.line_for(path), key=load.key_path_str(path))


def _component(kind: str, cid: str, body: Any, file: str, lines: load.LineIndex) -> ComponentDecl:
    path = (SECTION[kind], cid)
    if body is None or body == {}:
        raise _error('a component needs at least "type:"', file, lines, path)
    if not isinstance(body, dict):
        raise _error(f"expected a mapping with a type, got {load.kind_name(body)}", file, lines, path)
    type_name = body.get("type")
    if type_name is None:
        raise _error('missing required key "type"', file, lines, path)
    ctype = lookup(kind, str(type_name))
    if ctype is None:
        known = [t.name for t in types_of(kind)]
        hint = load.did_you_mean(str(type_name), known)
        raise _error(f'unknown {kind} type "{type_name}"{hint} (known: {", ".join(known)})',
                     file, lines, (*path, "type"))
    config = load.convert(body, ctype.config, file=file, lines=lines, prefix=path)
    return ComponentDecl(kind, cid, ctype.name, config, file, lines)
