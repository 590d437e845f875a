"""Component types by kind and ``type:`` name.

A module registers its component with :func:`register`; :func:`load_builtins`
imports the explicit list of built-in modules (a test checks that every module
in sources/, transforms/ and sinks/ is listed and registered).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from agent.observe.stats import ComponentStats

KINDS = ("source", "transform", "sink")

BUILTIN_MODULES = (
    "agent.sources.generate",
    "agent.sources.stdin",
    "agent.sources.socket",
    "agent.sources.tail",
    "agent.sources.prometheus_scrape",
    "agent.sources.kafka",
    "agent.transforms.parse",
    "agent.transforms.modify",
    "agent.transforms.nest",
    "agent.transforms.redact",
    "agent.transforms.host_metadata",
    "agent.transforms.kubernetes",
    "agent.transforms.throttle",
    "agent.transforms.sample",
    "agent.transforms.dedupe",
    "agent.transforms.log_to_metric",
    "agent.transforms.filter",
    "agent.transforms.route",
    "agent.sinks.blackhole",
    "agent.sinks.console",
    "agent.sinks.datadog_logs",
    "agent.sinks.datadog_metrics",
    "agent.sinks.elasticsearch",
    "agent.sinks.file",
    "agent.sinks.http",
    "agent.sinks.kafka",
    "agent.sinks.prometheus_exporter",
    "agent.sinks.prometheus_remote_write",
    "agent.sinks.socket",
)


@dataclass(slots=True)
class BuildContext:
    """What a factory may use besides its config."""

    component_id: str
    data_dir: Path
    config_dir: Path
    stats: ComponentStats


@dataclass(frozen=True, slots=True)
class ComponentType:
    """A registered component type: its config struct and its factory."""

    kind: str
    name: str
    config: type[msgspec.Struct]
    build: Callable[[Any, BuildContext], Any]
    description: str


_TYPES: dict[tuple[str, str], ComponentType] = {}

F = TypeVar("F", bound=Callable[..., Any])


def register(kind: str, name: str, config: type[msgspec.Struct], description: str) -> Callable[[F], F]:
    """Class or function decorator: ``factory(config, ctx)`` builds the component."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}")

    def decorate(factory: F) -> F:
        tag = config.__struct_config__.tag
        if tag != name:
            raise ValueError(f"{config.__name__} is tagged {tag!r}, registered as {name!r}")
        _TYPES[(kind, name)] = ComponentType(kind, name, config, factory, description)
        return factory

    return decorate


def load_builtins() -> None:
    """Import every built-in component module (idempotent)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def lookup(kind: str, name: str) -> ComponentType | None:
    load_builtins()
    return _TYPES.get((kind, name))


def types_of(kind: str) -> list[ComponentType]:
    load_builtins()
    return sorted((t for (k, _), t in _TYPES.items() if k == kind), key=lambda t: t.name)
