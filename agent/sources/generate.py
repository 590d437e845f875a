"""Source `generate`: synthetic logs or metrics at a rate or for a count.

Shapes: ``docker`` (json-file lines), ``cri`` (containerd/CRI-O lines),
``json`` (an application's structured log), ``text`` (a plain log line) and
``metrics``. Lines come from a pool rendered once per second of wall time, so
timestamps move while the hot loop only slices a list. Each batch carries an
acknowledgement; ``committed_events`` in the component's stats shows how far
delivery has been confirmed end to end.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Literal

import orjson

from agent.config.model import SourceConfig
from agent.config.registry import BuildContext, register
from agent.core.ack import OrderedAcks
from agent.core.batch import Batch, Kind
from agent.core.component import SourceContext
from agent.core.metric import Sample, Series

POOL_SIZE = 4096
SHAPES = ("docker", "cri", "json", "text", "metrics")
_LEVELS = ("info", "info", "info", "debug", "warn", "error")
_SERVICES = ("checkout", "payments", "cart", "search", "auth")
_STATUSES = (200, 200, 201, 404, 500)
_PATHS = ("/api/v1/orders", "/api/v1/cart", "/healthz", "/api/v1/search", "/login")
# the series of format metrics, per path: a request counter and an in-flight gauge (built once, reused)
_METRIC_SERIES = [(Series("generated_requests_total", (("instance", "generate:0"), ("path", path)), "counter"),
                   Series("generated_inflight_requests", (("instance", "generate:0"), ("path", path)), "gauge"))
                  for path in _PATHS]


class GenerateConfig(SourceConfig, tag="generate"):
    """Emit synthetic events: Docker json-file, CRI, JSON or text lines, or metric samples.

    ``rate`` is events per second (unset: as fast as the pipeline takes them); with ``count`` the source stops after
    that many, and once every source has stopped the agent drains and exits. For trying pipelines and benchmarks.
    """

    format: Literal["docker", "cri", "json", "text", "metrics"] = "json"
    """Shape of the lines: docker (json-file), cri, json (an app's JSON lines), text, or metrics (a counter and a gauge
    per path).
    """
    rate: float | None = None
    """Events per second; none: as fast as the pipeline takes them."""
    count: int | None = None
    """Stop after this many events (the agent then drains and exits if nothing else runs); none: never stop."""
    batch_size: int = 1000
    """Events per emitted batch."""
    lines: list[str] | None = None
    """Emit these lines, in turn, instead of generated ones."""

    def output_type(self) -> str:
        return "metrics" if self.format == "metrics" else "logs"


def _app_record(rng: random.Random, now: float, i: int) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{i % 1000:03d}Z"
    return {
        "timestamp": stamp,
        "level": rng.choice(_LEVELS),
        "service": rng.choice(_SERVICES),
        "trace_id": f"{rng.getrandbits(64):016x}",
        "message": f"request handled method=GET path={rng.choice(_PATHS)} status={rng.choice(_STATUSES)}",
        "metadata": {"duration_ms": rng.randint(1, 900), "user_id": rng.randint(1, 10_000),
                     "region": rng.choice(("eu-west-1", "us-east-1"))},
    }


def render_line(shape: str, rng: random.Random, now: float, i: int) -> bytes:
    """One synthetic line of ``shape`` (not ``metrics``)."""
    record = _app_record(rng, now, i)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{i % 1_000_000_000:09d}Z"
    stream = "stderr" if record["level"] == "error" else "stdout"
    if shape == "json":
        return orjson.dumps(record)
    if shape == "text":
        level = record["level"].upper()
        return f"{record['timestamp']} {level} [{record['service']}] {record['message']}".encode()
    if shape == "docker":
        return orjson.dumps({"log": orjson.dumps(record).decode() + "\n", "stream": stream, "time": stamp})
    if shape == "cri":
        return f"{stamp} {stream} F ".encode() + orjson.dumps(record)
    raise ValueError(f"unknown shape {shape}")


@register("source", "generate", GenerateConfig, "Generates synthetic logs or metrics.")
class GenerateSource:
    """Emits batches of ``batch_size`` events, paced to ``rate``, until ``count`` or shutdown."""

    def __init__(self, config: GenerateConfig, ctx: BuildContext) -> None:
        self.config = config
        self.output_type = config.output_type()
        self.kind = {"docker": Kind.JSON_LINES, "json": Kind.JSON_LINES, "metrics": Kind.METRICS}.get(
            config.format, Kind.LINES)
        self._rng = random.Random(42)
        self._pool: list[Any] = []
        self._pool_second = -1

    def _pool_for(self, now: float) -> list[Any]:
        second = int(now)
        if second != self._pool_second:
            self._pool_second = second
            if self.config.lines is not None:
                self._pool = [line.encode() for line in self.config.lines] or [b""]
            elif self.config.format == "metrics":
                self._pool = self._samples(now)
            else:
                self._pool = [render_line(self.config.format, self._rng, now, i) for i in range(POOL_SIZE)]
        return self._pool

    def _samples(self, now: float) -> list[Sample]:
        ms = int(now * 1000)
        out = []
        for i, (requests, inflight) in enumerate(_METRIC_SERIES):
            out.append(Sample(requests, float(self._pool_second * (i + 1)), ms))
            out.append(Sample(inflight, float(self._rng.randint(0, 50)), ms))
        return out

    def _batch(self, n: int, offset: int) -> Batch:
        pool = self._pool_for(time.time())
        start = offset % len(pool)
        events = pool[start:start + n]
        while len(events) < n:
            events = events + pool[: n - len(events)]
        if self.kind is Kind.METRICS:
            size = 64 * n
        else:
            size = sum(map(len, events)) + n
        return Batch(events, self.kind, size)

    async def run(self, ctx: SourceContext) -> None:
        def commit(position: int) -> None:
            ctx.stats.gauges["committed_events"] = position

        acks: OrderedAcks[int] = OrderedAcks(commit)
        emitted = 0
        count, rate = self.config.count, self.config.rate
        started = time.monotonic()
        while not ctx.shutdown.is_set() and (count is None or emitted < count):
            n = self.config.batch_size if count is None else min(self.config.batch_size, count - emitted)
            if rate is not None:
                due = int((time.monotonic() - started) * rate) - emitted
                if due <= 0:
                    await _sleep_or_stop(ctx.shutdown, min(1.0, max(0.01, 1 / rate)))
                    continue
                n = min(n, due)
            batch = self._batch(n, emitted)
            emitted += n
            batch.acks.append(acks.track(emitted))
            ctx.stats.received_events += n
            ctx.stats.received_bytes += batch.byte_size
            await ctx.out.send(batch)
            await asyncio.sleep(0)  # let consumers and signal handlers run between batches
        await acks.wait_idle()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
