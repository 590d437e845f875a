"""Named outputs in a running topology: a route feeding several sinks, acks across them, copies, reload."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from components import GateSink, feed
from helpers import pipeline, wait_for

import agent.transforms.filter
import agent.transforms.route  # noqa: F401 - registers the types
from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.core.ack import AckStatus
from agent.core.batch import Batch, Kind
from agent.core.component import SinkContext
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology


class StampConfig(SinkConfig, tag="test_stamp"):
    """A sink that writes its id into every event it receives (as the elasticsearch sink sets @timestamp)."""


@register("sink", "test_stamp", StampConfig, "Test sink: changes the events it delivers.")
class StampSink:
    """Sets ``event["stamped_by"]`` and keeps the events."""

    mutates = True
    input_types = StampConfig.input_types
    events: ClassVar[dict[str, list[dict[str, Any]]]] = {}

    def __init__(self, config: StampConfig, ctx: BuildContext) -> None:
        self.id = ctx.component_id
        StampSink.events[self.id] = []

    async def healthcheck(self) -> None:
        return None

    async def run(self, ctx: SinkContext) -> None:
        while (batch := await ctx.inbox.get()) is not None:
            for event in batch.events:
                event["stamped_by"] = self.id
            StampSink.events[self.id].extend(batch.events)
            batch.finalize(AckStatus.DELIVERED)


EVENTS = [{"n": 1, "type": "audit"}, {"n": 2, "level": "ERROR"}, {"n": 3, "type": "audit", "level": "CRITICAL"},
          {"n": 4, "level": "INFO"}]
ROUTE = """  split:
    type: route
    inputs: [src]
    routes: {audit: 'type == "audit"', errors: 'level in ["ERROR", "CRITICAL"]'}
"""


def numbers(events: list[Any]) -> list[int]:
    return sorted(e["n"] for e in events)


def routed(tmp_path: Path, sinks: str, transforms: str = ROUTE) -> Topology:
    """EVENTS fed in two batches through ``transforms`` into ``sinks``."""
    name = feed([Batch([dict(e) for e in EVENTS[:2]], Kind.LOGS, 200),
                 Batch([dict(e) for e in EVENTS[2:]], Kind.LOGS, 200)])
    text = f"sources:\n  src: {{type: test_feed, name: {name}}}\ntransforms:\n{transforms}sinks:\n{sinks}"
    return Topology(pipeline(text, tmp_path), StatsRegistry())


async def test_a_route_feeds_three_sinks_and_the_source_commits_once_every_route_delivered(tmp_path: Path) -> None:
    topo = routed(tmp_path, """\
  audit: {type: test_gate, open: true, inputs: [split.audit]}
  errors: {type: test_gate, inputs: [split.errors]}
  rest: {type: test_gate, open: true, inputs: [split._unmatched]}
""")
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    await wait_for(lambda: len(GateSink.instances["audit"].events) == 2 and len(GateSink.instances["rest"].events) == 1)
    await asyncio.sleep(0.05)
    assert "committed_events" not in topo.nodes["src"].stats.gauges  # "errors" holds both batches
    GateSink.instances["errors"].gate.set()
    assert await asyncio.wait_for(run, 5) == 0
    assert topo.nodes["src"].stats.gauges["committed_events"] == 4
    assert numbers(GateSink.instances["audit"].events) == [1, 3]
    assert numbers(GateSink.instances["errors"].events) == [2, 3]
    assert numbers(GateSink.instances["rest"].events) == [4]
    assert topo.nodes["split"].stats.received_events == 4


async def test_routes_nobody_reads_are_released_as_delivered_and_counted(tmp_path: Path) -> None:
    topo = routed(tmp_path, """\
  audit: {type: test_gate, open: true, inputs: [split.audit]}
""")
    assert await asyncio.wait_for(topo.run(), 5) == 0
    assert topo.nodes["src"].stats.gauges["committed_events"] == 4
    assert numbers(GateSink.instances["audit"].events) == [1, 3]
    assert topo.nodes["split"].stats.discarded["no_consumer"] == 3  # 2 and 3 to errors, 4 to _unmatched


async def test_a_sink_that_changes_events_gets_copies_of_those_another_route_also_sent(tmp_path: Path) -> None:
    topo = routed(tmp_path, """\
  stamp: {type: test_stamp, inputs: [split.audit]}
  errors: {type: test_gate, open: true, inputs: [split.errors]}
""")
    assert await asyncio.wait_for(topo.run(), 5) == 0
    assert [e.get("stamped_by") for e in StampSink.events["stamp"]] == ["stamp", "stamp"]
    assert [e.get("stamped_by") for e in GateSink.instances["errors"].events] == [None, None]


async def test_a_sink_behind_a_filter_gets_copies_of_events_a_sibling_reads(tmp_path: Path) -> None:
    topo = routed(tmp_path, """\
  stamp: {type: test_stamp, inputs: [audits]}
  all: {type: test_gate, open: true, inputs: [src]}
""", """\
  audits: {type: filter, inputs: [src], condition: 'type == "audit"'}
""")
    assert await asyncio.wait_for(topo.run(), 5) == 0
    assert numbers(StampSink.events["stamp"]) == [1, 3]
    assert [e.get("stamped_by") for e in GateSink.instances["all"].events] == [None] * 4
    assert topo.nodes["audits"].stats.discarded["filtered"] == 2


async def test_reload_rewires_named_outputs_and_feeds_a_new_route_from_its_first_batch(tmp_path: Path) -> None:
    text = """
sources:
  gen: {{type: generate, format: json, rate: 4000, batch_size: 40}}
transforms:
  split: {{type: route, inputs: [gen], exclusive: true, routes: {{{routes}}}}}
sinks:
{sinks}
"""
    first = text.format(routes="errors: 'level == \"error\"'", sinks="""\
  e: {type: test_gate, open: true, inputs: [split.errors]}
  rest: {type: test_gate, open: true, inputs: [split._unmatched]}""")
    topo = Topology(pipeline(first, tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    await wait_for(lambda: len(GateSink.instances["rest"].events) >= 200)
    # the sinks' configs are unchanged: "e" is rewired to another output of a route that changed
    second = text.format(routes="errors: 'level == \"error\"', info: 'level == \"info\"'", sinks="""\
  e: {type: test_gate, open: true, inputs: [split.info]}
  x: {type: test_gate, open: true, inputs: [split.errors]}
  rest: {type: test_gate, open: true, inputs: [split._unmatched]}""")
    e_sink = GateSink.instances["e"]
    assert await topo.reload(pipeline(second, tmp_path)) == ["split", "x"]
    assert GateSink.instances["e"] is e_sink
    before = len(e_sink.events)
    await wait_for(lambda: len(e_sink.events) >= before + 200)
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0
    levels_after = {event["level"] for event in map(_decoded, e_sink.events[before:])}
    assert levels_after <= {"info", "error"} and "info" in levels_after
    assert {event["level"] for event in map(_decoded, GateSink.instances["x"].events)} == {"error"}
    received = sum(len(GateSink.instances[s].events) for s in ("e", "x", "rest"))
    assert received == topo.nodes["gen"].stats.sent_events  # every output read at all times: nothing dropped
    assert not topo.nodes["split"].stats.discarded


def _decoded(line: Any) -> dict[str, Any]:
    import orjson

    return orjson.loads(line) if isinstance(line, bytes) else line


async def test_reload_that_turns_a_transform_into_a_route_feeds_its_named_outputs(tmp_path: Path) -> None:
    text = """
sources:
  gen: {{type: generate, format: json, rate: 4000, batch_size: 40}}
transforms:
  split: {transform}
sinks:
  e: {{type: test_gate, open: true, inputs: [{input}]}}
"""
    first = text.format(transform="{type: filter, inputs: [gen], condition: 'true'}", input="split")
    topo = Topology(pipeline(first, tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    await wait_for(lambda: len(GateSink.instances["e"].events) >= 200)
    second = text.format(transform="{type: route, inputs: [gen], routes: {all: 'true'}}", input="split.all")
    await topo.reload(pipeline(second, tmp_path))
    e_sink = GateSink.instances["e"]
    before = len(e_sink.events)
    await wait_for(lambda: len(e_sink.events) >= before + 200)
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0
    assert not topo.nodes["split"].stats.discarded  # nothing went to an output nobody reads
