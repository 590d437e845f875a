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
from agent.config.graph import Graph, check_graph
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
    """A fully checked pipeline: root settings, components and their graph."""

    root: RootConfig
    components: dict[str, ComponentDecl]
    graph: Graph
    files: list[str]
    warnings: list[str] = field(default_factory=list)


def load_files(paths: list[str]) -> Pipeline:
    """Read, merge and check pipeline files (later files override root keys; ids must be unique)."""
    documents = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigErrors([ConfigError(f"cannot read config: {exc.strerror}", file=path)]) from None
        documents.append((text, path))
    return load_texts(documents)


def load_texts(documents: list[tuple[str, str]]) -> Pipeline:
    """Check pipeline documents given as (text, file name) pairs."""
    errors: list[ConfigError] = []
    root_data: dict[str, Any] = {}
    raw_components: list[tuple[str, str, Any, str, load.LineIndex]] = []
    first_file: dict[str, str] = {}
    substituted: set[str] = set()
    for text, file in documents:
        try:
            data, lines = load.parse_document(load.interpolate(text, file=file, substituted=substituted),
                                              file=file)
        except ConfigError as exc:
            errors.append(exc)
            continue
        for kind in KINDS:
            section = data.pop(SECTION[kind], None)
            if section is None:
                continue
            if not isinstance(section, dict):
                errors.append(_error(f"expected a mapping of {kind} ids", file, lines, (SECTION[kind],)))
                continue
            for cid, body in section.items():
                cid = str(cid)
                if cid in first_file:
                    errors.append(_error(f'component id "{cid}" is already used in {first_file[cid]}',
                                         file, lines, (SECTION[kind], cid)))
                    continue
                first_file[cid] = file
                raw_components.append((kind, cid, body, file, lines))
        try:
            load.convert(data, RootConfig, file=file, lines=lines)
        except ConfigError as exc:
            errors.append(exc)
        root_data.update(data)
    root = msgspec.convert(root_data, RootConfig, dec_hook=units.dec_hook) if not errors else RootConfig()
    components = {}
    for kind, cid, body, file, lines in raw_components:
        try:
            components[cid] = _component(kind, cid, body, file, lines)
        except ConfigError as exc:
            errors.append(exc)
    if not raw_components and not errors:
        errors.append(ConfigError("no sources, transforms or sinks are defined", file=documents[0][1]))
    if not errors:
        graph, errors, warnings = check_graph(components)
    if errors:
        for error in errors:
            error.redact(substituted)
        raise ConfigErrors(errors)
    return Pipeline(root, components, graph, [f for _, f in documents], warnings)


def _error(message: str, file: str, lines: load.LineIndex, path: tuple[str | int, ...]) -> ConfigError:
    return ConfigError(message, file=file, line=lines.line_for(path), key=load.key_path_str(path))


def _component(kind: str, cid: str, body: Any, file: str, lines: load.LineIndex) -> ComponentDecl:
    path = (SECTION[kind], cid)
    if not isinstance(body, dict):
        raise _error(f"expected a mapping with a type, got {type(body).__name__}", file, lines, path)
    type_name = body.get("type")
    if type_name is None:
        raise _error('missing required key "type"', file, lines, path)
    ctype = lookup(kind, str(type_name))
    if ctype is None:
        known = ", ".join(t.name for t in types_of(kind))
        raise _error(f'unknown {kind} type "{type_name}" (known: {known})', file, lines, (*path, "type"))
    config = load.convert(body, ctype.config, file=file, lines=lines, prefix=path)
    return ComponentDecl(kind, cid, ctype.name, config, file, lines)
