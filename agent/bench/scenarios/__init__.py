"""The built-in throughput scenarios and what each measures.

Every scenario builds a pipeline from a config document, runs it in this
process (on the running loop, uvloop under ``agent bench``) and measures:
wall time, this process's CPU time (user + system from ``getrusage``
``RUSAGE_SELF`` deltas, so peers in other processes are not charged), and
the peak RSS of the process (``ru_maxrss``, a process-lifetime peak: when
several scenarios run in one process, a later one reports the peak so far).

A scenario that loses or duplicates events raises :class:`BenchError` with
the counts of each stage: a benchmark must not report a rate for data it
did not deliver.

The ``tail`` scenarios write their files before the clock starts (the
page cache holds them), so they measure reading and decoding, not the disk;
next to the agent's figures they report the raw read rate of the same files
(``cat FILES > /dev/null`` in a child process: its wall time, its CPU time
from ``RUSAGE_CHILDREN`` and MiB/s) as the floor any reader pays.

The ``tail_parse_to_elasticsearch`` scenarios send to a minimal Elasticsearch
in another process (``python -m agent.bench.peers bulk``) and check what it
counted: every document exactly once, by distinct ``_id``. That peer reports
its own CPU seconds, so a run shows whether it, not the agent, set the pace.

The metrics scenarios (:mod:`~agent.bench.scenarios.metrics`) count samples
as events: ``scrape_page_to_remote_write`` runs the scrape loop's processing
and the remote-write sink's encoding in process on a real node-exporter page;
``scrape_500_targets_to_remote_write`` runs the agent against 500 simulated
exporters and a decoding remote-write receiver, both in other processes, and
reports its CPU over the steady intervals as a fraction of one core.

What the scenarios share is in :mod:`~agent.bench.scenarios.common`, each
family in a module of its own; :data:`SCENARIOS` lists them in the order
``agent bench`` lists and runs them.
"""

from agent.bench.peers.lines import LINE_BYTES
from agent.bench.scenarios.common import BenchError, ProgressFn, Result, Scenario
from agent.bench.scenarios.elasticsearch import (
    ES_BATCH_EVENTS,
    ES_CONCURRENCY,
    tail_parse_to_elasticsearch,
    tail_parse_to_elasticsearch_gzip,
)
from agent.bench.scenarios.file_to_tcp import file_to_tcp
from agent.bench.scenarios.generate import generate_parse_json_to_file, generate_to_blackhole
from agent.bench.scenarios.kafka import KAFKA_PARTITIONS, KAFKA_RECORD_BYTES, generate_to_kafka
from agent.bench.scenarios.kafka_source import kafka_aggregators_scale, kafka_to_blackhole
from agent.bench.scenarios.kubernetes import tail_kubernetes_to_blackhole
from agent.bench.scenarios.metrics import (
    INTERVAL_S,
    SERIES,
    TARGETS,
    scrape_500_targets_to_remote_write,
    scrape_page_to_remote_write,
)
from agent.bench.scenarios.tail import TAIL_FILES, tail_docker_multiline_to_blackhole, tail_docker_to_blackhole
from agent.bench.scenarios.tcp import TCP_CONNECTIONS, tcp_to_blackhole, tcp_to_http, tcp_to_tcp

__all__ = ["SCENARIOS", "BenchError", "ProgressFn", "Result", "Scenario"]

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("generate_to_blackhole", "generate docker json-file lines (batches of 1000) -> blackhole",
             2_000_000, generate_to_blackhole),
    Scenario("generate_parse_json_to_file", "generate JSON lines -> parse (json) -> file (NDJSON, temp dir)",
             1_000_000, generate_parse_json_to_file),
    Scenario("generate_to_kafka", f"generate {KAFKA_RECORD_BYTES}-byte lines -> kafka (raw, lz4, acks all, "
             f"{KAFKA_PARTITIONS} partitions) -> tansu broker in another process", 2_000_000, generate_to_kafka),
    Scenario("kafka_to_blackhole", f"a topic of {KAFKA_PARTITIONS} partitions pre-filled with "
             f"{KAFKA_RECORD_BYTES}-byte JSON records (tansu, another process) -> kafka source (one group member; "
             "the clock starts at the first record) -> blackhole", 2_000_000, kafka_to_blackhole),
    Scenario("kafka_aggregators_scale", "one aggregator agent (agent run: kafka -> modify -> blackhole), then two "
             f"in one consumer group, each on a pre-filled topic of {KAFKA_PARTITIONS} partitions; reports both "
             "rates and their ratio", 2_000_000, kafka_aggregators_scale),
    Scenario("tcp_to_blackhole", f"{TCP_CONNECTIONS} TCP connections of {LINE_BYTES}-byte lines from "
             "another process -> socket source -> blackhole", 2_000_000, tcp_to_blackhole),
    Scenario("tcp_to_tcp", f"{TCP_CONNECTIONS} TCP connections of {LINE_BYTES}-byte lines -> socket source "
             "-> socket sink (text) -> counting receiver in another process", 2_000_000, tcp_to_tcp),
    Scenario("tcp_to_http", f"{TCP_CONNECTIONS} TCP connections of {LINE_BYTES}-byte lines -> socket source "
             "-> http sink (text lines, 1000 a request) -> counting HTTP peer in another process", 2_000_000,
             tcp_to_http),
    Scenario("tail_docker_to_blackhole", f"tail {TAIL_FILES} Docker json-file logs (written beforehand, read "
             "from the beginning) -> blackhole; also times cat of the same files", 2_000_000,
             tail_docker_to_blackhole),
    Scenario("tail_docker_multiline_to_blackhole", "the same with a Java app's stack traces (1 in 50 records, "
             "14 lines each), multiline preset java -> blackhole; --events counts lines", 2_000_000,
             tail_docker_multiline_to_blackhole),
    Scenario("tail_kubernetes_to_blackhole", "tail Docker json-file logs of a node's 110 pods (one file each) -> "
             "kubernetes (pod metadata from the fake API server in another process: one list + watch) -> "
             "blackhole; reports the API requests and the metadata misses", 1_000_000, tail_kubernetes_to_blackhole),
    Scenario("file_to_tcp", f"another process appends {LINE_BYTES}-byte numbered lines to a file -> tail (raw) "
             "-> socket sink (text) -> receiver checking count, bytes and order", 2_000_000, file_to_tcp),
    Scenario("tail_parse_to_elasticsearch", f"tail {TAIL_FILES} Docker json-file logs (app JSON inside) -> parse "
             f"(message) -> elasticsearch (id auto, batches of {ES_BATCH_EVENTS}, {ES_CONCURRENCY} requests in "
             "flight) -> minimal _bulk server in another process", 1_000_000, tail_parse_to_elasticsearch),
    Scenario("tail_parse_to_elasticsearch_gzip", "the same with compression: gzip", 1_000_000,
             tail_parse_to_elasticsearch_gzip),
    Scenario("scrape_page_to_remote_write", "a node-exporter page (1,490 samples) over and over: scrape loop "
             "(parse, metric relabel drop + replace) -> remote-write requests (2000 samples, snappy), in process, "
             "no HTTP; --events counts samples", 3_000_000, scrape_page_to_remote_write),
    Scenario("scrape_500_targets_to_remote_write", f"{TARGETS} simulated exporters of {SERIES:,} series in another "
             f"process, every {INTERVAL_S:g}s -> prometheus_scrape -> prometheus_remote_write -> decoding receiver "
             "in another process; --events counts samples (whole intervals, the first one warm-up)",
             4 * TARGETS * (SERIES + 5), scrape_500_targets_to_remote_write),
)}
