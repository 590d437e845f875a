from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import agent
from agent.config.registry import BUILTIN_MODULES, types_of

PACKAGE = Path(agent.__file__).parent
HELPERS = {"delivery", "datadog_api"}  # modules in sinks/ that are shared code, not a component type


def component_modules(folder: str) -> Iterator[str]:
    for path in (PACKAGE / folder).iterdir():
        if path.suffix == ".py" and path.stem != "__init__" and path.stem not in HELPERS:
            yield f"agent.{folder}.{path.stem}"
        elif path.is_dir() and (path / "__init__.py").exists():
            yield f"agent.{folder}.{path.name}"


def test_every_component_module_is_listed_and_registers_its_type() -> None:
    modules = {m for folder in ("sources", "transforms", "sinks") for m in component_modules(folder)}
    assert modules == set(BUILTIN_MODULES)
    registered = {f"agent.{kind}s.{t.name}" for kind in ("source", "transform", "sink") for t in types_of(kind)
                  if t.build.__module__.startswith("agent.")}
    assert registered == modules


def test_every_config_rejects_unknown_keys_and_has_a_docstring() -> None:
    for kind in ("source", "transform", "sink"):
        for t in types_of(kind):
            assert t.config.__struct_config__.forbid_unknown_fields, t.name
            assert t.config.__doc__ and t.build.__doc__, t.name
