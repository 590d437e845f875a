"""Real memory per buffered event, of each kind the pipeline buffers, against the estimate batches carry.

    .venv/bin/python benchmarks/memory_per_event.py              # 100k events of each kind
    .venv/bin/python benchmarks/memory_per_event.py --events 20000

Each kind is built in a fresh child process twice: once under ``tracemalloc`` (the bytes Python allocated
for the list of events, after the lines they were made from are freed), once without it for the RSS delta
(what the process really grew by: pymalloc's arenas and slack included; tracemalloc's own tables would
distort it). The kinds:

- ``lines``: the raw Docker json-file lines as ``bytes`` (``Kind.LINES``), as ``render_line("docker")``
  writes them for ``agent bench`` (~338 B, an app's JSON record inside the ``log`` string);
- ``decoded``: those lines through ``DockerDecoder`` with the fields a tail event carries (``file``,
  ``inode``, ``offset``, one shared ``kubernetes`` dict per file, as the tail source gives it);
- ``parsed``: the same events after ``parse`` (``field: message``): the app's JSON merged into the event;
- ``metrics``: ``Sample`` objects as the ``generate`` source makes them.

For each: bytes per event (tracemalloc and RSS), the ratio to the raw line's length, and the bytes per
event the batch's ``byte_size`` accounts for (``agent.core.footprint``; for lines, their length, as the
stdin and socket sources count them), with its ratio to tracemalloc's.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import time
import tracemalloc
from typing import Any

from agent.codecs.container import DockerDecoder
from agent.core.batch import Batch, Kind
from agent.core.footprint import decoded_bytes
from agent.core.metric import Sample
from agent.sources.generate import render_line
from agent.sources.tail.files import kubernetes_fields
from agent.topology.memory import rss_bytes

KINDS = ("lines", "decoded", "parsed", "metrics")
PATH = "/var/log/containers/checkout-7d9f8b6c5d-x2k4p_shop_checkout-" + "ab" * 32 + ".log"
READ_BYTES = 256 * 1024  # events are decoded a read at a time, as the tail source does


def docker_file(n: int, seed: int = 42) -> bytes:
    """A file of ``n`` distinct Docker lines as ``agent bench`` writes them (~338 B, newline after each)."""
    rng, now = random.Random(seed), time.time()
    return b"\n".join([render_line("docker", rng, now, i) for i in range(n)]) + b"\n"


def read_lines(data: bytes) -> list[list[bytes]]:
    """The lines of ``data`` as the tail source gets them: a read of ``READ_BYTES`` at a time, split."""
    out, start = [], 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + READ_BYTES) + 1 or len(data)
        out.append(data[start:end - 1].split(b"\n"))
        start = end
    return out


def decode(data: bytes) -> list[Batch]:
    """The LOGS batches the tail source makes of ``data`` (one per read, as ``TailSource._emit`` sizes them)."""
    extra: dict[str, Any] = {"file": PATH, "inode": 1234567, "kubernetes": kubernetes_fields(PATH)}
    decoder = DockerDecoder(extra, 1024 * 1024)
    batches, pos = [], 0
    for lines in read_lines(data):  # each read's lines are freed once decoded, as in the tail source
        starts = [pos]
        for line in lines:
            starts.append(starts[-1] + len(line) + 1)
        events: list[dict[str, Any]] = []
        decoder.decode(lines, starts, events)
        batches.append(Batch(events, Kind.LOGS, decoded_bytes(starts[-1] - pos, len(events))))
        pos = starts[-1]
    return batches


def parse(batches: list[Batch]) -> list[Batch]:
    """The batches through the ``parse`` transform (``field: message``)."""
    from agent.observe.stats import StatsRegistry
    from agent.transforms.parse import ParseConfig, ParseTransform

    class Ctx:
        stats = StatsRegistry().get("parse", "transform", "parse")
        component_id = "parse"

    transform = ParseTransform(ParseConfig(inputs=["in"], field="message"), Ctx())  # type: ignore[arg-type]
    return [transform.process(batch) for batch in batches]  # type: ignore[misc]


def samples(n: int) -> list[Sample]:
    now = int(time.time() * 1000)
    return [Sample.of("generated_requests_total", (("instance", "generate:0"), ("path", f"/api/v1/{i % 97}")),
                   float(i), now, "counter") for i in range(n)]


def build(kind: str, n: int, traced: bool) -> dict[str, Any]:
    """Build ``n`` events of ``kind`` from a file's bytes (one large allocation, there before and after);
    return the bytes they hold once everything transient is freed, and what their batches account for."""
    data = docker_file(n) if kind != "metrics" else b""
    if kind == "parsed":
        import agent.transforms.parse  # noqa: F401  # its modules imported before tracing: not the events' memory
    gc.collect()
    gc.disable()
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else rss_bytes()
    held: Any
    if kind == "lines":
        held = read_lines(data)
        estimate = len(data) - n  # stdin's and socket's byte_size: the lines' bytes
    elif kind == "metrics":
        held = samples(n)
        estimate = 0  # not shown: generate's batches share one pool of samples
    else:
        held = decode(data)
        if kind == "parsed":
            held = parse(held)
        estimate = sum(batch.byte_size for batch in held)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if traced else rss_bytes()
    if traced:
        tracemalloc.stop()
    return {"kind": kind, "events": n, "raw_line_bytes": (len(data) - n) / n, "held_bytes": after - before,
            "estimate_bytes": estimate}


def measure(kind: str, n: int, traced: bool) -> dict[str, Any]:
    """``build`` in a fresh child process (so RSS deltas start from the same state)."""
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--events", str(n)]
                         + (["--traced"] if traced else []), check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--child", choices=KINDS)
    parser.add_argument("--traced", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(build(args.child, args.events, args.traced)))
        return
    n = args.events
    print(f"{n:,} events of each kind; bytes per event held in memory")
    print(f"{'kind':<9} {'tracemalloc':>11} {'RSS delta':>10} {'/raw line':>9} {'estimate':>9} {'est/traced':>10}")
    raw_line = 0.0
    for kind in KINDS:
        traced, rss = measure(kind, n, True), measure(kind, n, False)
        raw_line = raw_line or traced["raw_line_bytes"]
        per, per_rss, est = traced["held_bytes"] / n, rss["held_bytes"] / n, traced["estimate_bytes"] / n
        shown = f"{est:>9.0f} {est / per:>10.2f}" if kind != "metrics" else f"{'-':>9} {'-':>10}"
        print(f"{kind:<9} {per:>11.0f} {per_rss:>10.0f} {per / raw_line:>9.2f} {shown}")
    print(f"raw line: {raw_line:.0f} B on average (no newline)")


if __name__ == "__main__":
    main()
