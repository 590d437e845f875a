"""The tail scenarios, and the kubelet-named Docker json-file logs (plain or a Java app's) they read."""

from __future__ import annotations

import asyncio
import random
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from agent.bench.scenarios.common import (
    MIB,
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
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sources.generate import render_line
from agent.topology.running import Topology

TAIL_FILES = 4
TAIL_POOL = 4096  # distinct lines per file, repeated to the requested count
_PODS = (("checkout-7d9f8b6c5d-x2k4p", "shop", "checkout"), ("payments-5c6b7f9d84-q8r2m", "shop", "payments"),
         ("search-6f8d9c7b5-lm3nz", "catalog", "search"), ("auth-84b9c6d7f-vt5wx", "identity", "auth"))


def _container_log_paths(directory: Path, count: int) -> list[Path]:
    """``count`` kubelet-style names: ``<pod>_<namespace>_<container>-<64 hex container id>.log``."""
    rng = random.Random(7)
    paths = []
    for k in range(count):
        pod, namespace, container = _PODS[k % len(_PODS)]
        pod = pod if k < len(_PODS) else f"{pod}{k}"
        paths.append(directory / f"{pod}_{namespace}_{container}-{rng.getrandbits(256):064x}.log")
    return paths


def _shares(total: int, parts: int) -> list[int]:
    share, extra = divmod(total, parts)
    return [share + (1 if k < extra else 0) for k in range(parts)]


def _write_cycling(path: Path, pool: list[bytes], lines: int) -> int:
    """Write ``lines`` lines cycling through ``pool`` (a newline after each); return the file's size."""
    block = b"\n".join(pool) + b"\n"
    full, rest = divmod(lines, len(pool))
    with path.open("wb") as fh:
        for _ in range(full):
            fh.write(block)
        if rest:
            fh.write(b"\n".join(pool[:rest]) + b"\n")
    return path.stat().st_size


def _docker(message: str, stamp: str, stream: str = "stdout") -> bytes:
    return orjson.dumps({"log": message + "\n", "stream": stream, "time": stamp})


def _stamp(now: float, i: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + i // 1000)) + f".{i % 1000 * 1_000_000 + 4321:09d}Z"


JAVA_SINGLES = 49  # single-line records between two stack traces
_JAVA_FRAMES = (
    "com.example.shop.payment.PaymentClient.charge(PaymentClient.java:87)",
    "com.example.shop.payment.PaymentService.authorize(PaymentService.java:131)",
    "com.example.shop.OrderService.pay(OrderService.java:142)",
    "com.example.shop.OrderService.checkout(OrderService.java:98)",
    "com.example.shop.web.OrderController.submit(OrderController.java:55)",
    "jdk.internal.reflect.GeneratedMethodAccessor42.invoke(Unknown Source)",
    "java.base/java.lang.reflect.Method.invoke(Method.java:568)",
    "org.springframework.web.method.support.InvocableHandlerMethod.doInvoke(InvocableHandlerMethod.java:205)",
    "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:883)",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:166)",
)


def _java_pool(rng: random.Random, now: float, first: int, cycles: int) -> tuple[list[bytes], list[bool]]:
    """Docker lines of a Java app, and which of them start a record.

    Each cycle is ``JAVA_SINGLES`` single-line records, then an ERROR line followed by its stack trace as
    13 more lines (the exception, 10 ``\tat`` frames, ``Caused by:`` and ``\t... 5 more``): 50 records
    in 63 lines. Everything is on stdout, as a Java app logging to the console writes it.
    """
    lines: list[bytes] = []
    starts: list[bool] = []
    i = first
    for _ in range(cycles):
        for _ in range(JAVA_SINGLES + 1):
            clock = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now + i // 1000)) + f".{i % 1000:03d}"
            thread = f"http-nio-8080-exec-{rng.randint(1, 64)}"
            order, customer = rng.randint(100_000, 999_999), rng.randint(1, 99_999)
            trace = f"trace_id={rng.getrandbits(64):016x} span_id={rng.getrandbits(64):016x}"
            if len(starts) % (JAVA_SINGLES + 14) < JAVA_SINGLES:
                level = rng.choice(("INFO ", "INFO ", "INFO ", "DEBUG", "WARN "))
                message = (f"{clock} {level} [{thread}] c.e.shop.OrderService - order {order} handled "
                           f"customer={customer} items={rng.randint(1, 9)} total={rng.randint(100, 99_999) / 100} "
                           f"EUR payment=card latency_ms={rng.randint(1, 900)} {trace} region=eu-west-1")
                lines.append(_docker(message, _stamp(now, i)))
                starts.append(True)
                i += 1
                continue
            message = (f"{clock} ERROR [{thread}] c.e.shop.OrderService - order {order} failed "
                       f"customer={customer} {trace}")
            trace_lines = [message, f"java.lang.IllegalStateException: payment declined for order {order}",
                           *(f"\tat {frame}" for frame in _JAVA_FRAMES),
                           "Caused by: java.net.SocketTimeoutException: Read timed out", "\t... 5 more"]
            for k, text in enumerate(trace_lines):
                lines.append(_docker(text, _stamp(now, i)))
                starts.append(k == 0)
                i += 1
    return lines, starts


def _raw_read(paths: list[Path], nbytes: int) -> dict[str, Any]:
    """Wall and CPU time of ``cat FILES > /dev/null`` in a child process: the floor of reading these bytes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(["cat", *map(str, paths)], stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"raw_read_wall_s": round(wall, 4), "raw_read_cpu_s": round(cpu, 3),
            "raw_read_mib_per_s": round(nbytes / MIB / wall, 1)}


def _read_lines(stats: ComponentStats) -> int:
    """The tail source's ``read_lines`` counter, over all its labels."""
    return sum(n for (name, _), n in stats.counters.items() if name == "read_lines")


def _write_container_logs(logs: Path, lines: int, java: bool) -> tuple[list[Path], int, int]:
    """``lines`` Docker lines in up to TAIL_FILES kubelet-named files in ``logs``: (paths, records, bytes).

    The lines are ``render_line("docker")`` (an app's JSON record inside the Docker wrapper) or, with
    ``java``, a Java app's plain-text lines with stack traces (see :func:`_java_pool`).
    """
    nfiles = min(TAIL_FILES, lines)
    paths = _container_log_paths(logs, nfiles)
    rng, now = random.Random(42), time.time()
    records = nbytes = 0
    for k, (path, n) in enumerate(zip(paths, _shares(lines, nfiles), strict=True)):
        if java:
            cycle = JAVA_SINGLES + 14
            pool, starts = _java_pool(rng, now, k * TAIL_POOL, max(1, min(n, TAIL_POOL) // cycle))
            full, rest = divmod(n, len(pool))
            records += full * sum(starts) + sum(starts[:rest])
        else:
            pool = [render_line("docker", rng, now, k * TAIL_POOL + i) for i in range(min(n, TAIL_POOL))]
            records += n
        nbytes += _write_cycling(path, pool, n)
    return paths, records, nbytes


async def _tail(name: str, lines: int, progress: ProgressFn | None, java: bool) -> Result:
    """``lines`` Docker lines in TAIL_FILES kubelet-named files, written first, tailed from the start."""
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        logs = Path(tmp) / "containers"
        logs.mkdir()
        paths, records, nbytes = _write_container_logs(logs, lines, java)
        nfiles = len(paths)
        raw_read = _raw_read(paths, nbytes)
        source: dict[str, Any] = {"type": "tail", "include": [str(logs / "*.log")], "format": "docker",
                                  "read_from": "beginning"}
        if java:
            source["multiline"] = {"preset": "java"}
        pipeline = _pipeline(name, tmp, {"in": source}, {"out": {"type": "blackhole", "inputs": ["in"]}})
        stats = StatsRegistry()
        source_stats, sink_stats = stats.get("in", "source", "tail"), _sink_stats(stats, pipeline)
        # With multiline, the last record of each file stays open until the multiline timeout (1 s) ends it:
        # the clock stops when everything else has arrived, then the scenario waits for those.
        held = nfiles if java else 0

        def describe() -> str:
            return (f"{name}: expected {records} events from {lines} lines; source read {_read_lines(source_stats)} "
                    f"lines, made {source_stats.received_events} events, sink sent {sink_stats.sent_events}")

        def moved() -> int:
            return _read_lines(source_stats) + sink_stats.sent_events

        topology = Topology(pipeline, stats)
        meter = Meter()
        agent = asyncio.create_task(topology.run(), name="bench-agent")
        try:
            count = (lambda: _read_lines(source_stats)) if java else (lambda: sink_stats.sent_events)
            async with _progress(count, progress):
                await _wait_until(lambda: sink_stats.sent_events >= records - held, moved, agent, describe)
                result = meter.stop(name, records, nbytes)
                await _wait_until(lambda: sink_stats.sent_events >= records, moved, agent, describe)
        finally:
            await _stop_agent(topology, agent)
        problems = []
        if agent.cancelled() or agent.result() != 0:
            problems.append("agent cancelled" if agent.cancelled() else f"agent exit code {agent.result()}")
        if _read_lines(source_stats) != lines:
            problems.append("lines missing or read twice")
        if source_stats.received_events != records or sink_stats.sent_events != records:
            problems.append("events missing or duplicated")
        if source_stats.errors:
            problems.append(f"errors {dict(source_stats.errors)}")
        if problems:
            raise BenchError(f"{'; '.join(problems)}: {describe()}")
        result.extra = {"lines": lines, "cpu_s_per_million_lines": round(result.cpu_s / lines * 1e6, 3),
                        **raw_read}
        return result


async def tail_docker_to_blackhole(lines: int, progress: ProgressFn | None = None) -> Result:
    """tail (Docker json-file lines, from the beginning of files written beforehand) -> blackhole."""
    return await _tail("tail_docker_to_blackhole", lines, progress, java=False)


async def tail_docker_multiline_to_blackhole(lines: int, progress: ProgressFn | None = None) -> Result:
    """tail (Docker lines of a Java app with stack traces, multiline preset java) -> blackhole."""
    return await _tail("tail_docker_multiline_to_blackhole", lines, progress, java=True)

