"""tail -> kafka side by side with Fluent Bit's kafka output: the same 200-byte lines into a fresh tansu broker
per run (lz4, acks all, 4 partitions); CPU per record of each. See agent/bench/versus/kafka.py.

    .venv/bin/python benchmarks/vs_fluent_bit_kafka.py [--lines 2000000] [--repeats 1]
        [--sides fluent-bit,agent] [--json]
"""

from agent.bench.versus.kafka import main

if __name__ == "__main__":
    raise SystemExit(main())
