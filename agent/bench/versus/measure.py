"""What is measured of a process (CPU and peak RSS from /proc) and the steady window over its samples."""

from __future__ import annotations

import os
from dataclasses import dataclass

START_FRACTION = 0.05  # the steady window starts once this share of the events was delivered
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its waited-for children (all threads), from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return stat_cpu_seconds(fh.read())


def stat_cpu_seconds(stat: bytes) -> float:
    """utime + stime + cutime + cstime of a ``/proc/<pid>/stat`` line, in seconds."""
    fields = stat[stat.rindex(b")") + 2:].split()  # the command name may hold spaces and parentheses
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])  # fields 14-17 of proc(5)
    return (utime + stime + cutime + cstime) / _TICK


def bytes_read(pid: int) -> int:
    """``rchar`` of ``pid``: the bytes its read syscalls returned (files, from the page cache too, and sockets)."""
    with open(f"/proc/{pid}/io", "rb") as fh:
        for line in fh:
            if line.startswith(b"rchar:"):
                return int(line.split()[1])
    raise ValueError(f"no rchar in /proc/{pid}/io")


def peak_rss_mib(pid: int) -> float:
    """``VmHWM`` of ``pid`` (its peak resident set so far) in MiB."""
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM in /proc/{pid}/status")


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at a running process: seconds since it started, its CPU seconds, events read and delivered."""

    t: float
    cpu: float
    read: int
    delivered: int


@dataclass(frozen=True, slots=True)
class Window:
    """The steady part of a run: from ``START_FRACTION`` of the events delivered to all of them."""

    events: int  # delivered after the window's first sample
    wall_s: float
    cpu_s: float

    @property
    def cpu_s_per_million(self) -> float:
        return self.cpu_s / self.events * 1e6

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s


def delivered_window(samples: list[Sample], total: int, start_fraction: float = START_FRACTION) -> Window:
    """The method of ``shared/tools/README.md``: from the first sample with ``start_fraction`` of ``total``
    delivered to the first with all delivered, per event delivered in between. It leaves out what a process
    that reads ahead did before then, so it flatters Fluent Bit; printed beside :func:`steady_window`."""
    first = next((s for s in samples if s.delivered >= start_fraction * total), None)
    end = next((s for s in samples if s.delivered >= total), None)
    steps = len({s.delivered for s in samples if first is not None and end is not None and first.t <= s.t <= end.t})
    if first is None or end is None or first.t >= end.t or first.delivered >= total or steps < 3:
        # (fewer than three counts in it: delivered moved in one or two jumps, as Fluent Bit's API refreshes it
        # once a second, so there is no rate to measure)
        raise ValueError(f"no window between {start_fraction:.0%} and all of {total:,} events delivered")
    return Window(events=total - first.delivered, wall_s=end.t - first.t, cpu_s=end.cpu - first.cpu)


def steady_window(samples: list[Sample], total: int, start_fraction: float = START_FRACTION) -> Window:
    """The window from the first sample with ``start_fraction`` of ``total`` events read to the first with all
    of them delivered; its events are those read after its first sample.

    The start is taken on the input side because a process may read far ahead of what it delivers (Fluent Bit
    buffers chunks in memory and flushes once a second): by the time 5 % were delivered it may have read and
    parsed half the lines, whose cost a window starting there would leave out. Samples are in time order; the
    last one is normally taken the moment the last event arrived. ValueError if they never reach ``total``
    delivered or if no sample falls between the start and the end (use more lines).
    """
    first = next((s for s in samples if s.read >= start_fraction * total), None)
    end = next((s for s in samples if s.delivered >= total), None)
    if first is None or end is None:
        raise ValueError(f"the samples never reach {total:,} events delivered")
    if first.t >= end.t or first.read >= total:
        raise ValueError(f"no steady window: all {total:,} events were read before the first sample past "
                         f"{start_fraction:.0%}")
    return Window(events=total - first.read, wall_s=end.t - first.t, cpu_s=end.cpu - first.cpu)
