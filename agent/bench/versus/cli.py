"""The command line of the side-by-side benchmark: ``python -m agent.bench.versus`` (or benchmarks/vs_fluent_bit.py)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
from pathlib import Path

from agent.bench.scenarios.common import BenchError
from agent.bench.versus.data import warm, write_logs
from agent.bench.versus.report import AGENT, FB, header, machine, summary, table
from agent.bench.versus.run import RunResult, measure
from agent.bench.versus.sides import (
    SCENARIOS,
    FluentBitMissing,
    agent_launch,
    find_fluent_bit,
    fluent_bit_launch,
    fluent_bit_version,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_FLUENT_BIT = 0, 1, 2, 69  # 69: EX_UNAVAILABLE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vs_fluent_bit", description="Fluent Bit and the agent on the same Docker json-file lines, one after "
        "the other, into the same local receiver: CPU s per million events, events/s, peak RSS, ratios.")
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines to generate (default 1,000,000)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side per scenario, alternating "
                        "which goes first (default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout instead of the table")
    return parser


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _run_all(binary: Path, configs: Path, names: list[str], lines: int, repeats: int,
                   tmp: Path) -> tuple[list[RunResult], list[str]]:
    logs = tmp / "logs"
    logs.mkdir()
    _say(f"writing {lines:,} Docker json-file lines to {logs} ...")
    paths, nbytes = write_logs(logs, lines)
    _say(f"{nbytes / 1024 / 1024:,.1f} MiB, {nbytes / lines:.0f} B a line on average")
    results: list[RunResult] = []
    failures: list[str] = []
    for name in names:
        scenario = SCENARIOS[name]
        for repeat in range(repeats):
            order = (FB, AGENT) if repeat % 2 == 0 else (AGENT, FB)
            for side in order:
                workdir = tmp / "runs" / f"{name}-{repeat}-{side}"
                workdir.mkdir(parents=True)
                if side == FB:
                    launch = functools.partial(fluent_bit_launch, binary, configs, scenario, logs)
                else:
                    launch = functools.partial(agent_launch, scenario, logs, workdir)
                warm(paths)
                try:
                    result = await measure(launch, scenario, lines, nbytes / lines, workdir, repeat)
                except BenchError as exc:
                    failures.append(f"{name} #{repeat + 1} {side}: {exc}")
                    _say(f"error: {failures[-1]}")
                    continue
                results.append(result)
                d = result.to_dict()
                _say(f"{name} #{repeat + 1} {side}: {d['steady_cpu_s_per_million']} CPU s/M (steady), "
                     f"{d['steady_events_per_s']} events/s, {d['whole_cpu_s']:.2f} CPU s whole run, "
                     f"peak RSS {d['peak_rss_mib']:.0f} MiB")
    return results, failures


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; the exit code (69 when there is no Fluent Bit, 1 when a run failed)."""
    argv = sys.argv if argv is None else argv
    args = _parser().parse_args(argv[1:])
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names or args.lines < 100 or args.repeats < 1:
        what = f"unknown scenario {', '.join(unknown)} (known: {', '.join(SCENARIOS)})" if unknown else \
            "--lines must be at least 100, --repeats at least 1, and one scenario named"
        _say(f"error: {what}")
        return EXIT_USAGE
    try:
        binary, configs = find_fluent_bit()
    except FluentBitMissing as exc:
        _say(f"error: {exc}")
        return EXIT_NO_FLUENT_BIT
    info = machine(f"{fluent_bit_version(binary)} ({binary})", argv)
    _say(header(info))
    with tempfile.TemporaryDirectory(prefix="agent-vs-fluent-bit-") as tmp:
        results, failures = asyncio.run(_run_all(binary, configs, names, args.lines, args.repeats, Path(tmp)))
    summarised = summary(results)
    if args.json:
        print(json.dumps({**info, "lines": args.lines, "runs": [r.to_dict() for r in results],
                          "summary": summarised, "failures": failures}, indent=1))
    else:
        print(header(info))
        print(table(results, summarised))
        for failure in failures:
            print(f"FAILED: {failure.splitlines()[0]}")
    return EXIT_FAILED if failures else EXIT_OK
