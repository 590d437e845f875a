"""`agent schema`: the JSON Schema of a pipeline file, built from the registered config structs."""

from __future__ import annotations

from typing import Any, Union

import msgspec

from agent.config import units
from agent.config.model import RootConfig
from agent.config.registry import types_of

SECTIONS = {"sources": "source", "transforms": "transform", "sinks": "sink"}


def config_schema() -> str:
    """JSON Schema (draft 2020-12) text: root keys plus one tagged union per component kind."""
    fields: list[tuple[str, Any, Any]] = []
    for info in msgspec.structs.fields(RootConfig):
        if info.name in SECTIONS:
            union: Any = Union[tuple(t.config for t in types_of(SECTIONS[info.name]))]  # noqa: UP007 - built at run time
            fields.append((info.name, dict[str, union], msgspec.field(default_factory=dict)))
        elif info.default_factory is not msgspec.NODEFAULT:
            fields.append((info.name, info.type, msgspec.field(default_factory=info.default_factory)))
        else:
            fields.append((info.name, info.type, info.default))
    root = msgspec.defstruct("Pipeline", fields, kw_only=True, forbid_unknown_fields=True)
    schema = msgspec.json.schema(root, schema_hook=units.schema_hook)
    return msgspec.json.format(msgspec.json.encode(schema), indent=2).decode()
