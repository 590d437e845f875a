"""Micro-benchmark of the expression language: a condition compiled once, evaluated on many events.

    .venv/bin/python benchmarks/expr_micro.py [--events 1000000] [--repeat 5]

Builds parsed container log events (an application's JSON log plus the tail's ``kubernetes`` fields) and
times, per event over whole batches as a stage runs them:

- ``floor``: the same loop with a hand-written Python test (``e.get("level") == ...``), the least any
  compiled condition can cost;
- ``filter``: ``level == "ERROR" and kubernetes.namespace != "kube-system"``, kept events collected;
- ``route x3``: three routes (``type == "audit"``, ``level in ["ERROR", "CRITICAL"]``,
  ``kubernetes.namespace starts_with "shop"``): per route the indexes of the events it matches, then
  those no route took (``_unmatched``), as the ``route`` stage picks them; ``3 tests`` is the three
  conditions alone, without the bookkeeping of indexes;
- ``regex``: ``message =~ "timeout|refused"`` (RE2);
- ``filter stage`` and ``route stage``: the same filter and three routes through the real stages
  (``FilterTransform.process``, ``RouteTransform.route``) on batches of ``--batch`` events, as the
  topology calls them: the figures issue 11's target (under 0.3 us per event) is about.

The garbage collector is set as `agent run` sets it (:func:`agent.runtime.tune_gc`: what start-up made,
the events here included, frozen; gen0 at 50,000 allocations), since that is how the stages run. Prints the best
of ``--repeat`` runs in nanoseconds per event, wall clock and CPU (``time.process_time``).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.expr import compile_condition
from agent.observe.stats import ComponentStats
from agent.runtime import tune_gc
from agent.transforms.filter import FilterConfig, FilterTransform
from agent.transforms.route import RouteConfig, RouteTransform

FILTER = 'level == "ERROR" and kubernetes.namespace != "kube-system"'
ROUTES = ('type == "audit"', 'level in ["ERROR", "CRITICAL"]', 'kubernetes.namespace starts_with "shop"')
REGEX = 'message =~ "timeout|refused"'
WORDS = "request handled for user cache miss upstream latency order payment retry timeout refused".split()


def make_events(count: int) -> list[dict[str, Any]]:
    rnd = random.Random(7)
    namespaces = ["shop", "kube-system", "payments", "default"]
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    events = []
    for i in range(count):
        event: dict[str, Any] = {
            "timestamp": f"2026-11-22T17:00:{i % 60:02d}.000Z",
            "level": rnd.choice(levels),
            "message": " ".join(rnd.choices(WORDS, k=8)),
            "duration_ms": rnd.randint(1, 2000),
            "stream": "stdout",
            "kubernetes": {"namespace": rnd.choice(namespaces), "pod": f"pod-{i % 50}", "container": "app"},
        }
        if i % 20 == 0:
            event["type"] = "audit"
        events.append(event)
    return events


def run_floor(events: list[dict[str, Any]]) -> int:
    kept = [e for e in events
            if e.get("level") == "ERROR" and (e.get("kubernetes") or {}).get("namespace") != "kube-system"]
    return len(kept)


def run_filter(events: list[dict[str, Any]]) -> int:
    keep = compile_condition(FILTER)
    return len([e for e in events if keep(e)])


def run_routes(events: list[dict[str, Any]]) -> int:
    tests = [compile_condition(text) for text in ROUTES]
    matched = [[i for i, event in enumerate(events) if test(event)] for test in tests]
    taken = set().union(*matched)
    unmatched = [i for i in range(len(events)) if i not in taken]
    return sum(map(len, matched)) + len(unmatched)


def run_route_tests(events: list[dict[str, Any]]) -> int:
    tests = [compile_condition(text) for text in ROUTES]
    return sum(len([event for event in events if test(event)]) for test in tests)


def run_regex(events: list[dict[str, Any]]) -> int:
    match = compile_condition(REGEX)
    return len([e for e in events if match(e)])


BATCH = 1000  # events a batch, as the tail source hands them on


def _context(name: str) -> BuildContext:
    return BuildContext(name, Path("."), Path("."), ComponentStats(name, "transform", name))


def _batches(events: list[dict[str, Any]]) -> list[Batch]:
    return [Batch(events[i:i + BATCH], Kind.LOGS, 0) for i in range(0, len(events), BATCH)]


def run_filter_stage(events: list[dict[str, Any]]) -> int:
    stage = FilterTransform(FilterConfig(inputs=["in"], condition=FILTER), _context("filter"))
    return sum(len(kept) for batch in _batches(events) if (kept := stage.process(batch)) is not None)


def run_route_stage(events: list[dict[str, Any]]) -> int:
    routes = {f"r{k}": text for k, text in enumerate(ROUTES)}
    stage = RouteTransform(RouteConfig(inputs=["in"], routes=routes), _context("route"))
    return sum(len(part) for batch in _batches(events) for _, part in stage.route(batch))


CASES: dict[str, Callable[[list[dict[str, Any]]], int]] = {
    "floor": run_floor, "filter": run_filter, "route x3": run_routes, "3 tests": run_route_tests, "regex": run_regex,
    "filter stage": run_filter_stage, "route stage": run_route_stage,
}


def main() -> None:
    global BATCH
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000, help="events a batch for the stage cases")
    args = parser.parse_args()
    BATCH = args.batch
    events = make_events(args.events)
    tune_gc()  # the collector as `agent run` sets it (the events made above frozen, gen0 at 50,000)
    print(f"{'case':<12} {'ns/event':>9} {'cpu ns/event':>13} {'matched':>9}")
    for name, case in CASES.items():
        best_wall = best_cpu = float("inf")
        matched = 0
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            matched = case(events)
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        print(f"{name:<12} {best_wall / args.events * 1e9:>9.0f} {best_cpu / args.events * 1e9:>13.0f} {matched:>9}")


if __name__ == "__main__":
    main()
