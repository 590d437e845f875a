"""Fluent Bit's two config formats read into one shape: sections of properties, each with its file and line.

The classic format: ``[SECTION]`` headers, ``Key value`` lines, ``#`` comments, ``@INCLUDE`` (a path or glob,
relative to the including file), ``@SET NAME=VALUE`` (``${NAME}`` is replaced where it is used; any other
``${VAR}`` is left as it is: the pipeline's own interpolation reads the environment the same way). The YAML
format: ``service``, ``parsers``, ``multiline_parsers``, ``pipeline: {inputs, filters, outputs}``,
``includes`` and ``env``. Keys are case-insensitive in both, so they are kept lower-cased; a key given
several times (``Add``, ``Regex``, ``Parsers_File``) keeps every value in order.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

import yaml

from agent.core.errors import ConfigError

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_YAML_KINDS = {"inputs": "input", "filters": "filter", "outputs": "output"}
MAX_INCLUDE_DEPTH = 16


@dataclass(slots=True)
class Prop:
    """One ``Key value`` line: the key as written and lower-cased, its value, where it was written."""

    key: str
    value: str
    file: str
    line: int

    @property
    def name(self) -> str:
        """The lower-cased key (Fluent Bit's keys are case-insensitive)."""
        return self.key.lower()

    @property
    def where(self) -> str:
        """``file:line``."""
        return f"{self.file}:{self.line}"


@dataclass(slots=True)
class Section:
    """One ``[INPUT]``/``[FILTER]``/``[OUTPUT]``/``[SERVICE]``/``[PARSER]``... section (kind lower-cased)."""

    kind: str
    file: str
    line: int
    props: list[Prop] = field(default_factory=list)

    @property
    def where(self) -> str:
        """``file:line`` of the section's header."""
        return f"{self.file}:{self.line}"

    @property
    def plugin(self) -> str:
        """The ``Name`` property, lower-cased ("" when missing)."""
        return (self.get("name") or "").lower()

    def get(self, key: str, default: str | None = None) -> str | None:
        """The last value of ``key`` (lower-case), as Fluent Bit keeps the last of a single-valued key."""
        found = [p.value for p in self.props if p.name == key]
        return found[-1] if found else default

    def all(self, key: str) -> list[Prop]:
        """Every property ``key`` (lower-case), in order."""
        return [p for p in self.props if p.name == key]

    def prop(self, key: str) -> Prop | None:
        """The last property ``key``, or None."""
        found = self.all(key)
        return found[-1] if found else None


def read_config(path: str) -> list[Section]:
    """The sections of the Fluent Bit config at ``path`` (classic or YAML, told by its extension or first line)."""
    text = _read(path, path)
    if _is_yaml(path, text):
        return _read_yaml(text, path, {}, 0)
    return _read_classic(text, path, {}, 0)


def read_parsers(path: str) -> list[Section]:
    """The ``[PARSER]`` (and ``[MULTILINE_PARSER]``) sections of a parsers file, classic or YAML."""
    return [s for s in read_config(path) if s.kind in ("parser", "multiline_parser")]


def _is_yaml(path: str, text: str) -> bool:
    if path.endswith((".yaml", ".yml")):
        return True
    first = next((line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")),
                 "")
    return not first.startswith(("[", "@"))


def _read(path: str, shown: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=shown) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=shown) from None


def _substitute(value: str, variables: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: variables.get(m[1], m[0]), value)


def _includes(pattern: str, base: str, file: str, line: int) -> list[str]:
    full = pattern if os.path.isabs(pattern) else os.path.join(os.path.dirname(base), pattern)
    found = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
    if not found or not all(os.path.isfile(p) for p in found):
        raise ConfigError(f"@INCLUDE {pattern}: no such file", file=file, line=line)
    return found


def _read_classic(text: str, file: str, variables: dict[str, str], depth: int) -> list[Section]:
    if depth > MAX_INCLUDE_DEPTH:
        raise ConfigError(f"@INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep", file=file)
    sections: list[Section] = []
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = Section(line[1:-1].strip().lower(), file, number)
            sections.append(current)
            continue
        if line.lower().startswith("@set "):
            name, eq, value = line[5:].partition("=")
            if not eq:
                raise ConfigError(f"@SET wants NAME=VALUE, got {line[5:].strip()!r}", file=file, line=number)
            variables[name.strip()] = value.strip()
            continue
        if line.lower().startswith("@include "):
            for path in _includes(line[9:].strip(), file, file, number):
                sections.extend(_read_classic(_read(path, path), path, variables, depth + 1))
            current = None
            continue
        if current is None:
            raise ConfigError(f"a property outside any section: {line!r}", file=file, line=number)
        key, _, value = line.partition(" ")
        if "\t" in key:
            key, _, rest = key.partition("\t")
            value = f"{rest} {value}"
        current.props.append(Prop(key, _substitute(value.strip(), variables), file, number))
    return sections


class _LineLoader(yaml.SafeLoader):
    """A YAML loader whose mappings keep each key's line under ``__line__<key>``."""


def _mapping_with_lines(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, object]:
    mapping = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    for key_node, _ in node.value:
        mapping[f"__line__{key_node.value}"] = key_node.start_mark.line + 1
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_lines)


def _read_yaml(text: str, file: str, variables: dict[str, str], depth: int) -> list[Section]:
    if depth > MAX_INCLUDE_DEPTH:
        raise ConfigError(f"includes nested more than {MAX_INCLUDE_DEPTH} deep", file=file)
    try:
        data = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", file=file,
                          line=mark.line + 1 if mark else None) from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", file=file, line=1)
    env = data.get("env") or {}
    if isinstance(env, dict):
        variables.update({str(k): str(v) for k, v in env.items() if not str(k).startswith("__line__")})
    sections: list[Section] = []
    for include in data.get("includes") or []:
        for path in _includes(str(include), file, file, int(data.get("__line__includes", 0))):
            sections.extend(_read_yaml(_read(path, path), path, variables, depth + 1))
    if isinstance(data.get("service"), dict):
        sections.append(_yaml_section("service", data["service"], file, variables))
    for kind in ("parsers", "multiline_parsers"):
        for item in data.get(kind) or []:
            if isinstance(item, dict):
                sections.append(_yaml_section(kind[:-1], item, file, variables))
    pipeline = data.get("pipeline") or {}
    if isinstance(pipeline, dict):
        for key, kind in _YAML_KINDS.items():
            for item in pipeline.get(key) or []:
                if isinstance(item, dict):
                    sections.append(_yaml_section(kind, item, file, variables))
    return sections


def _yaml_section(kind: str, item: dict[str, object], file: str, variables: dict[str, str]) -> Section:
    section = Section(kind, file, int(item.get("__line__", 0)))  # type: ignore[call-overload]
    for key, value in item.items():
        if key.startswith("__line__"):
            continue
        line = int(item.get(f"__line__{key}", section.line))  # type: ignore[call-overload]
        for one in value if isinstance(value, list) else [value]:
            section.props.append(Prop(key, _substitute(_text(one), variables), file, line))
    return section


def _text(value: object) -> str:
    """A YAML value as the text the classic format would have had (``true`` -> ``on``, a mapping as JSON)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict):
        import json

        return json.dumps({k: v for k, v in value.items() if not str(k).startswith("__line__")})
    return "" if value is None else str(value)
