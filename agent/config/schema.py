"""`agent schema`: the JSON Schema of a pipeline file, built from the registered config structs.

Every property carries the description written below its declaration (see ``agent.config.fielddocs``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Union

import msgspec
import msgspec.inspect as mi

from agent.config import units
from agent.config.fielddocs import field_descriptions
from agent.config.model import RootConfig
from agent.config.registry import BUILTIN_MODULES, ComponentType, types_of

SECTIONS = {"sources": "source", "transforms": "transform", "sinks": "sink"}
TAG_DESCRIPTION = "The component's type."


def builtin_types(kind: str) -> list[ComponentType]:
    """The agent's own components of ``kind`` (not ones a test or plugin registered), by name."""
    return [t for t in types_of(kind)
            if any(t.build.__module__ == m or t.build.__module__.startswith(m + ".") for m in BUILTIN_MODULES)]


def root_struct() -> type[msgspec.Struct]:
    """The root config with its sections typed as tagged unions of every registered component."""
    fields: list[tuple[str, Any, Any]] = []
    for info in msgspec.structs.fields(RootConfig):
        if info.name in SECTIONS:
            union: Any = Union[tuple(t.config for t in builtin_types(SECTIONS[info.name]))]  # noqa: UP007 - built at run time
            fields.append((info.name, dict[str, union], msgspec.field(default_factory=dict)))
        elif info.default_factory is not msgspec.NODEFAULT:
            fields.append((info.name, info.type, msgspec.field(default_factory=info.default_factory)))
        else:
            fields.append((info.name, info.type, info.default))
    return msgspec.defstruct("Pipeline", fields, kw_only=True, forbid_unknown_fields=True)


def schema_dict() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a pipeline file, every property described."""
    root = root_struct()
    schema = msgspec.json.schema(root, schema_hook=units.schema_hook)
    defs = schema["$defs"]
    classes = _classes_by_name(root)
    for name, definition in defs.items():
        cls = RootConfig if name == "Pipeline" else classes.get(name)
        if cls is None:
            continue
        described = _by_encode_name(cls)
        tag_field = _tag_field(cls)
        for key, prop in definition.get("properties", {}).items():
            text = TAG_DESCRIPTION if key == tag_field else described.get(key)
            if text:
                unit = prop.get("description")  # ByteSize / Duration say how to write them
                prop["description"] = f"{text} ({unit})" if unit else text
    return schema


def config_schema() -> str:
    """JSON Schema (draft 2020-12) text: root keys plus one tagged union per component kind."""
    return msgspec.json.format(msgspec.json.encode(schema_dict()), indent=2).decode()


def properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(definition.property, its schema)`` for every property of every definition."""
    for name, definition in schema["$defs"].items():
        for key, prop in definition.get("properties", {}).items():
            yield f"{name}.{key}", prop


def undescribed() -> list[str]:
    """``module:Struct.option`` of every option of the schema declared without a description."""
    root = root_struct()
    classes = _classes_by_name(root)
    missing = []
    for name, definition in msgspec.json.schema(root, schema_hook=units.schema_hook)["$defs"].items():
        cls = RootConfig if name == "Pipeline" else classes[name]
        described = _by_encode_name(cls)
        tag_field = _tag_field(cls)
        missing += [f"{cls.__module__}:{cls.__name__}.{key}" for key in definition.get("properties", {})
                    if key != tag_field and key not in described]
    return missing


def _tag_field(cls: type) -> str | None:
    """The ``type:`` key of a component config; None for other structs."""
    config = getattr(cls, "__struct_config__", None)
    return None if config is None else config.tag_field


def _by_encode_name(cls: type) -> dict[str, str]:
    """Descriptions keyed as options are written (``global_`` is ``global``)."""
    described = field_descriptions(cls)
    names = {f.name: f.encode_name for f in msgspec.structs.fields(cls)} if hasattr(cls, "__struct_fields__") else {}
    return {names.get(name, name): text for name, text in described.items()}


def _classes_by_name(root: type) -> dict[str, type]:
    """Every struct reachable from ``root``, under each name msgspec may give its definition."""
    found: dict[str, type] = {}
    seen: set[int] = set()

    def visit(t: mi.Type) -> None:
        if id(t) in seen:
            return
        seen.add(id(t))
        if isinstance(t, mi.StructType):
            found[t.cls.__name__] = t.cls
            found[re.sub(r"[^a-zA-Z0-9.\-_]", "_", f"{t.cls.__module__}.{t.cls.__qualname__}")] = t.cls
            for field in t.fields:
                visit(field.type)
        for attr in ("item_type", "key_type", "value_type"):
            if isinstance(child := getattr(t, attr, None), mi.Type):
                visit(child)
        for child in getattr(t, "types", ()) or ():
            if isinstance(child, mi.Type):
                visit(child)

    visit(mi.type_info(root))
    return found
