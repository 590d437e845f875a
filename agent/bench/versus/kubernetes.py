"""tail -> kubernetes side by side: Fluent Bit's kubernetes filter and the agent's ``kubernetes`` transform.

``python -m agent.bench.versus.kubernetes`` (or ``benchmarks/vs_fluent_bit_kubernetes.py``) starts the fake
API server (:mod:`agent.bench.peers.kubernetes`: ``tests/fakes/kubernetes.py`` serving ``--pods`` realistic
pods of one node, ~6 KB each), names one log file after each pod's first container as the kubelet does
(``<pod>_<namespace>_<container>-<64 hex>.log``) and writes ``--lines`` Docker json-file lines over them
(:func:`~agent.bench.peers.kubernetes.write_pod_logs`: the lines of ``vs_fluent_bit.py``). Then, ``--repeats``
times, each side against a fresh fake (so its request log is that side's alone), in rotating order:

* ``fluent-bit``: tail (docker parser, ``Tag kube.*``) -> kubernetes filter (``Kube_URL`` the fake, a
  token file, ``Labels``/``Annotations On``, ``Merge_Log Off``, ``Use_Kubelet Off``) -> null;
* ``agent``: tail (docker) -> ``kubernetes`` (a kubeconfig naming the fake and the token file; labels and
  annotations, no merge_log) -> blackhole;
* ``agent-tail``: tail (docker) -> blackhole, the same run's yardstick for the issue's target of at most
  15 % more CPU with the kubernetes stage than without.

Each run is measured as ``vs_fluent_bit.py`` measures (:func:`agent.bench.versus.run.measure`: CPU from
``/proc`` every 20 ms, the steady window from 5 % read to all delivered, peak RSS), and the fake says how
many API requests of each kind the side made (``list pods``, ``watch pods``, ``get pods`` ...); a side whose
requests failed (a status >= 400) fails the run. The agent's metadata misses by reason are read from its
``/metrics`` once all is delivered and printed with a warning above 1 % of the events (its CPU figure is then
that of a partial enrichment). The summary is each side's medians and the ratios agent / Fluent Bit and
agent / agent-tail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from agent.bench.peers import PeerError
from agent.bench.peers.kubernetes import NODE, PODS, TOKEN, FakeApiServer, kubeconfig, write_pod_logs
from agent.bench.peers.lines import HOST
from agent.bench.scenarios.common import BenchError
from agent.bench.versus.data import warm
from agent.bench.versus.report import AGENT, FB, header, machine
from agent.bench.versus.run import RunResult, measure
from agent.bench.versus.sides import (
    FluentBitMissing,
    Launch,
    Scenario,
    find_fluent_bit,
    fluent_bit_service,
    fluent_bit_version,
    free_port,
)
from agent.config.pipeline import load_texts

AGENT_TAIL = "agent-tail"
SIDES = (FB, AGENT, AGENT_TAIL)
SCENARIOS = {
    FB: Scenario("tail_kubernetes_null", "tail (docker) -> kubernetes filter -> null", "(generated)", "null.0",
                 receiver=False),
    AGENT: Scenario("tail_kubernetes_blackhole", "tail (docker) -> kubernetes -> blackhole", "(generated)",
                    "null.0", receiver=False),
    AGENT_TAIL: Scenario("tail_blackhole", "tail (docker) -> blackhole", "(generated)", "null.0", receiver=False),
}
MEDIANS = ("steady_cpu_s_per_million", "delivered_cpu_s_per_million", "whole_cpu_s_per_million",
           "steady_events_per_s", "peak_rss_mib")
MISSES_ALLOWED = 0.01  # more events than this share without metadata: the run's figure is flagged
TARGET_OVER_TAIL = 1.15  # the target: at most 15 % more CPU than tail -> blackhole


def tag_prefix(logs: Path) -> str:
    """Fluent Bit's ``Kube_Tag_Prefix`` for ``Tag kube.*`` on files in ``logs``: the path's dots-for-slashes."""
    return "kube." + str(logs).strip("/").replace("/", ".") + "."


def fluent_bit_config(logs: Path, parsers: Path, api_port: int, kube_url: str, token_file: Path,
                      ca_file: Path) -> str:
    """tail (docker parser) -> kubernetes filter (the fake, labels and annotations, no merge) -> null."""
    return fluent_bit_service(parsers, api_port) + f"""[INPUT]
    Name              tail
    Path              {logs / '*.log'}
    Tag               kube.*
    Parser            docker
    Read_from_Head    On
    Refresh_Interval  1
    File_Cache_Advise Off

[FILTER]
    Name              kubernetes
    Match             kube.*
    Kube_URL          {kube_url}
    Kube_Token_File   {token_file}
    Kube_CA_File      {ca_file}
    Kube_Tag_Prefix   {tag_prefix(logs)}
    Use_Kubelet       Off
    Labels            On
    Annotations       On
    Merge_Log         Off

[OUTPUT]
    Name   null
    Match  *
"""


def agent_config(logs: Path, data_dir: Path, api_port: int, kubeconfig_path: Path | None) -> str:
    """tail (docker) -> kubernetes (the fake through ``kubeconfig_path``) -> blackhole, or without the
    kubernetes stage when ``kubeconfig_path`` is None; checked by the agent's config loader."""
    source = {"type": "tail", "include": [str(logs / "*.log")], "format": "docker", "read_from": "beginning"}
    doc: dict[str, Any] = {"data_dir": str(data_dir), "api": {"address": f"{HOST}:{api_port}"},
                           "sources": {"in": source}}
    last = "in"
    if kubeconfig_path is not None:
        doc["transforms"] = {"k8s": {"type": "kubernetes", "inputs": ["in"], "kubeconfig": str(kubeconfig_path),
                                     "node_name": NODE, "labels": True, "annotations": True, "merge_log": False}}
        last = "k8s"
    doc["sinks"] = {"out": {"type": "blackhole", "inputs": [last]}}
    name = "tail_kubernetes_blackhole" if kubeconfig_path else "tail_blackhole"
    text = f"# {name}: the agent's side\n" + yaml.safe_dump(doc, sort_keys=False)
    load_texts([(text, f"<{name}.yaml>")])  # ConfigErrors if the agent would refuse it
    return text


@dataclass(frozen=True, slots=True)
class Cluster:
    """What every run shares: the log files, the token and CA files, Fluent Bit and its parsers."""

    logs: Path
    token_file: Path
    ca_file: Path
    binary: Path | None
    parsers: Path | None


def launch(side: str, cluster: Cluster, fake: FakeApiServer, workdir: Path, _sink_port: int | None) -> Launch:
    """How to start ``side`` against ``fake`` (``measure`` passes the receiver's port: there is none here)."""
    api_port = free_port()
    if side == FB:
        assert cluster.binary is not None and cluster.parsers is not None
        config = workdir / "tail-kubernetes-null.conf"
        config.write_text(fluent_bit_config(cluster.logs, cluster.parsers, api_port, fake.url, cluster.token_file,
                                             cluster.ca_file))
        return Launch(FB, [str(cluster.binary), "-c", str(config)], dict(os.environ),
                      f"http://{HOST}:{api_port}/api/v1/metrics", "null.0", reads_by_io=True)
    kube = None
    if side == AGENT:
        kube = workdir / "kubeconfig"
        kube.write_text(kubeconfig(fake.url, cluster.token_file))
    config = workdir / f"{SCENARIOS[side].name}.yaml"
    config.write_text(agent_config(cluster.logs, workdir / "agent-data", api_port, kube))
    argv, progress = [sys.executable, "-m", "agent", "run", "-c", str(config)], f"http://{HOST}:{api_port}"
    if side == AGENT_TAIL:
        return Launch(AGENT, argv, dict(os.environ), progress + "/api/v1/components", "out")
    return EnrichingLaunch(AGENT, argv, dict(os.environ), progress + "/api/v1/components", "out",
                           metrics_url=progress + "/metrics")


MISSES = "agent_kubernetes_metadata_misses_total"


@dataclass(frozen=True, slots=True)
class EnrichingLaunch(Launch):
    """The agent with its kubernetes stage: once all is delivered, one read of its ``/metrics`` notes the
    metadata misses by reason in :attr:`misses` (a few milliseconds of the agent's CPU, in the last sample)."""

    metrics_url: str = ""
    misses: dict[str, int] = field(default_factory=dict)

    async def poll(self, http: aiohttp.ClientSession) -> tuple[int, int] | None:
        counts = await Launch.poll(self, http)
        if counts is not None and counts[1] and counts[0] == counts[1] and not self.misses:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(self.metrics_url, timeout=aiohttp.ClientTimeout(total=5.0)) as response:
                    self.misses.update(parse_misses(await response.text()))
        return counts


def parse_misses(text: str) -> dict[str, int]:
    """``agent_kubernetes_metadata_misses_total`` of a /metrics page by reason (``{"total": 0}`` if none)."""
    out: dict[str, int] = {"total": 0}
    for line in text.splitlines():
        if line.startswith(MISSES + "{"):
            labels, _, value = line.rpartition(" ")
            reason = labels.split('reason="', 1)[1].split('"', 1)[0] if 'reason="' in labels else "?"
            out[reason] = out.get(reason, 0) + int(float(value))
            out["total"] += int(float(value))
    return out


@dataclass(slots=True)
class KubernetesRun:
    """One side's run: the measured figures and the API requests the fake saw."""

    side: str
    result: RunResult
    requests: dict[str, int] = field(default_factory=dict)
    misses: dict[str, int] | None = None  # the agent's metadata misses by reason (None: not the agent's stage)

    def to_dict(self) -> dict[str, Any]:
        return {**self.result.to_dict(), "side": self.side, "api_requests": self.requests, "misses": self.misses,
                "api_requests_total": sum(n for k, n in self.requests.items() if not k.startswith(("status",
                                                                                                   "unauth")))}


def _prepare(workdir: Path, logs: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    warm(sorted(logs.iterdir()))  # from the page cache, for every side alike


async def run_side(side: str, cluster: Cluster, pods: int, lines: int, line_bytes: float, workdir: Path,
                   repeat: int) -> KubernetesRun:
    """``side`` once against a fresh fake serving ``pods`` pods: its figures and requests."""
    _prepare(workdir, cluster.logs)
    async with await FakeApiServer.start(pods, cluster.token_file, TOKEN) as fake:
        launched: list[Launch] = []

        def make(sink_port: int | None) -> Launch:
            launched.append(launch(side, cluster, fake, workdir, sink_port))
            return launched[-1]

        result = await measure(make, SCENARIOS[side], lines, line_bytes, workdir, repeat)
        result.side = side
        requests = await fake.requests()
    failed = {k: n for k, n in requests.items()
              if k.startswith("status ") and int(k.split()[1]) >= 400}  # status 0: the client left, as at its stop
    if side != AGENT_TAIL and (failed or not requests):
        raise BenchError(f"{side}: the API server answered {failed or 'no request'}: the events were not all "
                         f"enriched, see {workdir}")
    misses = launched[-1].misses if isinstance(launched[-1], EnrichingLaunch) else None
    if misses is not None and not misses:
        raise BenchError(f"{side}: no count of metadata misses could be read from the agent's /metrics")
    return KubernetesRun(side, result, requests, misses)


def _median(values: list[Any]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summary(runs: list[KubernetesRun]) -> dict[str, Any]:
    """Each side's medians (and its API requests of each run), the ratios agent / Fluent Bit and agent /
    agent-tail of the medians, and whether the agent met the target over tail -> blackhole."""
    out: dict[str, Any] = {}
    for side in SIDES:
        mine = [r.to_dict() for r in runs if r.side == side]
        if mine:
            out[side] = {"repeats": len(mine), **{k: _median([d[k] for d in mine]) for k in MEDIANS},
                         "api_requests": [d["api_requests"] for d in mine], "misses": [d["misses"] for d in mine]}
    for other, name in ((FB, "agent_over_fluent_bit"), (AGENT_TAIL, "agent_over_tail")):
        if AGENT in out and other in out:
            out[name] = {k: _ratio(out[AGENT][k], out[other][k]) for k in MEDIANS}
    if "agent_over_tail" in out and (ratio := out["agent_over_tail"]["steady_cpu_s_per_million"]) is not None:
        out["agent_over_tail"]["target"] = TARGET_OVER_TAIL
        out["agent_over_tail"]["met"] = ratio <= TARGET_OVER_TAIL
    return out


def table(runs: list[KubernetesRun], summarised: dict[str, Any]) -> str:
    """Every run, each side's medians, the ratios, as plain aligned lines."""
    def num(value: float | None, spec: str = ".2f") -> str:
        return "n/a" if value is None else format(value, spec)

    def requests(counts: dict[str, int]) -> str:
        return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"

    rows: list[tuple[str, ...]] = [("process", "CPU s/M (steady)", "CPU s/M (5% deliv.)", "CPU s/M (whole)",
                                    "events/s", "RSS MiB", "API requests")]
    for r in runs:
        d = r.to_dict()
        rows.append((f"{r.side} #{r.result.repeat + 1}", num(d["steady_cpu_s_per_million"]),
                     num(d["delivered_cpu_s_per_million"]), num(d["whole_cpu_s_per_million"]),
                     num(d["steady_events_per_s"], ",.0f"), num(d["peak_rss_mib"], ".0f"),
                     requests(r.requests) + ("" if r.misses is None else f"; misses {r.misses}")))
    for side in SIDES:
        if side in summarised:
            s = summarised[side]
            rows.append((f"{side} (median)", num(s["steady_cpu_s_per_million"]),
                         num(s["delivered_cpu_s_per_million"]), num(s["whole_cpu_s_per_million"]),
                         num(s["steady_events_per_s"], ",.0f"), num(s["peak_rss_mib"], ".0f"), ""))
    for key, label in (("agent_over_fluent_bit", "ratio agent/FB"), ("agent_over_tail", "ratio agent/agent-tail")):
        if key in summarised:
            s = summarised[key]
            rows.append((label, *(num(s[k]) + "x" if s[k] is not None else "n/a" for k in MEDIANS), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1],
                                                                                  strict=True)), row[-1]])
             for row in rows]
    for r in runs:
        if r.misses and r.misses["total"] > r.result.events * MISSES_ALLOWED:
            lines.append(f"WARNING: {r.side} #{r.result.repeat + 1} left {r.misses['total']:,} of {r.result.events:,} "
                         f"events without pod metadata ({r.misses}): its CPU is that of a partial enrichment")
    if "met" in summarised.get("agent_over_tail", {}):
        s = summarised["agent_over_tail"]
        lines.append(f"target: the kubernetes stage costs at most {s['target']:.2f}x tail -> blackhole's steady CPU: "
                     f"{'met' if s['met'] else 'NOT met'} ({s['steady_cpu_s_per_million']:.2f}x)")
    lines.append("CPU = utime+stime of the process (/proc/<pid>/stat) per million events; steady = from 5 % of the "
                 "lines read to the last delivered; API requests: what the fake API server recorded of that run")
    return "\n".join(lines)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_all(sides: list[str], cluster_dir: Path, pods: int, lines: int, repeats: int, binary: Path | None,
                  configs: Path | None, say: Callable[[str], None] = _say) -> tuple[list[KubernetesRun], list[str]]:
    """Write the logs (named after the fake's pods), then every side ``repeats`` times in rotating order."""
    logs = cluster_dir / "logs"
    logs.mkdir(parents=True)
    token_file, ca_file = cluster_dir / "token", cluster_dir / "ca.crt"
    token_file.write_text(TOKEN)  # no newline, as the kubelet writes it: Fluent Bit sends the file verbatim
    ca_file.write_text("not used: the fake speaks plain http\n")  # Fluent Bit wants the file to exist
    async with await FakeApiServer.start(pods, token_file, TOKEN) as fake:
        pod_list = await fake.pods()
    _, nbytes = write_pod_logs(logs, lines, pod_list)
    say(f"{lines:,} lines over {len(pod_list)} pods' files, {nbytes / 2**20:,.1f} MiB")
    cluster = Cluster(logs, token_file, ca_file, binary, configs / "parsers.conf" if configs else None)
    runs: list[KubernetesRun] = []
    failures: list[str] = []
    for repeat in range(repeats):
        order = sides[repeat % len(sides):] + sides[:repeat % len(sides)]
        for side in order:
            try:
                run = await run_side(side, cluster, pods, lines, nbytes / lines,
                                     cluster_dir / "runs" / f"{side}-{repeat}", repeat)
            except (BenchError, PeerError) as exc:
                failures.append(f"{side} #{repeat + 1}: {exc}")
                say(f"error: {failures[-1]}")
                continue
            runs.append(run)
            d = run.to_dict()
            say(f"{side} #{repeat + 1}: {d['steady_cpu_s_per_million']} CPU s/M (steady), "
                f"{d['whole_cpu_s_per_million']} (whole run), {d['steady_events_per_s']} events/s, "
                f"API requests {run.requests}")
    return runs, failures


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; the exit code (69 when Fluent Bit is wanted and missing, 1 when a run failed)."""
    argv = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(prog="vs_fluent_bit_kubernetes", description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--pods", type=int, default=PODS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout instead of the table")
    args = parser.parse_args(argv[1:])
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not sides or any(s not in SIDES for s in sides) or args.lines < 100 or args.pods < 1 or args.repeats < 1 \
            or args.lines < args.pods:
        _say(f"error: --sides of {', '.join(SIDES)}; --lines >= 100 and >= --pods; --pods, --repeats >= 1")
        return 2
    binary = configs = None
    version = "Fluent Bit not run"
    if FB in sides:
        try:
            binary, configs = find_fluent_bit()
        except FluentBitMissing as exc:
            _say(f"error: {exc}")
            return 69
        version = f"{fluent_bit_version(binary)} ({binary})"
    info = machine(version, argv)
    _say(header(info))
    with tempfile.TemporaryDirectory(prefix="agent-vs-fb-kubernetes-") as tmp:
        runs, failures = asyncio.run(run_all(sides, Path(tmp), args.pods, args.lines, args.repeats, binary, configs))
    with contextlib.suppress(OSError):
        info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    summarised = summary(runs)
    if args.json:
        print(json.dumps({**info, "lines": args.lines, "pods": args.pods, "runs": [r.to_dict() for r in runs],
                          "summary": summarised, "failures": failures}, indent=1))
    else:
        print(header(info))
        print(table(runs, summarised))
        for failure in failures:
            print(f"FAILED: {failure.splitlines()[0]}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
