"""The stateful stages in a running topology: log_to_metric's timed flush, its metrics output type, and state
kept across a reload that does not change the stage (a changed stage starts afresh)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from components import GateSink, feed
from helpers import pipeline, wait_for

from agent.core.batch import Batch, Kind
from agent.core.errors import ConfigErrors
from agent.core.metric import Sample
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology

ALIVE = "  alive: {type: generate, format: text, rate: 1, batch_size: 1}\n"  # keeps the pipeline running
SINKS_ALIVE = "  idle: {type: blackhole, inputs: [alive]}\n"


def logs_feed(*events: dict[str, Any]) -> str:
    return feed([Batch(list(events), Kind.LOGS, 100 * len(events))])


def counter_values(sink: str) -> list[float]:
    return [s.value for s in GateSink.instances[sink].events if isinstance(s, Sample)]


def counting(feed_name: str, interval: str, sink: str) -> str:
    return f"""
sources:
  app: {{type: test_feed, name: {feed_name}}}
transforms:
  errors:
    type: log_to_metric
    inputs: [app]
    interval: {interval}
    metrics: [{{type: counter, name: errors_total, condition: 'level == "ERROR"'}}]
sinks:
  {sink}: {{type: test_gate, inputs: [errors], open: true}}
"""


async def test_log_to_metric_flushes_on_its_interval_and_once_more_at_the_drain(tmp_path: Path) -> None:
    app = logs_feed({"level": "ERROR"}, {"level": "INFO"}, {"level": "ERROR"})
    topo = Topology(pipeline(f"sources:\n{ALIVE}" + counting(app, "50ms", "ticked").replace("sources:\n", "")
                             + SINKS_ALIVE, tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await wait_for(lambda: "ticked" in GateSink.instances and len(counter_values("ticked")) >= 2)
    assert set(counter_values("ticked")) == {2.0}  # the cumulative count, sent every interval
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0
    # an interval longer than the run: only the flush at the drain sends what was counted
    topo = Topology(pipeline(counting(logs_feed({"level": "ERROR"}), "1h", "drained"), tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 5) == 0
    assert counter_values("drained") == [1.0]
    samples = GateSink.instances["drained"].events
    assert isinstance(samples[0], Sample) and samples[0].name == "errors_total" and samples[0].kind == "counter"


def test_log_to_metric_emits_metrics_for_metrics_sinks_only(tmp_path: Path) -> None:
    head = """
sources:
  app: {type: generate, format: json}
transforms:
  m: {type: log_to_metric, inputs: [app], metrics: [{type: counter, name: lines_total}]}
sinks:
"""
    pipeline(head + "  prom: {type: prometheus_remote_write, inputs: [m], url: 'http://127.0.0.1:9/write'}\n",
             tmp_path)
    with pytest.raises(ConfigErrors, match="accepts logs, but input \"m\" emits metrics"):
        pipeline(head + "  out: {type: file, inputs: [m], path: /tmp/x.ndjson}\n", tmp_path)
    with pytest.raises(ConfigErrors, match="accepts logs, but input \"node\" emits metrics"):
        pipeline(head.replace("inputs: [app]", "inputs: [node]").replace(
            "sources:\n", "sources:\n  node: {type: generate, format: metrics}\n") + "  b: {type: blackhole, inputs: [m]}\n",
            tmp_path)


async def test_a_reload_that_does_not_change_the_stages_keeps_their_state(tmp_path: Path) -> None:
    first = logs_feed(*({"service": "a", "n": n} for n in range(2)))
    stages = """
transforms:
  limit: {{type: throttle, inputs: [{inputs}], threshold: 3, window: 1h, key: service}}
  once: {{type: dedupe, inputs: [{inputs}], fields: [n]}}
  count:
    type: log_to_metric
    inputs: [{inputs}]
    interval: {interval}
    metrics: [{{type: counter, name: events_total, labels: {{service: service}}}}]
sinks:
  kept_{tag}: {{type: test_gate, inputs: [limit], open: true}}
  unique_{tag}: {{type: test_gate, inputs: [once], open: true}}
  metrics_{tag}: {{type: test_gate, inputs: [count], open: true}}
"""
    text = f"sources:\n{ALIVE}  one: {{type: test_feed, name: {first}}}\n" + stages.format(
        inputs="one", interval="1h", tag="r") + SINKS_ALIVE
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await wait_for(lambda: "kept_r" in GateSink.instances and len(GateSink.instances["kept_r"].events) == 2)
    throttle, dedupe, counter = (topo.nodes[cid].component for cid in ("limit", "once", "count"))

    second = logs_feed(*({"service": "a", "n": n} for n in range(5)))
    changed = await topo.reload(pipeline(
        f"sources:\n{ALIVE}  one: {{type: test_feed, name: {first}}}\n  two: {{type: test_feed, name: {second}}}\n"
        + stages.format(inputs="one, two", interval="1h", tag="r") + SINKS_ALIVE, tmp_path))
    assert changed == ["two"]  # wiring changed, the stages did not: the same instances run on
    assert [topo.nodes[cid].component for cid in ("limit", "once", "count")] == [throttle, dedupe, counter]
    await wait_for(lambda: all(topo.nodes[cid].stats.received_events == 7 for cid in ("limit", "once", "count"))
                   and len(GateSink.instances["unique_r"].events) == 5 and len(GateSink.instances["kept_r"].events) == 3)
    assert [e["n"] for e in GateSink.instances["kept_r"].events] == [0, 1, 0]  # 3 per window in all
    assert [e["n"] for e in GateSink.instances["unique_r"].events] == [0, 1, 2, 3, 4]  # 0 and 1 were seen
    assert topo.nodes["limit"].stats.discarded["throttled"] == 4
    assert topo.nodes["once"].stats.discarded["duplicate"] == 2

    # a changed stage starts afresh (its final flush sends what the old one held)
    third = logs_feed({"service": "a", "n": 9})
    await topo.reload(pipeline(
        f"sources:\n{ALIVE}  three: {{type: test_feed, name: {third}}}\n"
        + stages.format(inputs="three", interval="30m", tag="r") + SINKS_ALIVE, tmp_path))
    assert topo.nodes["count"].component is not counter and topo.nodes["limit"].component is throttle
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0
    assert counter_values("metrics_r") == [7.0, 1.0]
