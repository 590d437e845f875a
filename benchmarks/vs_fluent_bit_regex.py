"""regex_parsing side by side with Fluent Bit: Apache common log lines over TCP, a regex with named groups,
JSON over TCP; see agent/bench/versus/regex.py and benchmarks/README.md.

    .venv/bin/python benchmarks/vs_fluent_bit_regex.py [--lines 2000000] [--repeats 2] [--floor] [--json]
"""

from agent.bench.versus.regex import main

if __name__ == "__main__":
    raise SystemExit(main())
