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
from agent.transforms.modify import ModifyConfig, ModifyTransform


def transform(**kw: Any) -> ModifyTransform:
    stats = ComponentStats("m", "transform", "modify")
    config = msgspec.convert({"type": "modify", "inputs": ["x"], **kw}, ModifyConfig)
    return ModifyTransform(config, BuildContext("m", Path("."), Path("."), stats))


def run(t: ModifyTransform, *events: dict[str, Any]) -> list[dict[str, Any]]:
    out = t.process(Batch([dict(e) for e in events], Kind.LOGS, 100))
    assert out is not None
    return out.events


def test_add_only_when_absent_set_always() -> None:
    t = transform(add={"cluster": "prod", "env": "x"}, set={"level": "INFO"})
    assert run(t, {"env": "dev", "level": "debug"}) == [{"env": "dev", "level": "INFO", "cluster": "prod"}]


def test_rename_keeps_an_existing_target_move_replaces_it() -> None:
    t = transform(rename={"a": "b"}, move={"c": "d"})
    assert run(t, {"a": 1, "b": 2, "c": 3, "d": 4}) == [{"a": 1, "b": 2, "d": 3}]
    assert run(t, {"a": 1, "c": 3}) == [{"b": 1, "d": 3}]
    assert run(t, {}) == [{}]  # missing sources: nothing happens


def test_operations_apply_in_the_documented_order() -> None:
    # rename, move, copy, add, set, remove, tags_add: copy sees the renamed field, set overwrites the copied
    # source after it was kept, the template reads a field remove then drops.
    t = transform(rename={"msg": "message"}, copy={"message": "original"}, set={"message": "[cut]",
                  "trace_id": "{{ request_id }}"}, remove=["request_id"], tags_add=["seen"])
    assert run(t, {"msg": "hello", "request_id": "r1"}) == [
        {"message": "[cut]", "original": "hello", "trace_id": "r1", "tags": ["seen"]}]


def test_nested_paths_are_created_read_and_removed() -> None:
    t = transform(set={"kubernetes.labels.team": "{{ team }}"}, copy={"kubernetes.pod": "pod"},
                  remove=["kubernetes.container"])
    out = run(t, {"team": "pay", "kubernetes": {"pod": "p-1", "container": "c"}})
    assert out == [{"team": "pay", "pod": "p-1", "kubernetes": {"pod": "p-1", "labels": {"team": "pay"}}}]


def test_templates_keep_types_when_whole_and_render_text_when_mixed() -> None:
    t = transform(set={"n": "{{ count }}", "s": "n=%{count} ok={{ ok }} svc=%{[fields][service]}"})
    out = run(t, {"count": 3, "ok": True, "fields": {"service": "api"}})
    assert out[0]["n"] == 3 and out[0]["s"] == "n=3 ok=true svc=api"


def test_a_template_naming_a_missing_field_sets_nothing() -> None:
    t = transform(add={"trace_id": "%{request_id}", "x": "a-{{ nope }}"})
    assert run(t, {"m": 1}) == [{"m": 1}]


def test_a_copied_container_does_not_alias_its_source() -> None:
    t = transform(copy={"a": "b"}, set={"b.x": 2})
    out = run(t, {"a": {"x": 1}})
    assert out == [{"a": {"x": 1}, "b": {"x": 2}}]


def test_constant_containers_are_fresh_per_event() -> None:
    t = transform(set={"meta": {"k": [1]}})
    first, second = run(t, {}, {})
    first["meta"]["k"].append(2)
    assert second == {"meta": {"k": [1]}}


def test_tags_are_added_once_to_a_list_or_text_and_a_shared_list_is_not_changed() -> None:
    t = transform(tags_add=["a", "b", "a"])
    shared = ["b"]
    out = run(t, {}, {"tags": "x"}, {"tags": shared}, {"tags": ["a", "b"]})
    assert [e["tags"] for e in out] == [["a", "b"], ["x", "a", "b"], ["b", "a"], ["a", "b"]]
    assert shared == ["b"]


def test_a_write_through_a_non_object_is_counted_not_raised() -> None:
    t = transform(set={"a.b": 1}, tags_add=["t"])
    out = run(t, {"a": "text", "tags": 5}, {"a": {}})
    assert out[0] == {"a": "text", "tags": 5} and out[1]["a"] == {"b": 1}
    assert t.stats.errors[("field_conflict", "processing")] == 2


def test_raw_lines_become_events_and_metrics_pass() -> None:
    t = transform(add={"env": "prod"})
    out = t.process(Batch([b"plain \xff", b'{"a":1}'], Kind.LINES, 20))
    assert out is not None and out.kind is Kind.LOGS
    assert out.events == [{"message": "plain \ufffd", "env": "prod"}, {"message": '{"a":1}', "env": "prod"}]
    js = t.process(Batch([b'{"a":1}', b"[1]"], Kind.JSON_LINES, 20))
    assert js is not None and js.events == [{"a": 1, "env": "prod"}, {"message": "[1]", "env": "prod"}]
    metrics = Batch([], Kind.METRICS, 0)
    assert t.process(metrics) is metrics


def test_added_fields_grow_the_byte_size() -> None:
    out = transform(add={"a": 1, "b": 2}).process(Batch([{}, {}], Kind.LOGS, 100))
    assert out is not None and out.byte_size > 100


@pytest.mark.parametrize("bad", [{"set": {"a": "{{ }}"}}, {"add": {"a": "%{+YYYY.MM.dd}"}}])
def test_bad_templates_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"type": "modify", "inputs": ["x"], **bad}, ModifyConfig)


values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                   max_size=3), max_leaves=8)


@given(st.dictionaries(st.sampled_from(["a", "b", "tags", "x"]), values, max_size=4))
def test_any_event_is_handled_without_raising(event: dict[str, Any]) -> None:
    t = transform(rename={"a": "b"}, copy={"x": "a.y"}, add={"b.c": "{{ x }}"}, set={"z": "%{a} {{ tags }}"},
                  remove=["x.q"], tags_add=["t"])
    out = run(t, event)
    assert len(out) == 1 and isinstance(out[0], dict)


def test_nested_writes_do_not_reach_the_events_another_consumer_shares() -> None:
    # Fan-out hands a mutating consumer a shallow copy: nested objects are shared with the other consumers.
    original = Batch([{"kubernetes": {"labels": {"app": "a"}, "pod": "p"}, "tags": ["x"], "list": [{"k": 1}]}],
                     Kind.LOGS, 100)
    copy = original.copy_for_mutation()
    t = transform(set={"kubernetes.labels.team": "t", "list[0].k": 2}, rename={"kubernetes.pod": "kubernetes.p"},
                  remove=["kubernetes.labels.app"], tags_add=["y"])
    out = t.process(copy)
    assert out is not None and out.events[0]["kubernetes"] == {"labels": {"team": "t"}, "p": "p"}
    assert out.events[0]["list"] == [{"k": 2}] and out.events[0]["tags"] == ["x", "y"]
    assert original.events == [{"kubernetes": {"labels": {"app": "a"}, "pod": "p"}, "tags": ["x"],
                                "list": [{"k": 1}]}]
