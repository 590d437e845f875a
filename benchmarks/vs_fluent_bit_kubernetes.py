"""tail -> kubernetes side by side with Fluent Bit's kubernetes filter, against the fake API server serving one
node's 110 pods; also the agent's tail -> blackhole as the yardstick of the kubernetes stage's cost. See
agent/bench/versus/kubernetes.py and benchmarks/README.md.

    .venv/bin/python benchmarks/vs_fluent_bit_kubernetes.py [--lines 1000000] [--pods 110] [--repeats 3]
        [--sides fluent-bit,agent,agent-tail] [--json]
"""

from agent.bench.versus.kubernetes import main

if __name__ == "__main__":
    raise SystemExit(main())
