"""Fluent Bit and the agent side by side on the metrics path: see agent/bench/versus/metrics.py and
benchmarks/README.md.

    .venv/bin/python benchmarks/vs_fluent_bit_metrics.py [--targets 20] [--warmup 10] [--seconds 40] [--repeats R]
"""

from agent.bench.versus.metrics import main

if __name__ == "__main__":
    raise SystemExit(main())
