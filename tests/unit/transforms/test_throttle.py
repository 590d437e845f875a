"""throttle: a budget per key and window, the excess dropped and counted, state bounded."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from stateful_stage import config, context, logs

from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.transforms.throttle import ThrottleConfig, ThrottleTransform


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock | None = None, **kw: Any) -> ThrottleTransform:
    return ThrottleTransform(config(ThrottleConfig, "throttle", **kw), context("throttle"), clock or Clock())


def test_each_key_gets_threshold_events_per_window_and_the_rest_is_dropped_and_counted() -> None:
    clock = Clock()
    t = throttle(clock, threshold=2, window="10s", key="service")
    out = t.process(logs(*({"service": s, "n": n} for n in range(3) for s in ("a", "b"))))
    assert out is not None
    assert [(e["service"], e["n"]) for e in out.events] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    assert out.byte_size == 400
    assert t.stats.discarded["throttled"] == 2
    assert t.process(logs({"service": "a"})) is None  # still the same window
    clock.now += 10
    out = t.process(logs({"service": "a"}, {"service": "a"}, {"service": "a"}))
    assert out is not None and len(out.events) == 2  # a new window: a new budget
    assert t.stats.discarded["throttled"] == 4


def test_a_fully_throttled_batch_releases_its_acks_as_delivered() -> None:
    t = throttle(threshold=1)
    assert t.process(logs({"m": 1})) is not None
    seen: list[AckStatus] = []
    assert t.process(logs({"m": 2}, {"m": 3}, acks=[Ack(seen.append)])) is None
    assert seen == [AckStatus.DELIVERED]


def test_a_template_key_and_nested_paths() -> None:
    t = throttle(threshold=1, key="{{ kubernetes.namespace }}/{{ level }}")
    out = t.process(logs({"kubernetes": {"namespace": "a"}, "level": "info"},
                         {"kubernetes": {"namespace": "a"}, "level": "error"},
                         {"kubernetes": {"namespace": "a"}, "level": "info"},
                         {"kubernetes": {"namespace": "b"}, "level": "info"}))
    assert out is not None and [e["kubernetes"]["namespace"] + e["level"] for e in out.events] == [
        "ainfo", "aerror", "binfo"]


def test_hostile_keys_missing_non_text_huge_share_or_bound_their_budget() -> None:
    t = throttle(threshold=1, key="user")
    huge = "x" * 10_000_000
    out = t.process(logs({"user": None}, {"user": 5}, {"user": "5"}, {"other": 1}, {"user": [1, {"a": 2}]},
                         {"user": {"b": 1, "a": 2}}, {"user": {"a": 2, "b": 1}}, {"user": huge}, {"user": huge},
                         {"user": huge + "y"}, {"user": True}, {"user": "\ud800"}))
    assert out is not None
    kept = [e.get("user", "<missing>") for e in out.events]
    # null is JSON "null", 5 and "5" are one key, a missing field its own budget, objects by content
    assert kept[:4] == [None, 5, "<missing>", [1, {"a": 2}]]
    assert kept[4] == {"b": 1, "a": 2}
    assert kept[5:] == [huge, huge + "y", True, "\ud800"]
    assert all(len(k) <= 256 if isinstance(k, str) else len(k) == 16 for k in t.counts if k is not None)


def test_keys_past_max_keys_share_one_budget_and_the_state_stays_bounded() -> None:
    t = throttle(threshold=2, key="id", max_keys=100)
    out = t.process(logs(*({"id": i} for i in range(10_000))))
    assert out is not None
    assert len(out.events) == 102  # 100 keys of their own, then 2 for all the others together
    assert len(t.counts) == 101
    assert t.stats.gauge_values()["keys"] == 101
    assert t.stats.counters[("overflow_events", ())] == 9_900


def test_exclude_is_never_throttled() -> None:
    t = throttle(threshold=1, exclude='level == "ERROR"')
    out = t.process(logs({"level": "ERROR"}, {"level": "info"}, {"level": "ERROR"}, {"level": "info"}))
    assert out is not None and [e["level"] for e in out.events] == ["ERROR", "info", "ERROR"]


def test_raw_lines_without_key_stay_raw_and_with_a_key_are_read_as_events() -> None:
    t = throttle(threshold=2)
    out = t.process(Batch([b"a", b"b", b"c"], Kind.LINES, 3))
    assert out is not None and out.kind is Kind.LINES and out.events == [b"a", b"b"]
    keyed = throttle(threshold=1, key="service")
    out = keyed.process(Batch([b'{"service":"a"}', b'{"service":"a"}', b'{"service":"b"}'], Kind.JSON_LINES, 45))
    assert out is not None and out.events == [{"service": "a"}, {"service": "b"}]


@pytest.mark.parametrize("bad", [{"threshold": 0}, {"threshold": 1, "window": "0s"},
                                 {"threshold": 1, "key": "a..b"}, {"threshold": 1, "key": "{{ a"},
                                 {"threshold": 1, "exclude": "level =="}, {"threshold": 1, "max_keys": 0}])
def test_bad_settings_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        config(ThrottleConfig, "throttle", **bad)
