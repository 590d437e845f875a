"""What one match of the regex_parsing line costs, against the whole per-line budget of 40 MiB/s on one core.

    .venv/bin/python benchmarks/regex_engine_micro.py [--lines 200000] [--repeat 5]

On the harness's Apache lines (``agent.bench.versus.regex``), per line, the best of ``--repeat`` passes with the
garbage collector off:

- ``re2 match``: RE2's ``Match`` through the binding's entry the ``regex`` codec calls (no fields made);
- ``regex codec``: :class:`agent.codecs.parsers.regex.RegexParser` ``parse_bytes`` (the match and the fields);
- ``python re match``: the standard library's backtracking engine on the same pattern, for scale only (the agent
  never runs a user's pattern on it: it is not linear in time);
- ``budget``: the CPU per line that 40 MiB/s on one core allows for the whole pipeline (read, split, parse,
  encode, write), at these lines' mean length.
"""

from __future__ import annotations

import argparse
import gc
import re
import time
from collections.abc import Callable

import re2

from agent.bench.versus.regex import APACHE_REGEX, apache_lines
from agent.codecs.parsers.regex import RegexParser


def best_ns(run: Callable[[], object], lines: int, repeat: int) -> float:
    """The fastest of ``repeat`` calls of ``run``, in nanoseconds per line."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / lines * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = apache_lines(args.lines)
    lines = data.split(b"\n")[:-1]
    codec = RegexParser(APACHE_REGEX)
    match, unanchored = codec._match, re2._Anchor.UNANCHORED
    stdlib = re.compile(APACHE_REGEX.replace("(?<", "(?P<").encode())
    gc.disable()
    cases: dict[str, Callable[[], object]] = {
        "re2 match": lambda: [match(unanchored, line, 0, len(line)) for line in lines],
        "regex codec": lambda: [codec.parse_bytes(line) for line in lines],
        "python re match": lambda: [stdlib.match(line) for line in lines],
    }
    for name, run in cases.items():
        print(f"{name:<16} {best_ns(run, len(lines), args.repeat):>7.0f} ns/line")
    budget = len(data) / len(lines) / (40 * 2**20) * 1e9
    print(f"{'budget':<16} {budget:>7.0f} ns/line (40 MiB/s at {len(data) / len(lines):.0f} B a line)")


if __name__ == "__main__":
    main()
