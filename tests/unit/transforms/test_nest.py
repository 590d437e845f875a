from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.observe.stats import ComponentStats
from agent.transforms.nest import NestConfig, NestTransform


def transform(**kw: Any) -> NestTransform:
    stats = ComponentStats("n", "transform", "nest")
    config = msgspec.convert({"type": "nest", "inputs": ["x"], **kw}, NestConfig)
    return NestTransform(config, BuildContext("n", Path("."), Path("."), stats))


def run(t: NestTransform, *events: dict[str, Any]) -> list[dict[str, Any]]:
    out = t.process(Batch([dict(e) for e in events], Kind.LOGS, 100))
    assert out is not None
    return out.events


def test_nest_gathers_matching_keys_as_the_fluent_bit_docs_show() -> None:
    t = transform(operation="nest", wildcard="Key*", nest_under="NestKey")
    out = run(t, {"Key1": "Value1", "Key2": "Value2", "OtherKey": "Value3"}, {"OtherKey": 1})
    assert out == [{"OtherKey": "Value3", "NestKey": {"Key1": "Value1", "Key2": "Value2"}}, {"OtherKey": 1}]


def test_lift_brings_nested_keys_up_as_the_fluent_bit_docs_show() -> None:
    t = transform(operation="lift", nested_under="NestKey")
    out = run(t, {"OtherKey": "Value3", "NestKey": {"Key1": "Value1", "Key2": "Value2"}})
    assert out == [{"OtherKey": "Value3", "Key1": "Value1", "Key2": "Value2"}]


def test_nest_with_several_wildcards_and_remove_prefix() -> None:
    # Fluent Bit's docs: Wildcard Mem.* / Wildcard Swap.* / Nest_under Stats / Remove_prefix Mem.
    t = transform(operation="nest", wildcard=["Mem.*", "Swap.*", "exact"], nest_under="Stats",
                  remove_prefix="Mem.")
    out = run(t, {"Mem.total": 1, "Swap.used": 2, "exact": 3, "exactly": 4, "Memory": 5})
    assert out == [{"exactly": 4, "Memory": 5, "Stats": {"total": 1, "Swap.used": 2, "exact": 3}}]


def test_lift_with_add_prefix_and_nest_round_trip() -> None:
    lift = transform(operation="lift", nested_under="log", add_prefix="app_")
    nest = transform(operation="nest", wildcard="app_*", nest_under="log", remove_prefix="app_")
    event = {"stream": "stdout", "log": {"level": "info", "msg": "hi"}}
    lifted = run(lift, event)
    assert lifted == [{"stream": "stdout", "app_level": "info", "app_msg": "hi"}]
    assert run(nest, *lifted) == [event]


def test_lift_of_a_missing_or_non_object_value_changes_nothing() -> None:
    t = transform(operation="lift", nested_under="log")
    assert run(t, {"log": "text"}, {"a": 1}, {"log": [1]}) == [{"log": "text"}, {"a": 1}, {"log": [1]}]


def test_nest_merges_into_an_existing_object_without_changing_it_in_place() -> None:
    shared = {"a": 1}
    t = transform(operation="nest", wildcard="k*", nest_under="meta")
    out = run(t, {"meta": shared, "k1": 2})
    assert out == [{"meta": {"a": 1, "k1": 2}}] and shared == {"a": 1}


def test_lift_does_not_change_the_nested_object_another_consumer_shares() -> None:
    original = Batch([{"log": {"a": 1}}], Kind.LOGS, 10)
    out = transform(operation="lift", nested_under="log").process(original.copy_for_mutation())
    assert out is not None and out.events == [{"a": 1}] and original.events == [{"log": {"a": 1}}]


def test_raw_lines_and_byte_size() -> None:
    t = transform(operation="nest", wildcard="message", nest_under="raw")
    out = t.process(Batch([b"hello"], Kind.LINES, 5))
    assert out is not None and out.events == [{"raw": {"message": "hello"}}] and out.byte_size > 5


@pytest.mark.parametrize("bad", [{"operation": "nest", "nest_under": "x"}, {"operation": "nest", "wildcard": "a"},
                                 {"operation": "lift"}, {"operation": "nest", "wildcard": "a*b", "nest_under": "x"},
                                 {"operation": "shuffle"}])
def test_incomplete_settings_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"type": "nest", "inputs": ["x"], **bad}, NestConfig)


keys = st.sampled_from(["a", "ab", "b", "log", "x"])
values = st.none() | st.integers() | st.text(max_size=3) | st.dictionaries(keys, st.integers(), max_size=3)


@given(st.dictionaries(keys, values, max_size=5))
def test_nest_then_lift_gives_back_the_keys(event: dict[str, Any]) -> None:
    nest = transform(operation="nest", wildcard="a*", nest_under="n")
    lift = transform(operation="lift", nested_under="n")
    if "n" in event:
        return
    out = run(lift, *run(nest, event))
    assert out == [event]
