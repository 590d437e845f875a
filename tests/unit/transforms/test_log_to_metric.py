"""log_to_metric: counters, gauges and histograms from log events, bounded in series, emitted as samples."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from stateful_stage import config, context, logs

from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.core.metric import Sample
from agent.transforms.log_to_metric import LogToMetricConfig, LogToMetricTransform


def stage(metrics: list[dict[str, Any]], **kw: Any) -> LogToMetricTransform:
    return LogToMetricTransform(config(LogToMetricConfig, "log_to_metric", metrics=metrics, **kw),
                                context("log_to_metric"), clock=lambda: 1700000000.5)


def values(batch: Batch | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert batch is not None and batch.kind is Kind.METRICS
    samples: list[Sample] = batch.events
    assert all(s.timestamp_ms == 1700000000500 for s in samples)
    return {(s.name, s.labels): s.value for s in samples}


ERRORS = {"type": "counter", "name": "errors_total", "condition": 'level == "ERROR"', "labels": {"service": "service"}}


def test_a_counter_of_errors_by_service_and_the_log_events_are_consumed() -> None:
    t = stage([ERRORS])
    seen: list[AckStatus] = []
    assert t.process(logs({"level": "ERROR", "service": "a"}, {"level": "INFO", "service": "a"},
                          {"level": "ERROR", "service": "b"}, {"level": "ERROR", "service": "a"},
                          acks=[Ack(seen.append)])) is None
    assert seen == [AckStatus.DELIVERED]
    flushed = t.flush()
    assert values(flushed) == {("errors_total", (("service", "a"),)): 2.0, ("errors_total", (("service", "b"),)): 1.0}
    assert all(s.kind == "counter" for s in flushed.events)  # type: ignore[union-attr]
    t.process(logs({"level": "ERROR", "service": "a"}))
    assert values(t.flush())[("errors_total", (("service", "a"),))] == 3.0  # cumulative


def test_a_gauge_takes_the_last_value_and_a_counter_may_add_a_field() -> None:
    t = stage([{"type": "gauge", "name": "queue_depth", "field": "queue.depth"},
               {"type": "counter", "name": "bytes_total", "field": "bytes"}])
    t.process(logs({"queue": {"depth": 3}, "bytes": 10}, {"queue": {"depth": "7.5"}, "bytes": "5"}, {"bytes": 1}))
    assert values(t.flush()) == {("queue_depth", ()): 7.5, ("bytes_total", ()): 16.0}


def test_a_histogram_of_duration_ms_as_prometheus_series() -> None:
    t = stage([{"type": "histogram", "name": "request_ms", "field": "duration_ms", "buckets": [10, 100],
                "labels": {"route": "{{ method }} {{ path }}"}}])
    t.process(logs(*({"duration_ms": d, "method": "GET", "path": "/"} for d in (5, 10, 50, 500))))
    route = ("route", "GET /")
    got = values(t.flush())
    assert got == {
        ("request_ms_bucket", (("le", "10.0"), route)): 2.0,
        ("request_ms_bucket", (("le", "100.0"), route)): 3.0,
        ("request_ms_bucket", (("le", "+Inf"), route)): 4.0,
        ("request_ms_sum", (route,)): 565.0,
        ("request_ms_count", (route,)): 4.0,
    }
    assert t.stats.gauge_values()["series"] == 5


def test_series_are_bounded_by_max_series_and_the_excess_is_counted() -> None:
    t = stage([{"type": "counter", "name": "hits_total", "labels": {"user": "user"}}], max_series=100)
    t.process(logs(*({"user": f"u{n}"} for n in range(10_000))))
    t.process(logs({"user": "u1"}))  # a series it holds still counts
    flushed = values(t.flush())
    assert len(flushed) == 100 and flushed[("hits_total", (("user", "u1"),))] == 2.0
    assert t.stats.counters[("series_limited_events", ())] == 9_900
    assert t.stats.gauge_values()["series"] == 100


def test_hostile_values_and_labels() -> None:
    t = stage([{"type": "histogram", "name": "d", "field": "d", "buckets": [1], "labels": {"k": "k"}}])
    t.process(logs({"d": "fast", "k": "a"}, {"d": True, "k": "a"}, {"d": float("nan"), "k": "a"}, {"d": "1" * 100},
                   {"k": "a"}, {"d": None}, {"d": 0.5, "k": "x" * 10_000}, {"d": 0.5, "k": {"a": [1]}},
                   {"d": 0.5, "k": ""}, {"d": 0.5}, {"d": 0.5, "k": None}, {"d": 0.5, "k": "null"}))
    got = values(t.flush())
    assert t.stats.errors[("invalid_value", "processing")] == 4  # "fast", true, NaN, a 100-digit string
    labels = {dict(lbl).get("k") for (name, lbl) in got if name == "d_count"}
    assert labels == {"x" * 1024, '{"a":[1]}', "null", None}  # cut long, an object's JSON, the text "null"
    assert got[("d_count", ())] == 3.0  # empty, missing or null: no label


def test_a_negative_value_is_not_added_to_a_counter() -> None:
    t = stage([{"type": "counter", "name": "c_total", "field": "n"}])
    t.process(logs({"n": -5}, {"n": 2}))
    assert values(t.flush()) == {("c_total", ()): 2.0}
    assert t.stats.errors[("invalid_value", "processing")] == 1


def test_series_no_event_updated_for_expire_after_are_forgotten() -> None:
    t = stage([{"type": "counter", "name": "c_total", "labels": {"pod": "pod"}}], interval="10s", expire_after="30s")
    t.process(logs({"pod": "old"}))
    for _ in range(3):
        t.process(logs({"pod": "live"}))
        assert ("c_total", (("pod", "old"),)) in values(t.flush())
    t.process(logs({"pod": "live"}))
    got = values(t.flush())
    assert got == {("c_total", (("pod", "live"),)): 4.0}
    assert t.stats.gauge_values()["series"] == 1


def test_nothing_counted_yet_flushes_nothing_and_raw_lines_are_read_as_events() -> None:
    t = stage([{"type": "counter", "name": "lines_total", "labels": {"level": "level"}}])
    assert t.flush() is None
    t.process(Batch([b'{"level":"warn"}', b"plain text"], Kind.JSON_LINES, 30))
    assert values(t.flush()) == {("lines_total", (("level", "warn"),)): 1.0, ("lines_total", ()): 1.0}


@pytest.mark.parametrize("bad", [
    {"metrics": []},
    {"metrics": [{"type": "gauge", "name": "g"}]},
    {"metrics": [{"type": "counter", "name": "bad name"}]},
    {"metrics": [{"type": "counter", "name": "c", "labels": {"__x": "a"}}]},
    {"metrics": [{"type": "histogram", "name": "h", "field": "d", "labels": {"le": "a"}}]},
    {"metrics": [{"type": "histogram", "name": "h", "field": "d", "buckets": [5, 1]}]},
    {"metrics": [{"type": "counter", "name": "c", "buckets": [1]}]},
    {"metrics": [{"type": "counter", "name": "c", "condition": "level = 1"}]},
    {"metrics": [{"type": "counter", "name": "c"}, {"type": "counter", "name": "c"}]},
    {"metrics": [{"type": "counter", "name": "c"}], "max_series": 0},
    {"metrics": [{"type": "counter", "name": "c"}], "interval": "0s"},
])
def test_bad_settings_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        config(LogToMetricConfig, "log_to_metric", **bad)


@pytest.mark.parametrize("second", [
    {"type": "counter", "name": "h_count"}, {"type": "gauge", "name": "h_sum", "field": "d"},
    {"type": "counter", "name": "h_bucket"}, {"type": "histogram", "name": "h_bucket", "field": "d"},
])
def test_a_metric_named_as_a_series_of_a_histogram_is_a_config_error(second: dict[str, Any]) -> None:
    # both would emit a series of one name: two TYPE lines for it on a scrape page, or clashing samples
    with pytest.raises(msgspec.ValidationError, match="would be a series of both 'h' and 'h_"):
        config(LogToMetricConfig, "log_to_metric", metrics=[{"type": "histogram", "name": "h", "field": "d"}, second])
    with pytest.raises(msgspec.ValidationError, match=r"would be a series of both 'h_.*' and 'h'"):
        config(LogToMetricConfig, "log_to_metric", metrics=[second, {"type": "histogram", "name": "h", "field": "d"}])
