from __future__ import annotations

import asyncio
import gzip
import io
import zlib
from pathlib import Path

import orjson
import pytest
import zstandard
from helpers import pipeline

from agent.observe.stats import StatsRegistry
from agent.sinks.file import PathTemplate
from agent.topology.running import Topology


async def run_to_end(text: str, tmp_path: Path) -> Topology:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    assert await asyncio.wait_for(topo.run(), 20) == 0
    return topo


def test_path_template_uses_time_and_fields() -> None:
    template = PathTemplate("/logs/%Y/{{ kubernetes.namespace }}-{{app}}.log")
    path = template.render({"kubernetes": {"namespace": "prod"}, "app": "a/b"}, now=0)
    assert path == "/logs/1970/prod-a_b.log"
    assert template.render({}, now=0) == "/logs/1970/unknown-unknown.log"


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
    data = out.read_bytes()
    if compression == "gzip":
        raw = gzip.decompress(data)
    else:
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    lines = raw.splitlines()
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
