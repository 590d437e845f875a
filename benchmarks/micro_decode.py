"""Micro-benchmark of the container log decoders (and multiline) on in-memory lines.

    .venv/bin/python benchmarks/micro_decode.py [--lines 1000000] [--read-size 4MiB] [--repeat 3] [--no-gc]

Builds realistic lines for each format (Docker json-file around 400 B wrapping a JSON application log,
the same log as CRI and as raw lines), frames them into the batches a read of ``--read-size`` gives the
tail source, and times ``decode`` over all of them, each batch's events dropped afterwards as a sink
would; ``docker+multiline`` also passes them through ``Multiline`` (java preset: no line continues
another, so every event is held until the next one). The first row is the floor for Docker lines: just
``orjson.loads`` of each line. Prints the best of ``--repeat`` runs: lines/s (wall clock) and CPU
seconds per million lines (``time.process_time``). The inputs are frozen out of the garbage collector
(``gc.freeze``), as the millions of lines held here would otherwise make each full collection rescan them.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable

import orjson

from agent.codecs.container import CriDecoder, DockerDecoder, LineDecoder, RawDecoder
from agent.codecs.lines import line_starts
from agent.codecs.multiline import Multiline, MultilineConfig
from agent.config.units import parse_size

EXTRA = {
    "file": "/var/log/containers/checkout-7d9f8c6b5-x2x4q_shop_checkout-0123456789abcdef.log",
    "kubernetes": {"namespace": "shop", "pod": "checkout-7d9f8c6b5-x2x4q", "container": "checkout"},
}
WORDS = "request handled for user cache miss upstream latency order payment retry accepted queue flushed".split()


def app_logs(count: int) -> list[str]:
    """JSON application log lines, all different."""
    rnd = random.Random(42)
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    return [
        orjson.dumps({
            "timestamp": f"2026-11-22T17:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z",
            "level": rnd.choice(levels),
            "logger": "com.example.checkout.OrderHandler",
            "thread": f"http-nio-8080-exec-{i % 32}",
            "message": " ".join(rnd.choices(WORDS, k=8)),
            "trace_id": f"{rnd.getrandbits(128):032x}",
            "span_id": f"{rnd.getrandbits(64):016x}",
            "duration_ms": rnd.randint(1, 2000),
        }).decode()
        for i in range(count)
    ]


def timestamp(i: int) -> str:
    return f"2026-11-22T17:{i // 60_000_000 % 60:02d}:{i // 1_000_000 % 60:02d}.{i % 1_000_000:06d}123Z"


def docker_lines(logs: list[str]) -> list[bytes]:
    return [
        orjson.dumps({"log": log + "\n", "stream": "stderr" if i % 10 == 0 else "stdout", "time": timestamp(i)})
        for i, log in enumerate(logs)
    ]


def cri_lines(logs: list[str]) -> list[bytes]:
    return [f"{timestamp(i)} {'stderr' if i % 10 == 0 else 'stdout'} F {log}".encode() for i, log in enumerate(logs)]


def batches(lines: list[bytes], read_size: int) -> list[tuple[list[int], list[bytes]]]:
    """``(line starts, lines)`` as reads of ``read_size`` framed by the line splitter would give them."""
    out: list[tuple[list[int], list[bytes]]] = []
    start = size = first = 0
    for i, line in enumerate(lines):
        size += len(line) + 1
        if size >= read_size:
            out.append((line_starts(lines[first:i + 1], start), lines[first:i + 1]))
            start, first, size = start + size, i + 1, 0
    if first < len(lines):
        out.append((line_starts(lines[first:], start), lines[first:]))
    return out


def run_loads(work: list[tuple[list[int], list[bytes]]]) -> int:
    loads = orjson.loads
    for _, lines in work:
        for line in lines:
            loads(line)
    return sum(len(lines) for _, lines in work)


def run_decoder(make: Callable[[], LineDecoder], work: list[tuple[list[int], list[bytes]]]) -> int:
    decoder = make()
    events = 0
    for starts, lines in work:
        out: list[dict] = []
        decoder.decode(lines, starts, out)
        events += len(out)
    return events


def run_multiline(work: list[tuple[list[int], list[bytes]]]) -> int:
    decoder = DockerDecoder(EXTRA, 1 << 20)
    multiline = Multiline(MultilineConfig(preset="java"))
    events = 0
    for starts, lines in work:
        decoded: list[dict] = []
        safe = decoder.decode(lines, starts, decoded)
        out: list[dict] = []
        multiline.feed(decoded, out, 0.0)
        multiline.safe_offset(safe)
        events += len(out)
    out = []
    multiline.flush(out)
    return events + len(out)


def measure(name: str, count: int, repeat: int, run: Callable[[], int]) -> None:
    best_cpu = best_wall = float("inf")
    for _ in range(repeat):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        events = run()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        assert events == count, (name, events, count)
    print(f"{name:<18} {count / best_wall:>12,.0f} lines/s {best_cpu / count * 1e6:>8.3f} CPU s per million")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--read-size", type=parse_size, default="4MiB", help="bytes per batch of lines")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-gc", action="store_true", help="disable the cyclic garbage collector while timing")
    args = parser.parse_args()
    logs = app_logs(args.lines)
    docker, cri = docker_lines(logs), cri_lines(logs)
    raw = [log.encode() for log in logs]
    del logs
    print(f"{args.lines:,} lines; mean bytes per line: docker {sum(map(len, docker)) / len(docker):.0f}, "
          f"cri {sum(map(len, cri)) / len(cri):.0f}, raw {sum(map(len, raw)) / len(raw):.0f}; "
          f"{args.read_size:,} bytes per batch; gc {'off' if args.no_gc else 'on'}")
    docker_work, cri_work, raw_work = (batches(lines, args.read_size) for lines in (docker, cri, raw))
    gc.collect()
    gc.freeze()  # the inputs are long-lived: keep the collector from rescanning millions of list items
    if args.no_gc:
        gc.disable()
    measure("orjson.loads only", args.lines, args.repeat, lambda: run_loads(docker_work))
    measure("docker", args.lines, args.repeat, lambda: run_decoder(lambda: DockerDecoder(EXTRA, 1 << 20), docker_work))
    measure("cri", args.lines, args.repeat, lambda: run_decoder(lambda: CriDecoder(EXTRA, 1 << 20), cri_work))
    measure("raw", args.lines, args.repeat, lambda: run_decoder(lambda: RawDecoder(EXTRA, 1 << 20), raw_work))
    measure("docker+multiline", args.lines, args.repeat, lambda: run_multiline(docker_work))


if __name__ == "__main__":
    main()
