"""One measured run: a process (Fluent Bit or the agent) on the prepared files, sampled until all is delivered."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from agent.bench.peers import BulkReceiver, PeerError
from agent.bench.scenarios.common import BenchError
from agent.bench.versus.measure import (
    START_FRACTION,
    Sample,
    Window,
    bytes_read,
    cpu_seconds,
    delivered_window,
    peak_rss_mib,
    steady_window,
)
from agent.bench.versus.sides import STOP_S, Launch, Scenario

FAST_POLL_S = 0.02  # until the window starts (with no receiver, until it ends)
SLOW_POLL_S = 0.25  # afterwards, with a receiver: only to notice a stall
STALL_S = 30.0  # no progress for this long fails the run


@dataclass(slots=True)
class RunResult:
    """The figures of one process on one scenario."""

    side: str
    scenario: str
    repeat: int
    events: int
    window: Window | None  # None when every event arrived in one burst (too few lines for a steady part)
    whole_cpu_s: float  # from exec to the last event delivered, start-up included
    whole_wall_s: float
    peak_rss_mib: float
    receiver_cpu_s: float | None = None
    exit_code: int | None = None
    delivered: Window | None = None  # the window from 5 % delivered (shared/tools/README.md's method)

    def to_dict(self) -> dict[str, Any]:
        """The figures as a flat JSON-ready mapping."""
        w = self.window
        return {"side": self.side, "scenario": self.scenario, "repeat": self.repeat, "events": self.events,
                "steady_cpu_s_per_million": round(w.cpu_s_per_million, 3) if w else None,
                "delivered_cpu_s_per_million": round(self.delivered.cpu_s_per_million, 3) if self.delivered else None,
                "steady_cpu_s": round(w.cpu_s, 3) if w else None, "steady_wall_s": round(w.wall_s, 3) if w else None,
                "steady_events": w.events if w else None, "steady_events_per_s": round(w.events_per_s) if w else None,
                "whole_cpu_s": round(self.whole_cpu_s, 3), "whole_wall_s": round(self.whole_wall_s, 3),
                "whole_cpu_s_per_million": round(self.whole_cpu_s / self.events * 1e6, 3),
                "peak_rss_mib": round(self.peak_rss_mib, 1), "receiver_cpu_s": self.receiver_cpu_s,
                "exit_code": self.exit_code}


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _stop(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM (a drain for both), SIGKILL if it takes over STOP_S; the exit code."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_S):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


async def _sample_until_delivered(launch: Launch, proc: asyncio.subprocess.Process, total: int, line_bytes: float,
                                  started: float, arrived: asyncio.Task[dict[str, Any]] | None,
                                  describe: Callable[[], str]) -> list[Sample]:
    """Samples of (time, CPU, delivered) from the start until all ``total`` events are delivered.

    With a receiver, the last sample is taken the moment it reports that the last event arrived; without
    one (null output), the first sample whose count is ``total``.
    """
    samples = [Sample(0.0, 0.0, 0, 0)]
    last_change = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while True:
            if arrived is not None and arrived.done():
                arrived.result()  # PeerError if the receiver died instead of reporting
                samples.append(Sample(time.monotonic() - started, cpu_seconds(proc.pid), total, total))
                return samples
            if proc.returncode is not None:
                raise BenchError(f"{launch.side} exited with code {proc.returncode} before delivering all: "
                                 f"{describe()}")
            counts = await launch.poll(http)
            cpu = cpu_seconds(proc.pid)
            now = time.monotonic()
            previous = samples[-1]
            read, delivered = (previous.read, previous.delivered) if counts is None else counts
            if launch.reads_by_io:
                read = max(read, min(total, int(bytes_read(proc.pid) / line_bytes)))
            samples.append(Sample(now - started, cpu, read, delivered))
            if (read, delivered) != (previous.read, previous.delivered):
                last_change = now
            elif now - last_change > STALL_S:
                raise BenchError(f"{launch.side}: no progress for {STALL_S:.0f}s at {delivered:,} of {total:,} "
                                 f"events: {describe()}")
            if arrived is None and delivered >= total:
                return samples
            fast = arrived is None or read < START_FRACTION * total
            if arrived is not None:
                await asyncio.wait([arrived], timeout=FAST_POLL_S if fast else SLOW_POLL_S)
            else:
                await asyncio.sleep(FAST_POLL_S)


def _check_receiver(launch: Launch, scenario: Scenario, total: int, final: dict[str, Any]) -> list[str]:
    """What is wrong with what the receiver counted (every event once, whole JSON objects)."""
    problems = []
    if final["documents"] != total:
        problems.append(f"the receiver counted {final['documents']:,} events, expected {total:,}")
    if final["bad_documents"] or (scenario.fb_output.startswith("es.") and final["documents_without_timestamp"]):
        problems.append(f"{final['bad_documents']} documents not JSON objects, "
                        f"{final['documents_without_timestamp']} without @timestamp")
    if launch.side == "agent" and scenario.fb_output.startswith("es.") and final["distinct_ids"] != total:
        problems.append(f"{final['distinct_ids']:,} distinct _id values for {total:,} documents")
    return problems


async def measure(make_launch: Callable[[int | None], Launch], scenario: Scenario, total: int, line_bytes: float,
                  workdir: Path, repeat: int) -> RunResult:
    """Start a fresh receiver (if the scenario has one) and the process ``make_launch(receiver_port)`` says,
    sample it until ``total`` events (lines of ``line_bytes`` on average) are delivered, stop both, check
    the counts."""
    async with contextlib.AsyncExitStack() as stack:
        receiver = None
        if scenario.receiver:
            receiver = await BulkReceiver.start(total)
            stack.push_async_callback(receiver.close)
        launch = make_launch(receiver.port if receiver else None)
        log = workdir / f"{launch.side}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(*launch.argv, env=launch.env, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=out, stderr=out)
        started = time.monotonic()
        stack.push_async_callback(_stop, proc)
        arrived = asyncio.create_task(receiver.read(wait_s=None)) if receiver else None
        if arrived is not None:
            stack.callback(arrived.cancel)

        def describe() -> str:
            return f"{scenario.name} ({log}):\n{_log_tail(log)}"

        try:
            samples = await _sample_until_delivered(launch, proc, total, line_bytes, started, arrived, describe)
        except PeerError as exc:
            raise BenchError(f"{launch.side}: the receiver failed: {exc}: {describe()}") from None
        rss = peak_rss_mib(proc.pid)
        code = await _stop(proc)
        problems = []
        done = samples[-1]
        final = await receiver.final() if receiver else None
        if final is not None:
            problems += _check_receiver(launch, scenario, total, final)
        elif done.delivered != total:
            problems.append(f"{done.delivered:,} events delivered, expected {total:,}")
        if code != 0:
            problems.append(f"exit code {code} after SIGTERM")
        if problems:
            raise BenchError(f"{launch.side}: {'; '.join(problems)}: {describe()}")
        receiver_cpu = arrived.result()["cpu_s"] if arrived is not None else None
        windows: list[Window | None] = []
        for method in (steady_window, delivered_window):
            try:
                windows.append(method(samples, total))
            except ValueError:
                windows.append(None)
        return RunResult(launch.side, scenario.name, repeat, total, windows[0], done.cpu, done.t, rss, receiver_cpu,
                         code, windows[1])
