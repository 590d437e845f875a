from __future__ import annotations

from pathlib import Path

import agent
from agent.config.registry import BUILTIN_MODULES, types_of

PACKAGE = Path(agent.__file__).parent


def test_every_component_module_is_listed_and_registers_its_type() -> None:
    modules = {
        f"agent.{folder}.{path.stem}"
        for folder in ("sources", "transforms", "sinks")
        for path in (PACKAGE / folder).glob("*.py")
        if path.stem != "__init__" and path.stem not in ("delivery",)
    }
    assert modules == set(BUILTIN_MODULES)
    registered = {f"agent.{kind}s.{t.name}" for kind in ("source", "transform", "sink") for t in types_of(kind)
                  if t.build.__module__.startswith("agent.")}
    assert registered == modules


def test_every_config_rejects_unknown_keys_and_has_a_docstring() -> None:
    for kind in ("source", "transform", "sink"):
        for t in types_of(kind):
            assert t.config.__struct_config__.forbid_unknown_fields, t.name
            assert t.config.__doc__ and t.build.__doc__, t.name
