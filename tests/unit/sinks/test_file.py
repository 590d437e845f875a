from __future__ import annotations

import asyncio
import errno
import gzip
import io
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
import zstandard
from components import feed
from helpers import pipeline, wait_for

import agent.sinks.file as file_sink
from agent.buffers.memory import MemoryBuffer
from agent.config import units
from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.core.component import SinkContext
from agent.delivery import http
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sinks.file import OpenFile, PathTemplate
from agent.topology.running import Topology


async def run_to_end(text: str, tmp_path: Path) -> Topology:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 20) == 0
    return topo


def test_path_template_uses_the_event_time_and_fields() -> None:
    template = PathTemplate("/logs/%Y/{{ kubernetes.namespace }}-{{app}}.log")
    path = template.render({"kubernetes": {"namespace": "prod"}, "app": "a/b", "time": "1970-01-01T00:00:00Z"})
    assert path == "/logs/1970/prod-a_b.log"
    assert template.render({"timestamp": 0}) == "/logs/1970/unknown-unknown.log"
    assert template.render({"timestamp": 0, "app": "%Y"}) == "/logs/1970/unknown-%Y.log"  # a value is no code
    key = PathTemplate("/logs/%Y-%m-%d.log").partition_key()
    today = time.strftime("/logs/%Y-%m-%d.log", time.gmtime())
    assert [key(e) for e in ({"time": "2026-03-04T23:59:59Z"}, {"timestamp": 0}, {})] == [
        "/logs/2026-03-04.log", "/logs/1970-01-01.log", today]  # (wrong only if run across midnight)


async def test_events_are_split_by_field_template(tmp_path: Path) -> None:
    await run_to_end(f"""
sources:
  gen: {{type: generate, format: json, count: 3000}}
transforms:
  parsed: {{type: parse, inputs: [gen]}}
sinks:
  out: {{type: file, inputs: [parsed], path: "{tmp_path}/by-service/{{{{ service }}}}.ndjson"}}
""", tmp_path)
    files = sorted((tmp_path / "by-service").iterdir())
    assert {f.stem for f in files} == {"checkout", "payments", "cart", "search", "auth"}
    total = 0
    for f in files:
        events = [orjson.loads(line) for line in f.read_bytes().splitlines()]
        assert {e["service"] for e in events} == {f.stem}
        total += len(events)
    assert total == 3000


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
async def test_compressed_output_decodes_to_every_event(tmp_path: Path, compression: str) -> None:
    out = tmp_path / f"out.{compression}"
    await run_to_end(f"""
sources:
  gen: {{type: generate, format: docker, count: 5000, batch_size: 700}}
sinks:
  out: {{type: file, inputs: [gen], path: "{out}", compression: {compression}}}
""", tmp_path)
    lines = decompress_all(out.read_bytes(), compression)  # one member or frame per batch
    assert len(lines) == 5000
    assert orjson.loads(lines[0])["stream"] in ("stdout", "stderr")


async def test_files_rotate_by_size_and_keep_every_line(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    await run_to_end(f"""
sources:
  gen: {{type: generate, format: text, count: 4000, batch_size: 100}}
sinks:
  out: {{type: file, inputs: [gen], encoding: text, path: "{out}", max_bytes: 64KiB}}
""", tmp_path)
    rotated = sorted(tmp_path.glob("out.log.*"), key=lambda p: int(p.suffix[1:]))
    assert len(rotated) >= 3
    for path in rotated:
        assert 64 * 1024 <= path.stat().st_size < 64 * 1024 + 100 * 200
    lines = sum(len(p.read_bytes().splitlines()) for p in [*rotated, out] if p.exists())
    assert lines == 4000


def compressed(lines: list[bytes], compression: str, finished: bool) -> bytes:
    """``lines`` as one gzip member or zstd frame, sync-flushed as the sink does; unfinished as a crash leaves it."""
    data = b"".join(line + b"\n" for line in lines)
    if compression == "gzip":
        gz = zlib.compressobj(6, zlib.DEFLATED, 31)
        return gz.compress(data) + gz.flush(zlib.Z_SYNC_FLUSH) + (gz.flush() if finished else b"")
    zs = zstandard.ZstdCompressor().compressobj()
    return zs.compress(data) + zs.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) + (zs.flush() if finished else b"")


def decompress_all(data: bytes, compression: str) -> list[bytes]:
    """Every line of every member or frame; raises if the last one is unfinished (as zcat and zstdcat fail)."""
    if compression == "gzip":
        return gzip.decompress(data).splitlines()
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    raw = reader.read()
    if not zstd_complete(data):
        raise ValueError("unfinished zstd frame")
    return raw.splitlines()


def zstd_complete(data: bytes) -> bool:
    """Whether ``data`` is whole zstd frames (stream_reader stops quietly at an unfinished one)."""
    while data:
        decoder = zstandard.ZstdDecompressor().decompressobj()
        decoder.decompress(data)
        if not decoder.eof:
            return False
        data = decoder.unused_data
    return True


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
@pytest.mark.parametrize("finished", [True, False])
async def test_a_compressed_file_is_continued_only_when_complete(tmp_path: Path, compression: str,
                                                                 finished: bool) -> None:
    out = tmp_path / "out.ndjson.z"
    old = [b"old %d" % i for i in range(100)]
    out.write_bytes(compressed(old, compression, finished))
    topo = await run_to_end(f"""
sources:
  gen: {{type: generate, format: text, count: 300, batch_size: 100}}
sinks:
  out: {{type: file, inputs: [gen], encoding: text, path: "{out}", compression: {compression}}}
""", tmp_path)
    new = decompress_all(out.read_bytes(), compression)  # every member or frame complete
    torn = topo.nodes["out"].stats.counters[("torn_files", ())]
    if finished:  # continued: the old lines, then the new ones, in one readable file
        assert not (tmp_path / "out.ndjson.z.1").exists() and torn == 0
        assert new[:100] == old and len(new) == 400
    else:  # moved aside, still decodable up to the tear; a new file with the new lines
        assert len(new) == 300 and torn == 1
        aside = (tmp_path / "out.ndjson.z.1").read_bytes()
        decoder = zlib.decompressobj(31) if compression == "gzip" else zstandard.ZstdDecompressor().decompressobj()
        assert decoder.decompress(aside).splitlines() == old


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_completeness_check_on_what_crashes_leave(tmp_path: Path, compression: str) -> None:
    from agent.sinks.file import _compressed_file_is_complete

    lines = [b"line %d %s" % (i, b"x" * (i % 50)) for i in range(3000)]
    whole = compressed(lines, compression, True)
    cases = {
        "two complete members or frames": (whole + whole, True),
        "unfinished after a sync flush": (compressed(lines, compression, False), False),
        "cut inside a block": (whole[: len(whole) // 2], False),
        "a complete one, then the start of another": (whole + whole[:7], False),
        "garbage after a complete one": (whole + b"\x00garbage", False),
    }
    for name, (data, complete) in cases.items():
        path = tmp_path / "f"
        path.write_bytes(data)
        assert _compressed_file_is_complete(str(path), compression) is complete, name


async def test_a_file_that_cannot_be_moved_aside_is_appended_to_rather_than_stalling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.sinks.file as file_sink

    def refuse(path: str) -> str:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(file_sink, "_move_aside", refuse)  # e.g. a directory the agent may not write to
    out = tmp_path / "out.gz"
    out.write_bytes(compressed([b"old"], "gzip", finished=False))
    topo = await run_to_end(f"""
sources:
  gen: {{type: generate, format: text, count: 50, batch_size: 10}}
sinks:
  out: {{type: file, inputs: [gen], encoding: text, path: "{out}", compression: gzip}}
""", tmp_path)
    stats = topo.nodes["out"].stats
    assert stats.errors[("torn_check_failed", "sending")] == 1 and stats.sent_events == 50
    assert not (tmp_path / "out.gz.1").exists()


def logs(events: list[dict[str, Any]]) -> Batch:
    return Batch(events, Kind.LOGS, 100 * len(events))


async def run_feed(batches: list[Batch], sink: str, tmp_path: Path) -> Topology:
    topo = Topology(pipeline(f"""
sources:
  in: {{type: test_feed, name: {feed(batches)}}}
sinks:
  out: {{type: file, inputs: [in], {sink}}}
""", tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 20) == 0
    return topo


def read_lines(path: Path, compression: str = "none") -> list[dict[str, Any]]:
    data = path.read_bytes()
    lines = data.splitlines() if compression == "none" else decompress_all(data, compression)
    return [orjson.loads(line) for line in lines]


async def test_field_values_cannot_take_a_path_out_of_its_directory(tmp_path: Path) -> None:
    hostile = ["..", ".", "", "../../escaped", "a\0b", "...", "é" * 300, "a\nb", "back\\slash",
               {"k": "../v"}, ["..", "_"]]
    events = [{"service": s, "n": i} for i, s in enumerate([*hostile, "api"])]
    root = tmp_path / "out" / "logs"
    topo = await run_feed([logs(events)], f'path: "{root}/{{{{ service }}}}/x.ndjson"', tmp_path)
    written = [p for p in tmp_path.rglob("*.ndjson")]
    assert all(p.is_relative_to(root) and p.parent.parent == root for p in written), written
    got = sorted(e["n"] for p in written for e in read_lines(p))
    assert got == list(range(len(events)))  # every event once, none lost to a bad name
    assert all(len(p.parent.name.encode()) <= 200 for p in written)
    assert (root / "api" / "x.ndjson").exists() and (root / ".._.._escaped").exists()
    names = {p.parent.name for p in written}
    assert {"_", "a_b", "back_slash", '{"k":".._v"}', '["..","_"]'} <= names  # all dots: one "_"; JSON, not repr
    assert all(c.isprintable() for name in names for c in name)
    assert topo.nodes["out"].stats.errors[("path_sanitised", "sending")] == len(hostile) - 1  # the list needs no change


async def test_strftime_codes_in_the_path_come_from_the_event_time(tmp_path: Path) -> None:
    events = [{"n": 0, "time": "2025-06-24T23:59:59.5Z"}, {"n": 1, "timestamp": 1_704_164_400_000},
              {"n": 2, "@timestamp": "2025-06-24T01:00:00Z"}, {"n": 3}]
    before = time.strftime("%Y-%m-%d", time.gmtime())
    await run_feed([logs(events)], f'path: "{tmp_path}/out/app-%Y-%m-%d.ndjson"', tmp_path)
    today = {before, time.strftime("%Y-%m-%d", time.gmtime())}  # (the run may straddle midnight)
    by_day = {p.name[4:14]: [e["n"] for e in read_lines(p)] for p in (tmp_path / "out").iterdir()}
    assert by_day.pop("2025-06-24") == [0, 2] and by_day.pop("2024-01-02") == [1]
    assert len(by_day) == 1 and set(by_day) <= today and list(by_day.values()) == [[3]]


class FullDisk:
    """Makes the ``fail_on``-th write to a file whose name contains ``name`` write half its data, then ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_on: int, name: str = "") -> None:
        self.writes, self.failed = 0, 0
        monkeypatch.setattr(file_sink, "open", self.open, raising=False)
        self.fail_on, self.name = fail_on, name

    def open(self, path: str, mode: str, **kwargs: Any) -> Any:
        fh = open(path, mode, buffering=0)  # the sink closes it
        real_write = fh.write
        if self.name not in path:
            return fh

        def write(data: Any) -> int:
            self.writes += 1
            if self.writes == self.fail_on:
                self.failed += 1
                real_write(bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(data)

        fh.write = write
        return fh


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
async def test_a_failed_write_is_cut_back_and_the_batch_written_again_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str) -> None:
    disk = FullDisk(monkeypatch, fail_on=3)
    batches = [logs([{"n": b * 300 + i, "pad": "x" * (i % 40)} for i in range(300)]) for b in range(5)]
    out = tmp_path / "out.ndjson.z"
    topo = await run_feed(batches, f'path: "{out}", compression: {compression}', tmp_path)
    assert disk.failed == 1 and topo.nodes["out"].stats.retries == 1
    assert [e["n"] for e in read_lines(out, compression)] == list(range(1500))  # decodes whole, each once


async def test_a_failed_write_to_one_file_cuts_back_the_other_files_of_the_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FullDisk(monkeypatch, fail_on=2, name="/b.")
    batches = [logs([{"n": b * 100 + i, "s": "ab"[i % 2]} for i in range(100)]) for b in range(3)]
    await run_feed(batches, f'path: "{tmp_path}/out/{{{{ s }}}}.ndjson.gz", compression: gzip', tmp_path)
    assert disk.failed == 1
    a, b = (read_lines(tmp_path / "out" / f"{s}.ndjson.gz", "gzip") for s in "ab")
    assert [e["n"] for e in a] == list(range(0, 300, 2)) and [e["n"] for e in b] == list(range(1, 300, 2))


async def test_open_files_are_bounded_and_each_closed_one_is_complete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live: set[int] = set()
    peak = 0

    class Counted(file_sink.OpenFile):
        def __init__(self, path: str, compression: str) -> None:
            nonlocal peak
            super().__init__(path, compression)
            live.add(id(self))
            peak = max(peak, len(live))

        def close(self) -> None:
            live.discard(id(self))
            super().close()

    monkeypatch.setattr(file_sink, "OpenFile", Counted)
    batches = [logs([{"n": b * 40 + i, "s": f"svc{(b + i) % 10}"} for i in range(40)]) for b in range(20)]
    await run_feed(batches, f'path: "{tmp_path}/out/{{{{ s }}}}.gz", compression: gzip, max_open_files: 3',
                   tmp_path)
    assert peak == 3 and not live
    got = [e["n"] for p in (tmp_path / "out").iterdir() for e in orjson_lines(gzip.decompress(p.read_bytes()))]
    assert sorted(got) == list(range(800))


def orjson_lines(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines()]


async def test_files_idle_for_idle_timeout_are_closed_without_new_batches(tmp_path: Path) -> None:
    config = msgspec.convert({"type": "file", "inputs": ["x"], "path": f"{tmp_path}/{{{{ s }}}}.log",
                              "idle_timeout": "200ms"}, file_sink.FileConfig, dec_hook=units.dec_hook)
    stats = ComponentStats("out", "sink", "file")
    sink = file_sink.FileSink(config, BuildContext("out", tmp_path, tmp_path, stats))
    inbox = MemoryBuffer(100, 1 << 20, "block", stats)
    run = asyncio.create_task(sink.run(SinkContext("out", inbox, stats)))
    try:
        await inbox.put(logs([{"s": "a"}, {"s": "b"}]))
        await wait_for(lambda: stats.sent_events == 2)
        assert len(sink.files) == 2
        await wait_for(lambda: not sink.files, timeout=3)  # no batch arrives to trigger the check
    finally:
        inbox.close()
        await asyncio.wait_for(run, 5)
    assert (tmp_path / "a.log").read_bytes() == b'{"s":"a"}\n'


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
async def test_large_batches_are_compressed_off_the_event_loop(tmp_path: Path, compression: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 8.11: a batch of megabytes at gzip level 6 takes tens of milliseconds, which the loop must not."""
    threads: list[int] = []
    original = http.compress

    def recording(body: bytes, how: str) -> Any:
        threads.append(threading.get_ident())
        return original(body, how)

    monkeypatch.setattr(http, "compress", recording)
    out = OpenFile(str(tmp_path / f"x.{compression}"), compression)
    await out.write(b"small\n")
    await out.write(b"y" * (1 << 20) + b"\n")
    out.close()
    assert threads[0] == threading.get_ident() != threads[1]
    data = (tmp_path / f"x.{compression}").read_bytes()
    if compression == "gzip":
        assert gzip.decompress(data) == b"small\n" + b"y" * (1 << 20) + b"\n"
    else:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
        assert reader.read() == b"small\n" + b"y" * (1 << 20) + b"\n"


async def test_an_event_whose_path_cannot_be_rendered_goes_to_the_path_of_now(tmp_path: Path) -> None:
    """A fault in one event's path must not crash the sink into a restart loop (review finding)."""
    config = msgspec.convert({"type": "file", "inputs": ["x"], "path": f"{tmp_path}/{{{{ s }}}}-%Y.log"},
                             file_sink.FileConfig, dec_hook=units.dec_hook)
    stats = ComponentStats("out", "sink", "file")
    sink = file_sink.FileSink(config, BuildContext("out", tmp_path, tmp_path, stats))
    render = sink.partition_key

    def key(event: Any) -> str:
        if event.get("s") == "boom":
            raise ValueError("year 55840 is out of range")
        return render(event)

    sink.partition_key = key
    inbox = MemoryBuffer(100, 1 << 20, "block", stats)
    run = asyncio.create_task(sink.run(SinkContext("out", inbox, stats)))
    batch = logs([{"s": "a", "time": "2025-06-24T00:00:00Z"}, {"s": "boom"}])
    await inbox.put(batch)
    inbox.close()
    await asyncio.wait_for(run, 5)
    assert batch.done and stats.errors[("path_failed", "sending")] == 1
    year = time.gmtime().tm_year
    assert orjson_lines((tmp_path / "a-2025.log").read_bytes()) == [{"s": "a", "time": "2025-06-24T00:00:00Z"}]
    assert orjson_lines((tmp_path / f"unknown-{year}.log").read_bytes()) == [{"s": "boom"}]
