"""sample: exactly 1 in N by a counter, or whole keys by a stable hash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from stateful_stage import config, context, logs

from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.transforms.sample import SampleConfig, SampleTransform


def sample(**kw: Any) -> SampleTransform:
    return SampleTransform(config(SampleConfig, "sample", **kw), context("sample"))


def test_rate_keeps_exactly_one_in_n_across_batches_and_counts_the_rest() -> None:
    t = sample(rate=10)
    kept: list[int] = []
    for start in range(0, 1000, 7):  # batches of 7: the count carries over between them
        out = t.process(logs(*({"n": n} for n in range(start, min(start + 7, 1000)))))
        kept += [e["n"] for e in out.events] if out is not None else []
    assert kept == list(range(0, 1000, 10))
    assert t.stats.discarded["sampled"] == 900


def test_ratio_keeps_that_fraction_exactly() -> None:
    t = sample(ratio=0.25)
    out = t.process(logs(*({"n": n} for n in range(1000))))
    assert out is not None and len(out.events) == 250
    assert out.byte_size == 250 * 100


def test_a_batch_sampled_away_releases_its_acks_as_delivered() -> None:
    t = sample(rate=5)
    assert t.process(logs({"n": 0})) is not None
    seen: list[AckStatus] = []
    assert t.process(logs({"n": 1}, {"n": 2}, acks=[Ack(seen.append)])) is None
    assert seen == [AckStatus.DELIVERED]


def test_by_key_a_trace_is_kept_or_dropped_whole_and_about_the_fraction_of_traces_is_kept() -> None:
    t = sample(rate=4, key="trace_id")
    events = [{"trace_id": f"trace-{trace}", "span": span} for span in range(5) for trace in range(2000)]
    out = t.process(logs(*events))
    assert out is not None
    spans: dict[str, int] = {}
    for event in out.events:
        spans[event["trace_id"]] = spans.get(event["trace_id"], 0) + 1
    assert set(spans.values()) == {5}  # every kept trace is whole
    assert 400 < len(spans) < 600  # ~1 in 4 of 2,000 traces


def test_the_choice_by_key_is_the_same_in_another_process() -> None:
    keys = [f"trace-{n}" for n in range(200)]
    t = sample(ratio=0.5, key="id")
    out = t.process(logs(*({"id": k} for k in keys)))
    here = [e["id"] for e in out.events] if out is not None else []
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
        "from stateful_stage import config, context, logs\n"
        "from agent.transforms.sample import SampleConfig, SampleTransform\n"
        "t = SampleTransform(config(SampleConfig, 'sample', ratio=0.5, key='id'), context('sample'))\n"
        f"out = t.process(logs(*({{'id': f'trace-{{n}}'}} for n in range(200))))\n"
        "print(','.join(e['id'] for e in out.events))\n")
    there = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout.strip().split(",")
    assert here == there and 50 < len(here) < 150


def test_hostile_keys_missing_non_text_and_huge_are_sampled_without_error() -> None:
    t = sample(rate=2, key="k")
    huge = "y" * 5_000_000
    out = t.process(logs({"other": 1}, {"other": 2}, {"k": None}, {"k": [1, 2]}, {"k": {"a": 1}}, {"k": huge},
                         {"k": huge}, {"k": 10**30}, {"k": "\udcff"}))
    assert out is not None
    # without the key the counter decides: the first of the two is kept
    assert out.events[0] == {"other": 1} and {"other": 2} not in out.events
    assert sum(1 for e in out.events if e.get("k") == huge) in (0, 2)  # one key, one decision


def test_exclude_is_always_kept_and_raw_lines_are_counted() -> None:
    t = sample(rate=100, exclude='level == "ERROR"')
    out = t.process(logs({"level": "info"}, {"level": "info"}, {"level": "ERROR"}))
    assert out is not None and [e["level"] for e in out.events] == ["info", "ERROR"]
    raw = sample(rate=2)
    out = raw.process(Batch([b"a", b"b", b"c"], Kind.LINES, 3))
    assert out is not None and out.kind is Kind.LINES and out.events == [b"a", b"c"]


@pytest.mark.parametrize("bad", [{}, {"rate": 2, "ratio": 0.5}, {"rate": 0}, {"ratio": 0}, {"ratio": 1.5},
                                 {"rate": 2, "key": ""}, {"rate": 2, "exclude": "a ==="}])
def test_bad_settings_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        config(SampleConfig, "sample", **bad)
