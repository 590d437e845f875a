"""The kubernetes scenario: tail -> kubernetes -> blackhole, the pods served by the fake API server in another
process (:mod:`agent.bench.peers.kubernetes`: a source checkout's ``tests/fakes/kubernetes.py``)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from agent.bench.peers.kubernetes import NODE, PODS, TOKEN, FakeApiServer, kubeconfig, write_pod_logs
from agent.bench.scenarios.common import (
    BenchError,
    Meter,
    ProgressFn,
    Result,
    _pipeline,
    _progress,
    _sink_stats,
    _stop_agent,
    _wait_until,
)
from agent.bench.scenarios.tail import _read_lines
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.topology.running import Topology


def _misses(stats: ComponentStats) -> dict[str, int]:
    """The stage's ``metadata_misses`` by reason."""
    out: dict[str, int] = {}
    for (name, labels), n in stats.counters.items():
        if name == "metadata_misses":
            reason = dict(labels).get("reason", "?")
            out[reason] = out.get(reason, 0) + n
    return out


def _prepare(tmp: Path) -> tuple[Path, Path]:
    logs, token = tmp / "containers", tmp / "token"
    logs.mkdir()
    token.write_text(TOKEN)
    return logs, token


async def tail_kubernetes_to_blackhole(lines: int, progress: ProgressFn | None = None) -> Result:
    """tail (Docker json-file lines in one kubelet-named file per pod of the node) -> kubernetes (the fake's
    110 pods, one list + watch) -> blackhole. The clock starts with the agent, as at a restart with files to
    catch up on: lines read before the pod cache has synced are counted as misses, reported with the result."""
    name = "tail_kubernetes_to_blackhole"
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        logs, token = _prepare(Path(tmp))
        async with await FakeApiServer.start(PODS, token, TOKEN) as fake:
            _, nbytes = await asyncio.to_thread(write_pod_logs, logs, lines, await fake.pods())
            listed = await fake.requests()  # this harness's own list, not the agent's
            kube = Path(tmp) / "kubeconfig"
            kube.write_text(kubeconfig(fake.url, token))
            source: dict[str, Any] = {"type": "tail", "include": [str(logs / "*.log")], "format": "docker",
                                      "read_from": "beginning"}
            stage = {"type": "kubernetes", "inputs": ["in"], "kubeconfig": str(kube), "node_name": NODE}
            pipeline = _pipeline(name, tmp, {"in": source}, {"out": {"type": "blackhole", "inputs": ["k8s"]}},
                                 {"k8s": stage})
            stats = StatsRegistry()
            source_stats, sink_stats = stats.get("in", "source", "tail"), _sink_stats(stats, pipeline)
            stage_stats = stats.get("k8s", "transform", "kubernetes")

            def describe() -> str:
                return (f"{name}: expected {lines} events; source read {_read_lines(source_stats)} lines, sink sent "
                        f"{sink_stats.sent_events}; misses {_misses(stage_stats)}")

            topology = Topology(pipeline, stats)
            meter = Meter()
            agent = asyncio.create_task(topology.run(), name="bench-agent")
            try:
                async with _progress(lambda: sink_stats.sent_events, progress):
                    await _wait_until(lambda: sink_stats.sent_events >= lines,
                                      lambda: _read_lines(source_stats) + sink_stats.sent_events, agent, describe)
                    result = meter.stop(name, lines, nbytes)
            finally:
                await _stop_agent(topology, agent)
            requests = {k: n - listed.get(k, 0) for k, n in (await fake.requests()).items() if n > listed.get(k, 0)}
        problems = []
        if agent.cancelled() or agent.result() != 0:
            problems.append("agent cancelled" if agent.cancelled() else f"agent exit code {agent.result()}")
        if _read_lines(source_stats) != lines or sink_stats.sent_events != lines:
            problems.append("events missing or duplicated")
        if source_stats.errors or stage_stats.errors:
            problems.append(f"errors {dict(source_stats.errors)} {dict(stage_stats.errors)}")
        if problems:
            raise BenchError(f"{'; '.join(problems)}: {describe()}")
        misses = _misses(stage_stats)
        result.extra = {"lines": lines, "pods": PODS, "api_requests": requests, "metadata_misses": sum(misses.values()),
                        "metadata_misses_by_reason": misses}
        return result
