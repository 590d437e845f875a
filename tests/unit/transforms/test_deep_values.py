"""Values nested deeper than Python's recursion limit (orjson parses 1024 levels) are hostile input:
the stages that copy, key or digest them must not raise (a raise skips the whole batch)."""

from __future__ import annotations

from pathlib import Path

import orjson

from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.core.keys import as_text
from agent.observe.stats import ComponentStats
from agent.transforms.dedupe import DedupeConfig, DedupeTransform
from agent.transforms.modify import ModifyConfig, ModifyTransform

DEEP = orjson.loads(b"[" * 1020 + b"]" * 1020)


def ctx() -> BuildContext:
    return BuildContext("c", Path("."), Path("."), ComponentStats("c", "transform", "x"))


def test_modify_copy_of_a_deep_value_is_a_counted_conflict_and_the_other_events_are_modified() -> None:
    t = ModifyTransform(ModifyConfig(inputs=["x"], copy={"a": "b"}, add={"env": "prod"}), ctx())
    batch = Batch([{"a": DEEP}, {"a": 1}], Kind.LOGS, 10)
    out = t.process(batch)
    assert out is not None
    assert out.events[1] == {"a": 1, "b": 1, "env": "prod"}
    assert out.events[0]["env"] == "prod"


def test_dedupe_of_a_deep_value_does_not_raise() -> None:
    t = DedupeTransform(DedupeConfig(inputs=["x"], fields=["a"]), ctx())
    out = t.process(Batch([{"a": DEEP}, {"a": 1}, {"a": 1}], Kind.LOGS, 10))
    assert out is not None and len(out.events) == 2


def test_key_text_of_a_deep_value_does_not_raise() -> None:
    assert isinstance(as_text(DEEP), str)
