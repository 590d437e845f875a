"""`agent bench`: built-in throughput scenarios that need no outside services.

Each scenario runs the agent in this process under uvloop and reports
events/s, MiB/s, the agent's CPU seconds (per million events too) and peak
RSS; see :mod:`agent.bench.scenarios` for what is measured and how, and
``benchmarks/README.md`` for reproducing and profiling.

Heavy imports are deferred to :func:`main` so that the peer processes
(``python -m agent.bench.peers``) start quickly.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.bench.scenarios import ProgressFn, Result

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def run_scenario(name: str, events: int | None = None, progress: ProgressFn | None = None) -> Result:
    """Run one scenario under uvloop (``events`` defaults to the scenario's own); BenchError on failure."""
    import uvloop

    from agent.bench.scenarios import SCENARIOS
    from agent.runtime import tune_gc

    scenario = SCENARIOS[name]
    tune_gc()  # as `agent run` does
    return uvloop.run(scenario.run(events or scenario.default_events, progress))


def main(args: argparse.Namespace) -> int:
    """Entry point of ``agent bench``; returns the exit code (2 for an unknown scenario)."""
    from agent.bench.peers import PeerError
    from agent.bench.scenarios import SCENARIOS, BenchError

    if args.list:
        width = max(map(len, SCENARIOS))
        for s in SCENARIOS.values():
            print(f"{s.name:<{width}}  {s.description} (default {s.default_events:,} events)")
        return EXIT_OK
    if args.scenario is not None and args.scenario not in SCENARIOS:
        print(f'error: unknown scenario "{args.scenario}" (known: {", ".join(SCENARIOS)})', file=sys.stderr)
        return EXIT_USAGE
    if args.events is not None and args.events <= 0:
        print("error: --events must be positive", file=sys.stderr)
        return EXIT_USAGE
    names = [args.scenario] if args.scenario else list(SCENARIOS)
    results: list[Result] = []
    failed = 0
    for name in names:
        events = args.events or SCENARIOS[name].default_events
        try:
            if args.json or args.no_progress:
                result = run_scenario(name, events)
            else:
                result = _with_progress_bar(name, events)
        except (BenchError, PeerError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        results.append(result)
        if args.json:
            print(json.dumps(result.to_dict()), flush=True)
    if results and not args.json:
        _print_table(results)
    return EXIT_FAILED if failed else EXIT_OK


def _with_progress_bar(name: str, events: int) -> Result:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # Refreshed from the loop's own ticker (no rendering thread competing with the agent for the GIL).
    with Progress(*columns, console=Console(stderr=True), auto_refresh=False) as bar:
        task = bar.add_task(name, total=events)

        def update(done: int) -> None:
            bar.update(task, completed=done)
            bar.refresh()

        return run_scenario(name, events, update)


def _print_table(results: list[Result]) -> None:
    """A plain aligned table (it must stay readable in logs and narrow terminals)."""
    headers = ("scenario", "events", "wall s", "events/s", "MiB/s", "CPU s", "CPU s/M ev", "peak RSS MiB")
    rows = [(r.scenario, f"{r.events:,}", f"{r.wall_s:.2f}", f"{r.events_per_s:,.0f}", f"{r.mib_per_s:.1f}",
             f"{r.cpu_s:.2f}", f"{r.cpu_s_per_million_events:.3f}", f"{r.peak_rss_mib:.0f}") for r in results]
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    for row in (headers, *rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells))
    print("CPU s: user+system of the agent's process only; peak RSS: the process peak so far (ru_maxrss)")
    for r in results:
        extra = r.extra
        if "lines" in extra and extra["lines"] != r.events:
            print(f"{r.scenario}: {extra['lines']:,} lines made {r.events:,} events, "
                  f"{extra['cpu_s_per_million_lines']:.3f} CPU s per million lines")
        if "raw_read_mib_per_s" in extra:
            print(f"{r.scenario}: raw read of the same files (cat FILES > /dev/null): "
                  f"{extra['raw_read_wall_s']:.3f} s, {extra['raw_read_cpu_s']:.3f} CPU s, "
                  f"{extra['raw_read_mib_per_s']:,.0f} MiB/s")
        if "writer_wall_s" in extra:
            print(f"{r.scenario}: the writer process appended all lines in {extra['writer_wall_s']:.2f} s")
