"""Fluent Bit and the agent side by side on the same data: see agent/bench/versus and benchmarks/README.md.

    .venv/bin/python benchmarks/vs_fluent_bit.py [--lines N] [--scenarios a,b] [--repeats R] [--json]
"""

from agent.bench.versus.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
