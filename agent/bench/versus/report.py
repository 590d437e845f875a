"""What a run prints: the machine and the command, a table per scenario, and the ratios agent / Fluent Bit."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from agent.bench.versus.run import RunResult
from agent.bench.versus.sides import REPO

FB, AGENT = "fluent-bit", "agent"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (uncommitted changes in the tree)" if dirty else "")


def command_line(argv: list[str]) -> str:
    """The command as typed, near enough: ``python -m agent.bench.versus ...`` or the script's path."""
    python = os.path.relpath(sys.executable) if not sys.executable.startswith("/usr") else sys.executable
    head = ["-m", "agent.bench.versus"] if argv[0].endswith(os.path.join("versus", "__main__.py")) else [argv[0]]
    return shlex.join([python, *head, *argv[1:]])


def machine(fluent_bit: str, argv: list[str]) -> dict[str, Any]:
    """Where and when: nproc, CPU model, kernel, load, date, versions, commit and the exact command."""
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "cpu_model": _cpu_model(), "kernel": platform.release(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "fluent_bit": fluent_bit, "agent_commit": _commit(), "command": command_line(argv)}


def header(info: dict[str, Any]) -> str:
    """The lines that say where, when and how the figures were taken."""
    return "\n".join([
        f"date: {info['date']}   load average at start: {' '.join(map(str, info['load_average']))}",
        f"machine: {info['nproc']} CPUs, {info['cpu_model']}, Linux {info['kernel']}",
        f"{info['fluent_bit']}; agent {info['agent_commit']} on Python {info['python']}",
        f"command: {info['command']}"])


def _ratio(agent: float | None, fb: float | None) -> float | None:
    return agent / fb if agent is not None and fb else None


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summary(results: list[RunResult]) -> list[dict[str, Any]]:
    """Per scenario: the median of each side's figures and the ratio agent / Fluent Bit of the medians."""
    out = []
    for scenario in dict.fromkeys(r.scenario for r in results):
        sides = {side: [r.to_dict() for r in results if r.scenario == scenario and r.side == side]
                 for side in (FB, AGENT)}
        if not sides[FB] or not sides[AGENT]:
            continue
        row: dict[str, Any] = {"scenario": scenario, "repeats": min(len(sides[FB]), len(sides[AGENT]))}
        for key in ("steady_cpu_s_per_million", "delivered_cpu_s_per_million", "whole_cpu_s", "steady_events_per_s",
                    "peak_rss_mib"):
            fb, agent = (_median([d[key] for d in sides[s]]) for s in (FB, AGENT))
            ratio = _ratio(agent, fb)
            row[key] = {FB: fb, AGENT: agent, "ratio": None if ratio is None else round(ratio, 2)}
        pairs = [_ratio(a["steady_cpu_s_per_million"], f["steady_cpu_s_per_million"])
                 for f, a in zip(sides[FB], sides[AGENT], strict=False)]
        row["cpu_ratio_per_repeat"] = [round(p, 2) for p in pairs if p is not None]
        out.append(row)
    return out


def _rows(results: list[RunResult], table: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    fmt: dict[str, Callable[[float], str]] = {"steady_cpu_s_per_million": "{:.2f}".format,
                                              "delivered_cpu_s_per_million": "{:.2f}".format,
                                              "whole_cpu_s": "{:.2f}".format,
                                              "steady_events_per_s": lambda v: f"{v:,.0f}",
                                              "peak_rss_mib": "{:.0f}".format}

    def cell(key: str, value: float | None) -> str:
        return "n/a" if value is None else fmt[key](value)

    rows: list[tuple[str, ...]] = []
    for r in results:
        d = r.to_dict()
        rows.append((r.scenario, f"{r.side} #{r.repeat + 1}", *(cell(k, d[k]) for k in fmt)))
    for row in table:
        for side in (FB, AGENT):
            rows.append((row["scenario"], f"{side} (median)", *(cell(k, row[k][side]) for k in fmt)))
        rows.append((row["scenario"], "ratio agent/FB",
                     *("n/a" if row[k]["ratio"] is None else f"{row[k]['ratio']:.2f}x" for k in fmt)))
    return rows


def table(results: list[RunResult], summarised: list[dict[str, Any]]) -> str:
    """Every run, then per scenario the medians and the ratios, as a plain aligned table."""
    headers = ("scenario", "process", "CPU s/M ev (steady)", "CPU s/M ev (5% delivered)", "CPU s (whole run)",
               "events/s (steady)", "peak RSS MiB")
    rows = _rows(results, summarised)
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    lines = ["  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                        *(c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True))]) for row in (headers, *rows)]
    for row in summarised:
        ratios = ", ".join(f"{p:.2f}x" for p in row["cpu_ratio_per_repeat"]) or "n/a"
        lines.append(f"{row['scenario']}: steady CPU ratio agent/FB per repeat: {ratios}")
    lines.append("steady = from the first look (every 20 ms) at which the process had read 5 % of the lines to the "
                 "moment the last event was delivered, per event read in between (n/a: too few lines); CPU = "
                 "utime+stime of the process and its children (/proc/<pid>/stat); peak RSS = VmHWM; "
                 "5% delivered = the same from the first look with 5 % delivered, per event delivered after it "
                 "(shared/tools/README.md's method, which leaves out what a process reading ahead did before)")
    return "\n".join(lines)
