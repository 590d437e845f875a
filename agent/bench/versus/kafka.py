"""Side by side on the Kafka output: Fluent Bit's ``kafka`` output and the agent's ``kafka`` sink, the same file
into the same kind of broker, one after the other (``benchmarks/vs_fluent_bit_kafka.py``).

``--lines`` distinct 200-byte lines are written to one file, once (and read with ``cat`` before each run, so
the page cache holds it). Each run gets a fresh tansu broker (``agent.bench.peers.tansu``, its own process)
with a topic of :data:`PARTITIONS` partitions, then starts one side on it: Fluent Bit (``tail`` from the head,
``kafka`` with ``format raw`` of the ``log`` key, lz4, acks all, linger 5 ms: librdkafka's defaults otherwise)
or ``agent run`` (``tail`` raw from the beginning, ``kafka`` with ``encoding: raw``, lz4, acks all, its default
linger of 5 ms). Either way each line becomes one 200-byte record. The harness polls the broker for the records
it holds (every ~50 ms) and the side's CPU (utime + stime, from ``/proc``); the run ends when every line is in
the broker (more or fewer fails the run).

Figures: CPU seconds per million records over the whole run (exec to the last record, start-up included) and
over the window from 5 % of the records in the broker to all of them (``delivered_window``: leaves start-up
out); events/s over that window; the side's peak RSS; the broker's CPU. The sides alternate which goes first
on each ``--repeats``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.bench.peers.lines import numbered_lines
from agent.bench.peers.tansu import Tansu, TopicCounter
from agent.bench.versus.measure import Sample, cpu_seconds, delivered_window, peak_rss_mib
from agent.bench.versus.report import header, machine
from agent.bench.versus.sides import FluentBitMissing, find_fluent_bit, fluent_bit_version, stop_process
from agent.config.pipeline import load_texts

RECORD_BYTES = 200
PARTITIONS = 4
TOPIC = "bench"
POLL_S = 0.05
STALL_S = 30.0
FB, AGENT = "fluent-bit", "agent"


@dataclass(slots=True)
class KafkaRun:
    """One side's figures for one run."""

    side: str
    repeat: int
    records: int
    whole_wall_s: float
    whole_cpu_s: float
    window_wall_s: float | None
    window_cpu_s: float | None
    window_records: int | None
    peak_rss_mib: float
    broker_cpu_s: float

    @property
    def whole_cpu_s_per_million(self) -> float:
        return self.whole_cpu_s / self.records * 1e6

    @property
    def window_cpu_s_per_million(self) -> float | None:
        if self.window_cpu_s is None or not self.window_records:
            return None
        return self.window_cpu_s / self.window_records * 1e6

    def to_dict(self) -> dict[str, Any]:
        window = self.window_cpu_s_per_million
        rate = self.window_records / self.window_wall_s if self.window_records and self.window_wall_s else None
        return {**asdict(self), "whole_cpu_s_per_million": round(self.whole_cpu_s_per_million, 3),
                "window_cpu_s_per_million": None if window is None else round(window, 3),
                "window_records_per_s": None if rate is None else round(rate)}


def write_lines(path: Path, lines: int) -> None:
    """``lines`` distinct numbered printable lines of :data:`RECORD_BYTES` bytes (newline apart)."""
    with path.open("wb") as out:
        for start in range(0, lines, 100_000):
            out.write(numbered_lines(start, min(100_000, lines - start), RECORD_BYTES + 1))


def fluent_bit_config(log: Path, bootstrap: str) -> str:
    """Fluent Bit: tail the file from its head into the kafka output, each line's ``log`` as the record."""
    return f"""[SERVICE]
    Flush         1
    Log_Level     warn

[INPUT]
    Name              tail
    Path              {log}
    Tag               bench
    Read_from_Head    On
    Refresh_Interval  1
    File_Cache_Advise Off

[OUTPUT]
    Name        kafka
    Match       *
    Brokers     {bootstrap}
    Topics      {TOPIC}
    Format      raw
    Raw_Log_Key log
    rdkafka.compression.codec            lz4
    rdkafka.request.required.acks        -1
    rdkafka.linger.ms                    5
"""


def agent_config(log: Path, bootstrap: str, data_dir: Path) -> str:
    """The agent: tail (raw) from the beginning into the kafka sink, each line as the record."""
    doc = {"data_dir": str(data_dir), "api": {"enabled": False},
           "sources": {"in": {"type": "tail", "include": [str(log)], "format": "raw", "read_from": "beginning"}},
           "sinks": {"out": {"type": "kafka", "inputs": ["in"], "bootstrap_servers": [bootstrap], "topic": TOPIC,
                             "encoding": "raw", "compression": "lz4", "acks": "all"}}}
    text = yaml.safe_dump(doc, sort_keys=False)
    load_texts([(text, "<vs-kafka.yaml>")])  # ConfigErrors if the agent would refuse it
    return text


def _warm(log: Path) -> None:
    """Read the file once (``cat``), so the page cache holds it for the side that reads it next."""
    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def run_side(side: str, repeat: int, fluent_bit: Path, log: Path, lines: int, workdir: Path) -> KafkaRun:
    """One measured run of ``side`` against a fresh broker."""
    run_dir = workdir / f"{side}-{repeat}"
    run_dir.mkdir()
    broker = Tansu(run_dir)
    broker.start()
    counter: TopicCounter | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        broker.create_topic(TOPIC, PARTITIONS)
        _warm(log)
        if side == FB:
            config = run_dir / "fluent-bit.conf"
            config.write_text(fluent_bit_config(log, broker.bootstrap))
            argv = [str(fluent_bit), "-c", str(config)]
        else:
            config = run_dir / "agent.yaml"
            config.write_text(agent_config(log, broker.bootstrap, run_dir / "data"))
            argv = [sys.executable, "-m", "agent", "run", "-c", str(config)]
        counter = TopicCounter(broker.bootstrap, TOPIC)
        await counter.start()
        broker_cpu = broker.cpu_seconds()
        started = time.monotonic()
        proc = _start(argv, run_dir / f"{side}.log")
        samples: list[Sample] = []
        last_change, held = time.monotonic(), 0
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{side} exited with {proc.returncode}; see {run_dir / (side + '.log')}")
            now_held = await counter.count()
            cpu = cpu_seconds(proc.pid)
            now = time.monotonic()
            samples.append(Sample(now - started, cpu, now_held, now_held))
            if now_held != held:
                held, last_change = now_held, now
            if held >= lines:
                break
            if now - last_change > STALL_S:
                raise RuntimeError(f"{side}: stuck at {held:,} of {lines:,} records for {STALL_S:g}s")
            await asyncio.sleep(POLL_S)
        rss = peak_rss_mib(proc.pid)
        broker_cpu = broker.cpu_seconds() - broker_cpu
        last = samples[-1]
        if held != lines:
            raise RuntimeError(f"{side}: the broker holds {held:,} records for {lines:,} lines")
        try:
            window = delivered_window(samples, lines)
        except ValueError:
            window = None
        return KafkaRun(side, repeat, lines, last.t, last.cpu, window.wall_s if window else None,
                        window.cpu_s if window else None, window.events if window else None, rss, broker_cpu)
    finally:
        if proc is not None:
            stop_process(proc)
        if counter is not None:
            await counter.close()
        broker.stop()


def _table(runs: list[KafkaRun]) -> str:
    heads = ("side", "repeat", "records", "wall s", "CPU s", "CPU s/M (whole)", "CPU s/M (window)", "records/s",
             "peak RSS MiB", "broker CPU s")
    rows = []
    for r in runs:
        d = r.to_dict()
        rows.append((r.side, str(r.repeat), f"{r.records:,}", f"{r.whole_wall_s:.2f}", f"{r.whole_cpu_s:.2f}",
                     f"{d['whole_cpu_s_per_million']:.3f}", "-" if d["window_cpu_s_per_million"] is None
                     else f"{d['window_cpu_s_per_million']:.3f}",
                     "-" if d["window_records_per_s"] is None else f"{d['window_records_per_s']:,}",
                     f"{r.peak_rss_mib:.0f}", f"{r.broker_cpu_s:.2f}"))
    widths = [max(len(row[i]) for row in (heads, *rows)) for i in range(len(heads))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in (heads, *rows))


def _ratio(runs: list[KafkaRun]) -> str:
    def best(side: str) -> float | None:
        values = [r.whole_cpu_s_per_million for r in runs if r.side == side]
        return min(values) if values else None

    fb, agent = best(FB), best(AGENT)
    if not fb or not agent:
        return ""
    return (f"agent / Fluent Bit, CPU per record over the whole run (best of each): {agent / fb:.2f}x "
            f"({agent:.3f} against {fb:.3f} CPU s per million records)")


async def _main(args: argparse.Namespace) -> int:
    try:
        fluent_bit, _ = find_fluent_bit()
    except FluentBitMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = machine(fluent_bit_version(fluent_bit), sys.argv)
    sides = [s for s in args.sides.split(",") if s]
    runs: list[KafkaRun] = []
    with tempfile.TemporaryDirectory(prefix="vs-kafka-") as tmp:
        workdir = Path(tmp)
        log = workdir / "app.log"
        write_lines(log, args.lines)
        for repeat in range(args.repeats):
            order = sides if repeat % 2 == 0 else sides[::-1]
            for side in order:
                runs.append(await run_side(side, repeat, fluent_bit, log, args.lines, workdir))
    if args.json:
        print(json.dumps({"machine": info, "runs": [r.to_dict() for r in runs]}))
    else:
        print(header(info))
        print(f"{args.lines:,} lines of {RECORD_BYTES} bytes -> kafka (lz4, acks all, {PARTITIONS} partitions) -> "
              "tansu, one broker per run; load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        print(_table(runs))
        print(_ratio(runs))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``benchmarks/vs_fluent_bit_kafka.py [--lines N] [--repeats R] [--sides fluent-bit,agent] [--json]``."""
    parser = argparse.ArgumentParser(prog="vs_fluent_bit_kafka", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sides", default=f"{FB},{AGENT}")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.lines < 1000 or args.repeats < 1:
        parser.error("--lines must be at least 1000 and --repeats at least 1")
    return asyncio.run(_main(args))

