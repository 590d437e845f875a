"""dedupe: duplicates by fields within an LRU of max_keys identities, dropped and counted."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from stateful_stage import config, context, logs

from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.transforms.dedupe import DedupeConfig, DedupeTransform


def dedupe(**kw: Any) -> DedupeTransform:
    return DedupeTransform(config(DedupeConfig, "dedupe", **kw), context("dedupe"))


def test_events_equal_in_the_fields_are_dropped_and_counted_across_batches() -> None:
    t = dedupe(fields=["message", "kubernetes.pod"])
    out = t.process(logs({"message": "a", "kubernetes": {"pod": "p1"}, "offset": 1},
                         {"message": "a", "kubernetes": {"pod": "p2"}, "offset": 2},
                         {"message": "a", "kubernetes": {"pod": "p1"}, "offset": 3}))
    assert out is not None and [e["offset"] for e in out.events] == [1, 2]
    assert out.byte_size == 200
    seen: list[AckStatus] = []
    assert t.process(logs({"message": "a", "kubernetes": {"pod": "p2"}}, acks=[Ack(seen.append)])) is None
    assert seen == [AckStatus.DELIVERED]
    assert t.stats.discarded["duplicate"] == 2


def test_missing_differs_from_null_and_objects_compare_by_content() -> None:
    t = dedupe(fields=["a", "b"])
    out = t.process(logs({"a": 1}, {"a": 1, "b": None}, {"a": 1, "b": None}, {"a": 1},
                         {"a": {"x": 1, "y": 2}}, {"a": {"y": 2, "x": 1}}, {"a": 1.0, "b": "!"}, {"a": "1"}))
    assert out is not None
    assert out.events == [{"a": 1}, {"a": 1, "b": None}, {"a": {"x": 1, "y": 2}}, {"a": 1.0, "b": "!"}, {"a": "1"}]


def test_an_event_with_none_of_the_fields_is_passed_on_and_counted_not_taken_for_a_duplicate() -> None:
    # the default fields: [message] after parse json of logs that say "msg": none of them is a duplicate
    t = dedupe()
    events = [{"level": "info", "msg": "started"}, {"level": "info", "msg": "listening"}, {"msg": "started"}]
    out = t.process(logs(*events, {"message": "m"}, {"message": "m"}))
    assert out is not None and out.events == [*events, {"message": "m"}]
    assert t.stats.discarded["duplicate"] == 1
    assert t.stats.counters[("unidentified_events", ())] == 3
    assert len(t.seen) == 1  # nothing remembered for them
    some = dedupe(fields=["a", "b"])  # one of several fields present still identifies the event
    out = some.process(logs({"a": 1}, {"a": 1}, {"c": 1}, {"c": 2}))
    assert out is not None and out.events == [{"a": 1}, {"c": 1}, {"c": 2}]


def test_only_the_last_max_keys_identities_are_remembered_least_recent_first_forgotten() -> None:
    t = dedupe(max_keys=3)
    assert t.process(logs(*({"message": m} for m in "abc"))) is not None
    assert t.process(logs({"message": "a"})) is None  # "a" seen again: now the most recent
    out = t.process(logs({"message": "d"}, {"message": "b"}, {"message": "a"}))
    # "d" pushed out "b" (least recent); "b" is new again and pushes out "c"; "a" is still remembered
    assert out is not None and [e["message"] for e in out.events] == ["d", "b"]
    assert len(t.seen) == 3 and t.stats.gauge_values()["keys"] == 3


def test_memory_per_identity_is_bounded_whatever_the_values() -> None:
    t = dedupe(fields=["message"], max_keys=10)
    huge = "z" * 20_000_000
    out = t.process(logs({"message": huge}, {"message": huge}, {"message": 2**80}, {"message": 2**80},
                         {"message": "\ud800"}, {"message": "\ud800"}, {"message": b"bytes"}, {"message": {1: 2}},
                         *({"message": n} for n in range(1000))))
    assert out is not None
    assert [e["message"] for e in out.events[:5]] == [huge, 2**80, "\ud800", b"bytes", {1: 2}]
    assert len(t.seen) == 10 and all(len(k) == 16 for k in t.seen)


def test_raw_lines_are_read_as_events() -> None:
    t = dedupe()
    out = t.process(Batch([b"one", b"two", b"one"], Kind.LINES, 9))
    assert out is not None and out.events == [{"message": "one"}, {"message": "two"}]
    by_field = dedupe(fields=["id"])
    out = by_field.process(Batch([b'{"id":1,"n":1}', b'{"id":1,"n":2}'], Kind.JSON_LINES, 28))
    assert out is not None and out.events == [{"id": 1, "n": 1}]


@pytest.mark.parametrize("bad", [{"fields": []}, {"fields": ["a["]}, {"max_keys": 0}])
def test_bad_settings_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        config(DedupeConfig, "dedupe", **bad)
