"""The built-in throughput scenarios and what each measures.

Every scenario builds a pipeline from a config document, runs it in this
process (on the running loop, uvloop under ``agent bench``) and measures:
wall time, this process's CPU time (user + system from ``getrusage``
``RUSAGE_SELF`` deltas, so peers in other processes are not charged), and
the peak RSS of the process (``ru_maxrss``, a process-lifetime peak: when
several scenarios run in one process, a later one reports the peak so far).

A scenario that loses or duplicates events raises :class:`BenchError` with
the counts of each stage: a benchmark must not report a rate for data it
did not deliver.

The ``tail`` scenarios write their files before the clock starts (the
page cache holds them), so they measure reading and decoding, not the disk;
next to the agent's figures they report the raw read rate of the same files
(``cat FILES > /dev/null`` in a child process: its wall time, its CPU time
from ``RUSAGE_CHILDREN`` and MiB/s) as the floor any reader pays.

The ``tail_parse_to_elasticsearch`` scenarios send to a minimal Elasticsearch
in another process (``python -m agent.bench.peers bulk``) and check what it
counted: every document exactly once, by distinct ``_id``. That peer reports
its own CPU seconds, so a run shows whether it, not the agent, set the pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agent.bench.peers import HOST, LINE_BYTES, BulkReceiver, FileWriter, LoadGenerator, PeerError, Receiver
from agent.config.pipeline import Pipeline, load_texts
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sources.generate import render_line
from agent.topology.running import Topology

ProgressFn = Callable[[int], None]  # told the events delivered so far, about ten times a second
STALL_TIMEOUT = 15.0  # seconds without progress before a scenario is declared stuck
TCP_CONNECTIONS = 4
MIB = 1024 * 1024


class BenchError(Exception):
    """A scenario failed: the agent exited badly, stalled, or lost or duplicated events."""


@dataclass(slots=True)
class Result:
    """The figures of one scenario run."""

    scenario: str
    events: int
    bytes: int  # input line bytes, newlines included
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    peak_rss_mib: float
    extra: dict[str, Any] = field(default_factory=dict)  # scenario-specific figures, flat

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s

    @property
    def mib_per_s(self) -> float:
        return self.bytes / MIB / self.wall_s

    @property
    def cpu_s_per_million_events(self) -> float:
        return self.cpu_s / self.events * 1e6

    def to_dict(self) -> dict[str, Any]:
        """The figures as a flat JSON-ready mapping."""
        return {
            "scenario": self.scenario, "events": self.events, "bytes": self.bytes,
            "wall_s": round(self.wall_s, 4), "events_per_s": round(self.events_per_s),
            "mib_per_s": round(self.mib_per_s, 2), "cpu_s": round(self.cpu_s, 3),
            "cpu_user_s": round(self.cpu_user_s, 3), "cpu_sys_s": round(self.cpu_sys_s, 3),
            "cpu_s_per_million_events": round(self.cpu_s_per_million_events, 3),
            "peak_rss_mib": round(self.peak_rss_mib, 1), **self.extra,
        }


class Meter:
    """Wall clock and this process's CPU time from construction to :meth:`stop`."""

    def __init__(self) -> None:
        self._ru = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()

    def stop(self, scenario: str, events: int, nbytes: int) -> Result:
        """Freeze the deltas into a :class:`Result`."""
        wall = time.perf_counter() - self._t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        rss_kib = ru.ru_maxrss if sys.platform != "darwin" else ru.ru_maxrss / 1024
        return Result(scenario, events, nbytes, wall, ru.ru_utime - self._ru.ru_utime,
                      ru.ru_stime - self._ru.ru_stime, rss_kib / 1024)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named scenario: ``run(events, progress)`` measures one run of it."""

    name: str
    description: str
    default_events: int
    run: Callable[[int, ProgressFn | None], Coroutine[Any, Any, Result]]


# -- helpers ----------------------------------------------------------------------------------------


def _pipeline(name: str, data_dir: str, sources: dict[str, Any], sinks: dict[str, Any],
              transforms: dict[str, Any] | None = None) -> Pipeline:
    doc = {"data_dir": data_dir, "api": {"enabled": False}, "shutdown_timeout": "10s",
           "sources": sources, "transforms": transforms or {}, "sinks": sinks}
    return load_texts([(json.dumps(doc), f"<bench {name}>")])


def _sink_stats(stats: StatsRegistry, pipeline: Pipeline, sink_id: str = "out") -> ComponentStats:
    """The sink's counters, created before the topology so progress can read them from the start."""
    return stats.get(sink_id, "sink", pipeline.components[sink_id].type)


@contextlib.asynccontextmanager
async def _progress(count: Callable[[], int], progress: ProgressFn | None) -> AsyncIterator[None]:
    """Report ``count()`` to ``progress`` in the background while the body runs."""
    if progress is None:
        yield
        return

    async def tick() -> None:
        while True:
            progress(count())
            await asyncio.sleep(0.1)

    task = asyncio.create_task(tick(), name="bench-progress")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        progress(count())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(16 * MIB):
            lines += chunk.count(b"\n")
    return lines


# -- generate scenarios -----------------------------------------------------------------------------


async def _generate(name: str, events: int, progress: ProgressFn | None, fmt: str, parse: bool,
                    to_file: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        out_path = Path(tmp) / "out.ndjson"
        sources = {"gen": {"type": "generate", "format": fmt, "count": events, "batch_size": 1000}}
        transforms = {"parse": {"type": "parse", "inputs": ["gen"], "codec": "json"}} if parse else {}
        upstream = "parse" if parse else "gen"
        sink = ({"type": "file", "inputs": [upstream], "path": str(out_path), "encoding": "json"} if to_file
                else {"type": "blackhole", "inputs": [upstream]})
        pipeline = _pipeline(name, tmp, sources, {"out": sink}, transforms)
        stats = StatsRegistry()
        sink_stats = _sink_stats(stats, pipeline)
        topology = Topology(pipeline, stats)
        meter = Meter()
        async with _progress(lambda: sink_stats.sent_events, progress):
            code = await topology.run()
        source = topology.nodes["gen"].stats
        result = meter.stop(name, events, source.received_bytes)
        problems = []
        if code != 0:
            problems.append(f"agent exit code {code}")
        if source.received_events != events or sink_stats.sent_events != events:
            problems.append("events missing")
        if to_file and (written := _count_lines(out_path)) != events:
            problems.append(f"{written} lines in the output file")
        if problems:
            raise BenchError(f"{name}: {'; '.join(problems)} (expected {events}; generated "
                             f"{source.received_events}, sink sent {sink_stats.sent_events})")
        return result


async def generate_to_blackhole(events: int, progress: ProgressFn | None = None) -> Result:
    """generate (docker lines) -> blackhole: the cost of the machinery itself."""
    return await _generate("generate_to_blackhole", events, progress, "docker", parse=False, to_file=False)


async def generate_parse_json_to_file(events: int, progress: ProgressFn | None = None) -> Result:
    """generate (json lines) -> parse json -> file (NDJSON)."""
    return await _generate("generate_parse_json_to_file", events, progress, "json", parse=True, to_file=True)


# -- TCP scenarios ----------------------------------------------------------------------------------


async def _wait_until(done: Callable[[], bool], count: Callable[[], int], agent: asyncio.Task[int],
                      describe: Callable[[], str]) -> None:
    """Poll until ``done()``; BenchError if the agent exits or ``count()`` stops moving."""
    last, last_change = -1, time.monotonic()
    while not done():
        if agent.done():
            why = "cancelled" if agent.cancelled() else agent.exception() or f"exit code {agent.result()}"
            raise BenchError(f"the agent stopped early ({why}): {describe()}")
        now, current = time.monotonic(), count()
        if current != last:
            last, last_change = current, now
        elif now - last_change > STALL_TIMEOUT:
            raise BenchError(f"no progress for {STALL_TIMEOUT:.0f}s, lines are missing: {describe()}")
        await asyncio.sleep(0.005)


async def _stop_agent(topology: Topology, agent: asyncio.Task[int]) -> None:
    if not agent.done():
        topology.request_stop()
        await asyncio.wait([agent], timeout=15.0)
    if not agent.done():
        agent.cancel()
        await asyncio.wait([agent])


async def _receiver_count(receiver: Receiver | BulkReceiver, pending: asyncio.Task[Any], what: str = "lines") -> str:
    """What the receiver counted, for an error message (it must not hide the original error)."""
    pending.cancel()
    await asyncio.wait([pending])
    if receiver.proc.returncode is not None:
        return ""  # it already told why it stopped
    try:
        return f"; receiver counted {(await receiver.final())[what]} {what}"
    except PeerError as exc:
        return f"; receiver: {exc}"


async def _tcp(name: str, events: int, progress: ProgressFn | None, to: str) -> Result:
    """The harness's tcp_to_* scenarios; ``to`` is blackhole, tcp (a receiver) or http (the bench's HTTP peer)."""
    async with contextlib.AsyncExitStack() as stack:
        receiver: Receiver | BulkReceiver | None = None
        if to == "tcp":
            receiver = await Receiver.start(events)
        elif to == "http":
            receiver = await BulkReceiver.start(events)
        if receiver is not None:
            stack.push_async_callback(receiver.close)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-"))
        port = _free_port()
        source = {"type": "socket", "address": f"{HOST}:{port}"}
        sink: dict[str, Any] = {"type": "blackhole", "inputs": ["in"]}
        if to == "tcp":
            assert receiver is not None
            sink = {"type": "socket", "inputs": ["in"], "address": f"{HOST}:{receiver.port}", "encoding": "text"}
        elif to == "http":
            assert receiver is not None
            sink = {"type": "http", "inputs": ["in"], "uri": f"http://{HOST}:{receiver.port}/ingest",
                    "encoding": "text", "batch": {"max_events": 1000, "timeout": "100ms"},
                    "request": {"concurrency": ES_CONCURRENCY}, "healthcheck": False}
        pipeline = _pipeline(name, tmp, {"in": source}, {"out": sink})
        stats = StatsRegistry()
        source_stats, sink_stats = stats.get("in", "source", "socket"), _sink_stats(stats, pipeline)

        def describe() -> str:
            return (f"{name}: expected {events} lines; source received {source_stats.received_events}, "
                    f"sink sent {sink_stats.sent_events}")

        topology = Topology(pipeline, stats)
        agent = asyncio.create_task(topology.run(), name="bench-agent")
        stack.push_async_callback(_stop_agent, topology, agent)
        loadgen = await LoadGenerator.start(port, events, TCP_CONNECTIONS)
        stack.push_async_callback(loadgen.close)
        arrived: asyncio.Task[Any] | None = None  # the receiver's "all lines counted" report
        if receiver is not None:
            arrived = asyncio.create_task(receiver.read(wait_s=None), name="bench-receiver")
            stack.callback(arrived.cancel)
            done = arrived.done
        else:
            def done() -> bool:
                return sink_stats.sent_events >= events

        meter = Meter()
        loadgen.go()
        try:
            async with _progress(lambda: sink_stats.sent_events, progress):
                await _wait_until(done, lambda: source_stats.received_events + sink_stats.sent_events,
                                  agent, describe)
            result = meter.stop(name, events, events * LINE_BYTES)
            if arrived is not None:
                arrived.result()  # raises PeerError if the receiver exited instead of reporting
        except (BenchError, PeerError) as exc:
            counted = await _receiver_count(receiver, arrived) if receiver and arrived else ""
            raise BenchError(f"{exc}{counted}") from None
        await _stop_agent(topology, agent)
        sent = await loadgen.read(wait_s=15.0)
        if agent.result() != 0 or sent.get("sent_lines") != events:
            raise BenchError(f"{describe()}; agent exit code {agent.result()}, load generator: {sent}")
        if isinstance(receiver, Receiver):
            final = await receiver.final()
            if final["lines"] != events or final["bytes"] != events * LINE_BYTES:
                raise BenchError(f"{describe()}; after the drain the receiver counted {final['lines']} "
                                 f"lines, {final['bytes']} bytes")
        elif isinstance(receiver, BulkReceiver):
            final = await receiver.final()
            if final["documents"] != events or final["body_bytes"] != events * LINE_BYTES:
                raise BenchError(f"{describe()}; after the drain the HTTP peer counted {final['documents']} "
                                 f"lines, {final['body_bytes']} bytes")
        elif sink_stats.sent_events != events:
            raise BenchError(f"{describe()} after the drain")
        return result


async def tcp_to_blackhole(events: int, progress: ProgressFn | None = None) -> Result:
    """Load generator -TCP-> socket source -> blackhole."""
    return await _tcp("tcp_to_blackhole", events, progress, to="blackhole")


async def tcp_to_tcp(events: int, progress: ProgressFn | None = None) -> Result:
    """Load generator -TCP-> socket source -> socket sink -TCP-> counting receiver."""
    return await _tcp("tcp_to_tcp", events, progress, to="tcp")


async def tcp_to_http(events: int, progress: ProgressFn | None = None) -> Result:
    """Load generator -TCP-> socket source -> http sink (text lines) -HTTP-> counting peer."""
    return await _tcp("tcp_to_http", events, progress, to="http")


# -- tail scenarios ---------------------------------------------------------------------------------

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


# -- tail -> parse -> elasticsearch ------------------------------------------------------------------

ES_INDEX = "bench-%Y.%m.%d"
ES_BATCH_EVENTS = 1000
ES_CONCURRENCY = 4
# the Docker wrapper's fields, tail's, and the app's parsed JSON
_PARSED_FIELDS = ("@timestamp", "time", "stream", "file", "inode", "offset", "kubernetes", "timestamp", "level",
                  "service", "trace_id", "message", "metadata")


def _check_bulk(name: str, expected: int, report: dict[str, Any], compression: str) -> list[str]:
    """What is wrong with the bulk receiver's final report (an empty list: every document exactly once)."""
    problems = []
    index = time.strftime(ES_INDEX, time.gmtime())
    if (report["documents"], report["actions"], report["distinct_ids"]) != (expected, expected, expected):
        problems.append(f"the receiver got {report['documents']} documents in {report['actions']} actions with "
                        f"{report['distinct_ids']} distinct _id values")
    if report["generated_ids"]:
        problems.append(f"{report['generated_ids']} actions without _id (id: auto should derive them)")
    if report["bad_documents"] or report["documents_without_timestamp"]:
        problems.append(f"{report['bad_documents']} documents not JSON objects, "
                        f"{report['documents_without_timestamp']} without @timestamp")
    if set(report["indices"]) - {index, time.strftime(ES_INDEX, time.gmtime(time.time() - 86400))}:
        problems.append(f"indices {report['indices']}, expected {index}")
    encodings = {"gzip" if compression == "gzip" else "identity"}
    if set(report["encodings"]) != encodings:
        problems.append(f"content encodings {report['encodings']}, expected {encodings}")
    sample = report["sample"] or {}
    if sorted(sample) != sorted(_PARSED_FIELDS) or str(sample.get("message", "{")).startswith("{"):
        problems.append(f"the first document is not the parsed app record: {sample}")
    return [f"{name}: {p}" for p in problems]


async def _tail_parse_to_elasticsearch(name: str, lines: int, progress: ProgressFn | None,
                                       compression: str) -> Result:
    """Docker lines (app JSON inside), written first -> tail -> parse (message) -> elasticsearch -> bulk peer."""
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-"))
        logs = Path(tmp) / "containers"
        logs.mkdir()
        _, records, nbytes = _write_container_logs(logs, lines, java=False)
        es = await BulkReceiver.start(records)
        stack.push_async_callback(es.close)
        source = {"type": "tail", "include": [str(logs / "*.log")], "format": "docker", "read_from": "beginning"}
        transforms = {"parse": {"type": "parse", "inputs": ["in"], "field": "message"}}
        sink = {"type": "elasticsearch", "inputs": ["parse"], "endpoints": [f"http://{HOST}:{es.port}"],
                "index": ES_INDEX, "id": "auto", "compression": compression,
                "batch": {"max_events": ES_BATCH_EVENTS}, "request": {"concurrency": ES_CONCURRENCY}}
        pipeline = _pipeline(name, tmp, {"in": source}, {"out": sink}, transforms)
        stats = StatsRegistry()
        source_stats, sink_stats = stats.get("in", "source", "tail"), _sink_stats(stats, pipeline)
        parse_stats = stats.get("parse", "transform", "parse")

        def describe() -> str:
            return (f"{name}: expected {records} events; source read {_read_lines(source_stats)} lines, made "
                    f"{source_stats.received_events} events, sink received {sink_stats.received_events}, "
                    f"sent {sink_stats.sent_events}")

        def moved() -> int:
            return _read_lines(source_stats) + sink_stats.sent_events

        topology = Topology(pipeline, stats)
        meter = Meter()
        agent = asyncio.create_task(topology.run(), name="bench-agent")
        stack.push_async_callback(_stop_agent, topology, agent)
        arrived = asyncio.create_task(es.read(wait_s=None), name="bench-bulk-receiver")
        stack.callback(arrived.cancel)
        try:
            async with _progress(lambda: sink_stats.sent_events, progress):
                await _wait_until(arrived.done, moved, agent, describe)
            result = meter.stop(name, records, nbytes)
            done = arrived.result()  # raises PeerError if the receiver exited instead of reporting
        except (BenchError, PeerError) as exc:
            raise BenchError(f"{exc}{await _receiver_count(es, arrived, 'documents')}") from None
        await _wait_until(lambda: sink_stats.sent_events >= records, moved, agent, describe)  # the last acks
        await _stop_agent(topology, agent)
        final = await es.final()
        problems = _check_bulk(name, records, final, compression)
        if agent.result() != 0:
            problems.append(f"agent exit code {agent.result()}")
        if _read_lines(source_stats) != lines or sink_stats.sent_events != records:
            problems.append("events missing or duplicated in the agent")
        for component in (source_stats, parse_stats, sink_stats):
            if component.errors or component.discarded or component.retries:
                problems.append(f"{component.component_id}: errors {dict(component.errors)}, discarded "
                                f"{dict(component.discarded)}, retries {component.retries}")
        if problems:
            raise BenchError(f"{'; '.join(problems)}: {describe()}")
        result.extra = {"lines": lines, "requests": done["requests"], "bulk_body_bytes": done["body_bytes"],
                        "bulk_wire_bytes": done["wire_bytes"], "receiver_cpu_s": done["cpu_s"],
                        "receiver_cpu_s_per_million_events": round(done["cpu_s"] / records * 1e6, 3),
                        "distinct_ids": final["distinct_ids"]}
        return result


async def tail_parse_to_elasticsearch(lines: int, progress: ProgressFn | None = None) -> Result:
    """tail (Docker lines, app JSON inside) -> parse (message) -> elasticsearch (no compression) -> bulk peer."""
    return await _tail_parse_to_elasticsearch("tail_parse_to_elasticsearch", lines, progress, "none")


async def tail_parse_to_elasticsearch_gzip(lines: int, progress: ProgressFn | None = None) -> Result:
    """The same with ``compression: gzip``."""
    return await _tail_parse_to_elasticsearch("tail_parse_to_elasticsearch_gzip", lines, progress, "gzip")


async def file_to_tcp(events: int, progress: ProgressFn | None = None) -> Result:
    """Another process appends numbered lines to a file -> tail (raw) -> socket sink (text) -> receiver."""
    name = "file_to_tcp"
    async with contextlib.AsyncExitStack() as stack:
        receiver = await Receiver.start(events, check_order=True)
        stack.push_async_callback(receiver.close)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-"))
        path = Path(tmp) / "app.log"
        path.touch()  # there at the first scan: no wait for the next glob
        writer = await FileWriter.start(str(path), events)
        stack.push_async_callback(writer.close)
        source = {"type": "tail", "include": [str(path)], "format": "raw", "read_from": "beginning"}
        sink = {"type": "socket", "inputs": ["in"], "address": f"{HOST}:{receiver.port}", "encoding": "text"}
        pipeline = _pipeline(name, tmp, {"in": source}, {"out": sink})
        stats = StatsRegistry()
        source_stats, sink_stats = stats.get("in", "source", "tail"), _sink_stats(stats, pipeline)

        def describe() -> str:
            return (f"{name}: expected {events} lines; source received {source_stats.received_events}, "
                    f"sink sent {sink_stats.sent_events}")

        def moved() -> int:
            return source_stats.received_events + sink_stats.sent_events

        topology = Topology(pipeline, stats)
        agent = asyncio.create_task(topology.run(), name="bench-agent")
        stack.push_async_callback(_stop_agent, topology, agent)
        await topology.ready.wait()
        await asyncio.sleep(0.05)  # the source's first scan opens the (empty) file
        arrived = asyncio.create_task(receiver.read(wait_s=None), name="bench-receiver")
        stack.callback(arrived.cancel)
        meter = Meter()
        writer.go()
        try:
            async with _progress(lambda: sink_stats.sent_events, progress):
                await _wait_until(arrived.done, moved, agent, describe)
            result = meter.stop(name, events, events * LINE_BYTES)
            arrived.result()  # raises PeerError if the receiver exited instead of reporting
        except (BenchError, PeerError) as exc:
            raise BenchError(f"{exc}{await _receiver_count(receiver, arrived)}") from None
        await _stop_agent(topology, agent)
        written = await writer.read(wait_s=15.0)
        if agent.result() != 0 or written.get("written_lines") != events:
            raise BenchError(f"{describe()}; agent exit code {agent.result()}, file writer: {written}")
        final = await receiver.final()
        if (final["lines"], final["bytes"], final["out_of_order"], final["partial_line_bytes"]) != (
                events, events * LINE_BYTES, 0, 0):
            raise BenchError(f"{describe()}; after the drain the receiver counted {final['lines']} lines, "
                             f"{final['bytes']} bytes, {final['out_of_order']} lines out of order, "
                             f"{final['partial_line_bytes']} bytes of an unterminated line")
        result.extra = {"writer_wall_s": written["wall_s"]}
        return result


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("generate_to_blackhole", "generate docker json-file lines (batches of 1000) -> blackhole",
             2_000_000, generate_to_blackhole),
    Scenario("generate_parse_json_to_file", "generate JSON lines -> parse (json) -> file (NDJSON, temp dir)",
             1_000_000, generate_parse_json_to_file),
    Scenario("tcp_to_blackhole", f"{TCP_CONNECTIONS} TCP connections of {LINE_BYTES}-byte lines from "
             "another process -> socket source -> blackhole", 2_000_000, tcp_to_blackhole),
    Scenario("tcp_to_tcp", f"{TCP_CONNECTIONS} TCP connections of {LINE_BYTES}-byte lines -> socket source "
             "-> socket sink (text) -> counting receiver in another process", 2_000_000, tcp_to_tcp),
    Scenario("tcp_to_http", f"{TCP_CONNECTIONS} TCP connections of {LINE_BYTES}-byte lines -> socket source "
             "-> http sink (text lines, 1000 a request) -> counting HTTP peer in another process", 2_000_000,
             tcp_to_http),
    Scenario("tail_docker_to_blackhole", f"tail {TAIL_FILES} Docker json-file logs (written beforehand, read "
             "from the beginning) -> blackhole; also times cat of the same files", 2_000_000,
             tail_docker_to_blackhole),
    Scenario("tail_docker_multiline_to_blackhole", "the same with a Java app's stack traces (1 in 50 records, "
             "14 lines each), multiline preset java -> blackhole; --events counts lines", 2_000_000,
             tail_docker_multiline_to_blackhole),
    Scenario("file_to_tcp", f"another process appends {LINE_BYTES}-byte numbered lines to a file -> tail (raw) "
             "-> socket sink (text) -> receiver checking count, bytes and order", 2_000_000, file_to_tcp),
    Scenario("tail_parse_to_elasticsearch", f"tail {TAIL_FILES} Docker json-file logs (app JSON inside) -> parse "
             f"(message) -> elasticsearch (id auto, batches of {ES_BATCH_EVENTS}, {ES_CONCURRENCY} requests in "
             "flight) -> minimal _bulk server in another process", 1_000_000, tail_parse_to_elasticsearch),
    Scenario("tail_parse_to_elasticsearch_gzip", "the same with compression: gzip", 1_000_000,
             tail_parse_to_elasticsearch_gzip),
)}
