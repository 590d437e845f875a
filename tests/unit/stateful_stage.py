"""Building a stage from a config mapping, as the loader does, for the stateful stages' tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from agent.config.registry import BuildContext
from agent.config.units import dec_hook
from agent.core.batch import Batch, Kind
from agent.observe.stats import ComponentStats


def config(config_type: type[msgspec.Struct], type_name: str, **settings: Any) -> Any:
    """The checked config of a ``type_name`` stage (ValidationError as the loader would see it)."""
    return msgspec.convert({"type": type_name, "inputs": ["x"], **settings}, config_type, dec_hook=dec_hook)


def context(type_name: str) -> BuildContext:
    return BuildContext("stage", Path("."), Path("."), ComponentStats("stage", "transform", type_name))


def logs(*events: dict[str, Any], acks: list[Any] | None = None) -> Batch:
    """A LOGS batch accounted at 100 bytes an event."""
    return Batch(list(events), Kind.LOGS, 100 * len(events), acks)
