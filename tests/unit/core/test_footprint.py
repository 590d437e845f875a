"""Batches' ``byte_size`` tracks the memory their events really hold (tracemalloc), for the kinds buffers hold."""

from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec

from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.observe.stats import StatsRegistry
from agent.sources.generate import render_line
from agent.sources.tail.checkpoint import CheckpointStore
from agent.sources.tail.source import TailConfig, TailSource
from agent.transforms.parse import ParseConfig, ParseTransform

EVENTS = 3000
TOLERANCE = 0.30


@contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Bytes Python holds now, relative to the start of the block (what was freed meanwhile not counted)."""
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]

        def held() -> int:
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - start

        yield held
    finally:
        tracemalloc.stop()
        gc.enable()


def lines(shape: str) -> list[bytes]:
    """``EVENTS`` lines as ``agent bench`` writes them (docker: ~338 B, the app's JSON inside), cut from one
    buffer as the tail's splitter cuts them."""
    rng, now = random.Random(5), time.time()
    return b"\n".join([render_line(shape, rng, now, i) for i in range(EVENTS)]).split(b"\n")


class _Keep:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def send(self, batch: Batch) -> None:
        self.batches.append(batch)


def tail_source(tmp_path: Path) -> tuple[TailSource, Any]:
    """A tail source (and its context) that has found a kubelet-named Docker file of ``EVENTS`` lines."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / f"web-7d9f_prod_nginx-{'4f' * 32}.log").write_bytes(b"\n".join(lines("docker")) + b"\n")
    config = msgspec.convert({"type": "tail", "include": [str(logs / "*.log")], "format": "docker",
                              "read_from": "beginning"}, TailConfig)
    source = TailSource(config, BuildContext("files", tmp_path, tmp_path, StatsRegistry().get("f", "source", "tail")))
    source.store = CheckpointStore(tmp_path / "checkpoints")
    source.store.load()
    source._scan(True, SimpleNamespace(watch=lambda path: None, retain=lambda dirs: None))  # type: ignore[arg-type]
    return source, SimpleNamespace(out=_Keep(), shutdown=asyncio.Event())


async def read(source: TailSource, ctx: Any) -> list[Batch]:
    """The LOGS batches the tail source makes of its file, without their acks (not what a buffer holds)."""
    for _ in range(100):  # bounded: each round reads one chunk of the file
        if not await source._read_round(ctx):  # type: ignore[arg-type]
            break
    for batch in ctx.out.batches:
        batch.acks.clear()
    return ctx.out.batches


def parse(batches: list[Batch]) -> list[Batch]:
    stats = StatsRegistry().get("parse", "transform", "parse")
    transform = ParseTransform(ParseConfig(inputs=["in"], field="message"), BuildContext("parse", Path("."),
                                                                                         Path("."), stats))
    out = [transform.process(batch) for batch in batches]
    return [batch for batch in out if batch is not None]


def assert_tracks(batches: list[Batch], held: int) -> None:
    assert sum(map(len, batches)) == EVENTS
    estimate = sum(batch.byte_size for batch in batches)
    assert abs(estimate - held) <= TOLERANCE * held, f"estimate {estimate / EVENTS:.0f} B/event, " \
                                                     f"held {held / EVENTS:.0f} B/event"


async def test_decoded_and_parsed_docker_events_are_accounted_as_the_memory_they_hold(tmp_path: Path) -> None:
    source, ctx = tail_source(tmp_path)
    with traced() as held:
        batches = await read(source, ctx)
        assert all(batch.kind is Kind.LOGS for batch in batches)
        assert_tracks(batches, held())
        batches = parse(batches)
        assert_tracks(batches, held())
    assert source.store is not None
    source.store.close()


def test_raw_json_lines_parsed_are_accounted_as_the_memory_they_hold() -> None:
    raw = lines("json")
    with traced() as held:
        batches = [Batch(raw[i:i + 500], Kind.JSON_LINES, sum(map(len, raw[i:i + 500])))  # as stdin sizes them
                   for i in range(0, EVENTS, 500)]
        del raw
        batches = parse(batches)
        assert all(batch.kind is Kind.LOGS for batch in batches)
        assert_tracks(batches, held())
