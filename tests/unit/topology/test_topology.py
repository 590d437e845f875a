"""The running topology in-process: backpressure, acks, fan-out, drain and reload."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from components import CrashSink, GateSink, feed
from helpers import pipeline, wait_for

from agent.core.batch import Batch, Kind
from agent.core.errors import AgentError, BuildError, StartupError
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology


def stats(topology: Topology, cid: str):  # type: ignore[no-untyped-def]
    return topology.nodes[cid].stats


async def test_stalled_sink_stops_the_source_within_the_buffer_bound(tmp_path: Path) -> None:
    topo = Topology(pipeline("""
sources:
  gen: {type: generate, format: docker, batch_size: 100}
sinks:
  slow: {type: test_gate, inputs: [gen], buffer: {max_events: 1000, max_bytes: 50000}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await topo.ready.wait()
    await wait_for(lambda: stats(topo, "gen").sent_events > 0)
    peak_bytes = 0
    for _ in range(30):
        await asyncio.sleep(0.01)
        usage = topo.nodes["slow"].inbox.usage()  # type: ignore[union-attr]
        peak_bytes = max(peak_bytes, usage.bytes)
    sent = stats(topo, "gen").sent_events
    # the buffer (<= 50 kB, ~390 B a line) plus the one batch the sink holds and the one being put
    assert sent <= 50_000 // 300 + 2 * 100
    assert peak_bytes <= 50_000
    GateSink.instances["slow"].gate.set()
    await wait_for(lambda: stats(topo, "gen").sent_events > sent + 1000)
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0
    assert len(GateSink.instances["slow"].events) == stats(topo, "gen").sent_events


async def test_source_commits_only_after_the_sink_acknowledged(tmp_path: Path) -> None:
    topo = Topology(pipeline("""
sources:
  gen: {type: generate, count: 5000, batch_size: 500}
sinks:
  gate: {type: test_gate, inputs: [gen]}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: stats(topo, "gen").sent_events == 5000)
    await asyncio.sleep(0.05)
    assert "committed_events" not in stats(topo, "gen").gauges
    GateSink.instances["gate"].gate.set()
    assert await asyncio.wait_for(run, 5) == 0  # ends by itself: the only source finished
    assert stats(topo, "gen").gauges["committed_events"] == 5000


async def test_a_failing_sink_holds_the_commit_back_while_another_sink_delivers(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the sink wants a directory")
    topo = Topology(pipeline(f"""
sources:
  gen: {{type: generate, count: 2000, batch_size: 200}}
sinks:
  fast: {{type: blackhole, inputs: [gen]}}
  disk: {{type: file, inputs: [gen], path: "{blocker}/events.ndjson"}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: stats(topo, "fast").received_events == 2000)
    await wait_for(lambda: stats(topo, "disk").retries >= 2)
    assert "committed_events" not in stats(topo, "gen").gauges
    blocker.unlink()  # the disk comes back
    assert await asyncio.wait_for(run, 10) == 0
    assert stats(topo, "gen").gauges["committed_events"] == 2000
    assert len((blocker / "events.ndjson").read_bytes().splitlines()) == 2000


async def test_one_slow_sink_does_not_stall_another_until_its_buffer_fills(tmp_path: Path) -> None:
    topo = Topology(pipeline("""
sources:
  gen: {type: generate, count: 3000, batch_size: 100}
sinks:
  slow: {type: test_gate, inputs: [gen], buffer: {max_events: 10000}}
  fast: {type: blackhole, inputs: [gen]}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: stats(topo, "fast").received_events == 3000)
    assert GateSink.instances["slow"].events == []
    GateSink.instances["slow"].gate.set()
    assert await asyncio.wait_for(run, 5) == 0
    assert len(GateSink.instances["slow"].events) == 3000


async def test_drop_newest_counts_what_it_drops_and_delivers_the_rest(tmp_path: Path) -> None:
    topo = Topology(pipeline("""
sources:
  gen: {type: generate, count: 5000, batch_size: 100}
sinks:
  slow: {type: test_gate, inputs: [gen], buffer: {max_events: 1000, when_full: drop_newest}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: stats(topo, "gen").sent_events == 5000)
    GateSink.instances["slow"].gate.set()
    assert await asyncio.wait_for(run, 5) == 0
    delivered = len(GateSink.instances["slow"].events)
    dropped = stats(topo, "slow").discarded["buffer_full"]
    assert dropped > 0
    assert delivered + dropped == 5000
    assert stats(topo, "gen").gauges["committed_events"] == 5000


async def test_stop_drains_queued_events_into_the_file(tmp_path: Path) -> None:
    out = tmp_path / "out.ndjson"
    topo = Topology(pipeline(f"""
sources:
  gen: {{type: generate, format: json, batch_size: 1000}}
transforms:
  parsed: {{type: parse, inputs: [gen]}}
sinks:
  disk: {{type: file, inputs: [parsed], path: "{out}"}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: stats(topo, "gen").sent_events >= 20_000)
    topo.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    assert len(out.read_bytes().splitlines()) == stats(topo, "gen").sent_events


async def test_shutdown_timeout_cancels_a_stuck_sink_and_exits_1(tmp_path: Path) -> None:
    topo = Topology(pipeline("""
sources:
  gen: {type: generate, count: 300, batch_size: 100}
sinks:
  stuck: {type: test_gate, inputs: [gen]}
""", tmp_path, shutdown_timeout="200ms"), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: stats(topo, "gen").sent_events == 300)
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 1
    assert "committed_events" not in stats(topo, "gen").gauges
    assert stats(topo, "stuck").discarded["shutdown_timeout"] > 0


async def test_reload_swaps_a_changed_sink_without_losing_or_restarting_the_rest(tmp_path: Path) -> None:
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    text = """
sources:
  gen: {{type: generate, format: text, rate: 5000, batch_size: 100}}
sinks:
  disk: {{type: file, inputs: [gen], encoding: text, path: "{path}"}}
  count: {{type: blackhole, inputs: [gen]}}
"""
    topo = Topology(pipeline(text.format(path=first), tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: stats(topo, "gen").sent_events >= 500)
    source_task = topo.nodes["gen"].task
    blackhole_task = topo.nodes["count"].task
    changed = await topo.reload(pipeline(text.format(path=second), tmp_path))
    assert changed == ["disk"]
    assert topo.nodes["gen"].task is source_task and topo.nodes["count"].task is blackhole_task
    await wait_for(lambda: second.exists() and len(second.read_bytes().splitlines()) >= 200)
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0
    written = len(first.read_bytes().splitlines()) + len(second.read_bytes().splitlines())
    assert written == stats(topo, "gen").sent_events == stats(topo, "count").received_events


async def test_reload_that_fails_to_build_leaves_the_pipeline_untouched(tmp_path: Path) -> None:
    text = """
sources:
  gen: {{type: generate, rate: 1000}}
sinks:
  out: {{type: socket, inputs: [gen], address: "{address}"}}
"""
    topo = Topology(pipeline(text.format(address="127.0.0.1:9"), tmp_path, "200ms"), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await topo.ready.wait()
    sink_task = topo.nodes["out"].task
    with pytest.raises(BuildError):
        await topo.reload(pipeline(text.format(address="no-port"), tmp_path))
    assert topo.nodes["out"].task is sink_task and not sink_task.done()  # type: ignore[union-attr]
    topo.request_stop()
    await asyncio.wait_for(run, 5)


async def test_reload_adds_and_removes_components(tmp_path: Path) -> None:
    out = tmp_path / "added.ndjson"
    topo = Topology(pipeline("""
sources:
  gen: {type: generate, rate: 2000, batch_size: 50}
sinks:
  old: {type: blackhole, inputs: [gen]}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0)
    await wait_for(lambda: stats(topo, "old").received_events > 100)
    changed = await topo.reload(pipeline(f"""
sources:
  gen: {{type: generate, rate: 2000, batch_size: 50}}
transforms:
  parsed: {{type: parse, inputs: [gen]}}
sinks:
  new: {{type: file, inputs: [parsed], path: "{out}"}}
""", tmp_path))
    assert changed == ["new", "old", "parsed"]
    assert set(topo.nodes) == {"gen", "parsed", "new"}
    await wait_for(lambda: out.exists() and len(out.read_bytes().splitlines()) > 100)
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0


def feed_of(batches: int, size: int) -> str:
    return feed([Batch([{"n": b * size + i} for i in range(size)], Kind.LOGS, size * 10) for b in range(batches)])


async def test_a_crashing_sink_is_restarted_with_its_batches_and_the_agent_keeps_running(tmp_path: Path) -> None:
    CrashSink.forget("flaky")
    name = feed_of(10, 100)
    topo = Topology(pipeline(f"""
sources:
  in: {{type: test_feed, name: {name}}}
sinks:
  flaky: {{type: test_crash, inputs: [in], crash_on: [2, 3]}}
  steady: {{type: blackhole, inputs: [in]}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await wait_for(lambda: topo.nodes.get("flaky") is not None and topo.nodes["flaky"].crashes == 2, 10)
    assert [d["id"] for d in topo.degraded()] == ["flaky"]
    assert await asyncio.wait_for(run, 15) == 0
    # the batch in hand at each crash went back to the inbox: every event once, in order
    assert CrashSink.delivered["flaky"] == [{"n": n} for n in range(1000)]
    assert stats(topo, "in").gauges["committed_events"] == 1000
    assert stats(topo, "flaky").errors[("component_crashed", "running")] == 2


async def test_a_start_failure_is_one_startup_error_naming_the_component(tmp_path: Path) -> None:
    CrashSink.forget("port")
    topo = Topology(pipeline("""
sources:
  gen: {type: generate, rate: 10}
sinks:
  port: {type: test_crash, inputs: [gen], fail_start: 1}
""", tmp_path), StatsRegistry())
    with pytest.raises(StartupError, match=r'sink "port" could not start: .*Address already in use'):
        await asyncio.wait_for(topo.run(), 5)


async def test_a_component_added_by_reload_whose_start_fails_is_retried(tmp_path: Path) -> None:
    CrashSink.forget("later")
    text = """
sources:
  gen: {type: generate, rate: 2000, batch_size: 50}
sinks:
  first: {type: blackhole, inputs: [gen]}
"""
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    await topo.reload(pipeline(text + "  later: {type: test_crash, inputs: [gen], fail_start: 1}\n", tmp_path))
    assert topo.start_failures == {"later": 'sink "later" could not start: [Errno 98] Address already in use'}
    await wait_for(lambda: len(CrashSink.delivered.get("later", [])) > 100, 10)
    assert topo.nodes["later"].crashes == 1 and CrashSink.starts["later"] == 2
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0


async def test_a_reload_during_the_drain_is_refused_and_the_drain_ends(tmp_path: Path) -> None:
    text = """
sources:
  gen: {type: generate, count: 2000, batch_size: 100}
sinks:
  slow: {type: test_gate, inputs: [gen]}
"""
    topo = Topology(pipeline(text, tmp_path, "3s"), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await wait_for(lambda: topo.nodes.get("gen") is not None and stats(topo, "gen").sent_events >= 100)
    topo.request_stop()  # the drain waits for the gated sink
    await asyncio.sleep(0.05)
    added = text + "  added: {type: blackhole, inputs: [gen]}\n"
    with pytest.raises(AgentError, match="stopping"):
        await topo.reload(pipeline(added, tmp_path))
    GateSink.instances["slow"].gate.set()
    assert await asyncio.wait_for(run, 10) == 0  # not the shutdown_timeout exit: every inbox was closed
    assert "added" not in topo.nodes


async def test_a_batch_that_crashes_a_sink_three_times_in_a_row_is_dropped_counted_and_the_rest_flows(
        tmp_path: Path) -> None:
    CrashSink.forget("poisoned")
    name = feed_of(5, 100)
    topo = Topology(pipeline(f"""
sources:
  in: {{type: test_feed, name: {name}}}
sinks:
  poisoned: {{type: test_crash, inputs: [in], crash_on: [2, 3, 4]}}
""", tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 15) == 0
    # batches 1, 3, 4, 5 arrive; batch 2 (taken as #2, #3 and #4) crashed the sink three times and was given up
    assert CrashSink.delivered["poisoned"] == [{"n": n} for n in [*range(100), *range(200, 500)]]
    assert stats(topo, "poisoned").discarded["crashed_component"] == 100
    assert stats(topo, "in").gauges["committed_events"] == 500  # given up, not stuck: the source moves on
