"""Side by side on the metrics path: N node-exporter targets scraped every second, remote-written into a real
Prometheus, by Fluent Bit and by the agent, one after the other (``python -m agent.bench.versus.metrics``).

The targets serve one page captured from the real node exporter (``/usr/bin/prometheus-node-exporter``, started
once for it), from servers in this process on N ports, so that what the targets cost is charged to neither
side. Each run gets a fresh Prometheus (Debian's ``/usr/bin/prometheus``, ``--web.enable-remote-write-receiver``,
a temp TSDB, scraping nothing itself). The figure: the side's CPU seconds (utime + stime of the process and its
children) per million samples Prometheus appended (``prometheus_tsdb_head_samples_appended_total``), over a
window that starts after a warm-up. The agent also writes ``up`` and the other report series and relabels;
Fluent Bit's scrape does neither (its config adds ``job`` and ``instance`` with ``Add_Label``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from agent.bench.peers.lines import HOST
from agent.bench.versus.measure import cpu_seconds, peak_rss_mib
from agent.bench.versus.report import header, machine
from agent.bench.versus.sides import FluentBitMissing, find_fluent_bit, fluent_bit_version, free_port, stop_process
from agent.config.pipeline import load_texts

PROMETHEUS = Path("/usr/bin/prometheus")
NODE_EXPORTER = Path("/usr/bin/prometheus-node-exporter")
EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"
READY_S = 30.0  # how long a peer may take to answer its readiness check
APPENDED = "prometheus_tsdb_head_samples_appended_total"


@dataclass(slots=True)
class MetricsRun:
    """The figures of one side's run."""

    side: str
    repeat: int
    samples: int  # appended by Prometheus in the window
    window_s: float
    cpu_s: float
    peak_rss_mib: float

    @property
    def cpu_s_per_million(self) -> float:
        return self.cpu_s / self.samples * 1e6 if self.samples else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_s_per_million_samples": round(self.cpu_s_per_million, 3),
                "samples_per_s": round(self.samples / self.window_s)}


def _start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


async def _wait_ok(http: aiohttp.ClientSession, url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the peer for {url} exited with {process.returncode} before it answered")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {READY_S:g} s")


async def capture_page(http: aiohttp.ClientSession, workdir: Path) -> bytes:
    """One /metrics page of the real node exporter."""
    port = free_port()
    exporter = _start([str(NODE_EXPORTER), f"--web.listen-address={HOST}:{port}"], workdir / "node-exporter.log")
    try:
        url = f"http://{HOST}:{port}/metrics"
        await _wait_ok(http, url, exporter)
        async with http.get(url) as response:
            return await response.read()
    finally:
        stop_process(exporter)


async def serve_targets(page: bytes, count: int) -> tuple[list[int], web.AppRunner]:
    """``count`` servers on 127.0.0.1, each answering ``page`` on /metrics."""
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=page, headers={"Content-Type": EXPOSITION_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ports = [free_port() for _ in range(count)]
    for port in ports:
        await web.TCPSite(runner, HOST, port).start()
    return ports, runner


async def appended(http: aiohttp.ClientSession, prom_port: int) -> int:
    """Samples the Prometheus on ``prom_port`` has appended so far."""
    async with http.get(f"http://{HOST}:{prom_port}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(APPENDED):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def fluent_bit_config(template: Path, ports: list[int], prom_port: int) -> str:
    """``scrape-remote-write.conf`` for ``len(ports)`` targets: its [INPUT] and [OUTPUT] repeated per target, as
    its header comment says (tags node.t<i>, ``Add_Label instance fake-<i>``)."""
    sections: dict[str, str] = {}
    name = "preamble"
    for line in template.read_text().splitlines(keepends=True):
        if line.strip() in ("[SERVICE]", "[INPUT]", "[OUTPUT]"):
            name = line.strip()
        sections[name] = sections.get(name, "") + line
    parts = [sections["[SERVICE]"].replace("HTTP_Server  On", "HTTP_Server  Off")
             .replace("${FB_API_PORT}", "0")]  # no API needed: progress is Prometheus's
    for index, port in enumerate(ports):
        parts.append(sections["[INPUT]"].replace("${EXPORTER_PORT}", str(port)).replace("node.t0", f"node.t{index}"))
        parts.append(sections["[OUTPUT]"].replace("${PROM_PORT}", str(prom_port))
                     .replace("node.t0", f"node.t{index}").replace("fake-0", f"fake-{index}") + "\n")
    return "".join(parts)


def agent_config(ports: list[int], prom_port: int, data_dir: Path) -> str:
    """The agent's pipeline for the same work: one job scraping every target at 1 s, one remote-write sink."""
    doc = {"data_dir": str(data_dir), "api": {"address": f"{HOST}:{free_port()}"},
           "sources": {"node": {"type": "prometheus_scrape", "scrape_configs": [{
               "job_name": "node", "scrape_interval": "1s", "scrape_timeout": "1s",
               "static_configs": [{"targets": [f"{HOST}:{port}" for port in ports]}]}]}},
           "sinks": {"prom": {"type": "prometheus_remote_write", "inputs": ["node"],
                              "url": f"http://{HOST}:{prom_port}/api/v1/write",
                              "queue_config": {"batch_send_deadline": "1s"}}}}  # Fluent Bit's Flush 1
    text = "# the agent's equivalent of scrape-remote-write.conf, one job for every target\n" + yaml.safe_dump(doc)
    load_texts([(text, "<scrape_remote_write.yaml>")])  # ConfigErrors if the agent would refuse it
    return text


async def run_side(side: str, repeat: int, argv: list[str], env: dict[str, str], workdir: Path,
                   http: aiohttp.ClientSession, warmup: float, seconds: float) -> MetricsRun:
    """A fresh Prometheus, then the side for ``warmup + seconds``; the window is the last ``seconds``."""
    prom_port = int(env["PROM_PORT"])
    store = workdir / f"prom-{side}-{repeat}"
    store.mkdir()
    (store / "prometheus.yml").write_text("global: {scrape_interval: 1m}\nscrape_configs: []\n")
    prometheus = _start([str(PROMETHEUS), f"--config.file={store / 'prometheus.yml'}",
                         f"--storage.tsdb.path={store / 'data'}", f"--web.listen-address={HOST}:{prom_port}",
                         "--web.enable-remote-write-receiver"], store / "prometheus.log")
    process = None
    try:
        await _wait_ok(http, f"http://{HOST}:{prom_port}/-/ready", prometheus)
        process = _start(argv, workdir / f"{side}-{repeat}.log", env)
        await asyncio.sleep(warmup)
        if process.poll() is not None:
            raise RuntimeError(f"{side} exited with {process.returncode}: see {workdir / f'{side}-{repeat}.log'}")
        cpu0, count0, t0 = cpu_seconds(process.pid), await appended(http, prom_port), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, count1, t1 = cpu_seconds(process.pid), await appended(http, prom_port), time.monotonic()
        return MetricsRun(side, repeat, count1 - count0, t1 - t0, cpu1 - cpu0, peak_rss_mib(process.pid))
    finally:
        if process is not None:
            stop_process(process)
        stop_process(prometheus)


async def compare(targets: int, warmup: float, seconds: float, repeats: int, workdir: Path) -> list[MetricsRun]:
    """Both sides, alternating which goes first, ``repeats`` times each."""
    binary, configs = find_fluent_bit()
    runs: list[MetricsRun] = []
    async with aiohttp.ClientSession() as http:
        page = await capture_page(http, workdir)
        _say(f"node exporter page: {len(page):,} B, {sum(1 for x in page.splitlines() if x[:1] not in b'#')} samples")
        ports, runner = await serve_targets(page, targets)
        try:
            for repeat in range(1, repeats + 1):
                order = ("fluent-bit", "agent") if repeat % 2 else ("agent", "fluent-bit")
                for side in order:
                    prom_port = free_port()
                    env = {**os.environ, "PROM_PORT": str(prom_port)}
                    if side == "fluent-bit":
                        conf = workdir / f"fb-{repeat}.conf"
                        conf.write_text(fluent_bit_config(configs / "scrape-remote-write.conf", ports, prom_port))
                        argv = [str(binary), "-c", str(conf)]
                    else:
                        conf = workdir / f"agent-{repeat}.yaml"
                        data = workdir / f"agent-data-{repeat}"
                        data.mkdir()
                        conf.write_text(agent_config(ports, prom_port, data))
                        argv = [sys.executable, "-m", "agent", "run", "-c", str(conf)]
                    run = await run_side(side, repeat, argv, env, workdir, http, warmup, seconds)
                    _say(f"{side} #{repeat}: {run.cpu_s_per_million:.2f} CPU s per million samples, "
                         f"{run.samples / run.window_s:,.0f} samples/s, peak RSS {run.peak_rss_mib:.0f} MiB")
                    runs.append(run)
        finally:
            await runner.cleanup()
    return runs


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vs_fluent_bit_metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the window (default 10)")
    parser.add_argument("--seconds", type=float, default=40.0, help="the measured window (default 40)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for binary in (PROMETHEUS, NODE_EXPORTER):
        if not binary.exists():
            _say(f"{binary} is missing: apt-get install prometheus prometheus-node-exporter (make test does)")
            return 69
    try:
        version = fluent_bit_version(find_fluent_bit()[0])
    except FluentBitMissing as exc:
        _say(str(exc))
        return 69
    info = machine(version, ["benchmarks/vs_fluent_bit_metrics.py", *(sys.argv[1:] if argv is None else argv)])
    _say(header(info))
    with tempfile.TemporaryDirectory(prefix="vs-metrics-") as tmp:
        runs = asyncio.run(compare(args.targets, args.warmup, args.seconds, args.repeats, Path(tmp)))
    sides = {side: [r for r in runs if r.side == side] for side in ("fluent-bit", "agent")}
    medians = {side: _median([r.cpu_s_per_million for r in rs]) for side, rs in sides.items()}
    if args.json:
        print(json.dumps({**info, "runs": [r.to_dict() for r in runs], "median_cpu_s_per_million": medians}))
    else:
        for side, value in medians.items():
            rss = max(r.peak_rss_mib for r in sides[side])
            print(f"{side:11s} {value:7.2f} CPU s per million samples (median of {len(sides[side])}), peak RSS "
                  f"{rss:.0f} MiB")
        print(f"ratio agent/FB {medians['agent'] / medians['fluent-bit']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
