"""The tail source against real files: formats, rotation, checkpoints, limits and fairness."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import orjson
import pytest
from components import GateSink
from helpers import pipeline, wait_for

from agent.config.registry import BuildContext
from agent.core.ack import AckStatus
from agent.core.batch import Batch
from agent.core.errors import StartupError
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sources.tail.checkpoint import CheckpointStore
from agent.sources.tail.files import TailedFile
from agent.sources.tail.source import DESCRIPTOR_SLICE, TailConfig, TailSource
from agent.sources.tail.wakeup import Wakeup
from agent.topology.running import Topology

CONTAINER_ID = "4f" * 32


def tail_config(tmp_path: Path, include: str, **options: Any) -> str:
    opts = {"read_from": "beginning", "glob_interval": "100ms", "poll_interval": "20ms", "rotate_wait": "300ms",
            **options}
    rendered = ", ".join(f"{k}: {orjson.dumps(v).decode()}" for k, v in opts.items())
    return f"""
sources:
  files: {{type: tail, include: ["{include}"], {rendered}}}
sinks:
  got: {{type: test_gate, inputs: [files], open: true}}
"""


@asynccontextmanager
async def running(text: str, tmp_path: Path) -> AsyncIterator[Topology]:
    topo = Topology(pipeline(text, tmp_path), StatsRegistry())
    task = asyncio.create_task(topo.run())
    await topo.ready.wait()
    try:
        yield topo
    finally:
        topo.request_stop()
        assert await asyncio.wait_for(task, 10) == 0


def messages() -> list[str]:
    return [e["message"] for e in GateSink.instances["got"].events]  # type: ignore[index]


def events() -> list[dict[str, Any]]:
    return GateSink.instances["got"].events  # type: ignore[return-value]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    await wait_for(condition, timeout)


def docker_line(message: str, stream: str = "stdout") -> bytes:
    return orjson.dumps({"log": message + "\n", "stream": stream, "time": "2026-11-22T17:00:00.000000001Z"}) + b"\n"


async def test_docker_files_are_decoded_with_kubernetes_fields_from_the_name(tmp_path: Path) -> None:
    path = tmp_path / f"web-7d9f_prod_nginx-{CONTAINER_ID}.log"
    path.write_bytes(b"".join(docker_line(f"hello {i}") for i in range(100)))
    async with running(tail_config(tmp_path, str(tmp_path / "*.log")), tmp_path):
        await until(lambda: len(events()) == 100)
    first = events()[0]
    assert first["message"] == "hello 0" and first["stream"] == "stdout"
    assert first["file"] == str(path)
    assert first["kubernetes"] == {"pod": "web-7d9f", "namespace": "prod", "container": "nginx",
                                   "container_id": CONTAINER_ID}


async def test_cri_partial_lines_are_reassembled(tmp_path: Path) -> None:
    path = tmp_path / "cri.log"
    ts = "2026-11-22T17:00:00.000000001Z"
    path.write_text(f"{ts} stdout P part one, \n{ts} stderr F an error\n{ts} stdout P part two, \n"
                    f"{ts} stdout F the end\n")
    async with running(tail_config(tmp_path, str(path)), tmp_path):
        await until(lambda: len(events()) == 2)
    assert [(e["stream"], e["message"]) for e in events()] == [
        ("stderr", "an error"), ("stdout", "part one, part two, the end")]


def docker_piece(text: str, stream: str = "stdout") -> bytes:
    """A Docker line whose ``log`` lacks the final newline: a part of a longer record."""
    return orjson.dumps({"log": text, "stream": stream, "time": "2026-11-22T17:00:00.000000001Z"}) + b"\n"


async def test_a_part_nothing_completes_is_emitted_after_the_timeout_and_committed_once_delivered(
        tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(docker_line("complete") + docker_piece("Password: ", "stderr"))
    text = tail_config(tmp_path, str(path), partial_flush_timeout="100ms")
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 2)
    assert [(e["message"], e.get("partial", False)) for e in events()] == [("complete", False), ("Password: ", True)]
    assert events()[1]["offset"] == len(docker_line("complete"))
    with path.open("ab") as f:
        f.write(docker_line("hunter2", "stderr"))
    async with running(text, tmp_path):  # the emitted part was committed: it is not read again
        await until(lambda: len(events()) == 1)
        await asyncio.sleep(0.2)
    assert [(e["message"], e.get("partial", False)) for e in events()] == [("hunter2", False)]


async def test_an_expired_part_goes_through_multiline_and_its_group_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(docker_line("ERROR order 42 failed") + docker_piece("java.lang.IllegalStateException: pay"))
    text = tail_config(tmp_path, str(path), partial_flush_timeout="100ms",
                       multiline={"preset": "java", "timeout": "100ms"})
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 1)
    assert [(e["message"], e["offset"]) for e in events()] == [
        ("ERROR order 42 failed\njava.lang.IllegalStateException: pay", 0)]
    with path.open("ab") as f:
        f.write(docker_line("INFO next"))
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 1)
        await asyncio.sleep(0.2)
    assert messages() == ["INFO next"]


async def test_a_multiline_group_held_at_shutdown_is_read_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("INFO first\nERROR boom\njava.lang.IllegalStateException: x\n")
    text = tail_config(tmp_path, str(path), format="raw", multiline={"preset": "java", "timeout": "1h"})
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 1)
        await asyncio.sleep(0.2)
    assert messages() == ["INFO first"]
    with path.open("a") as f:
        f.write("\tat com.example.Shop.pay(Shop.java:7)\nINFO next\n")
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 1)
    assert messages() == ["ERROR boom\njava.lang.IllegalStateException: x\n\tat com.example.Shop.pay(Shop.java:7)"]


async def test_docker_16k_partials_are_reassembled(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    message = "".join(chr(65 + i % 26) for i in range(40_000))
    pieces = [message[i:i + 16384] for i in range(0, len(message), 16384)]
    with path.open("wb") as f:
        for piece in pieces[:-1]:
            f.write(orjson.dumps({"log": piece, "stream": "stdout", "time": "2026-11-22T17:00:00Z"}) + b"\n")
        f.write(docker_line(pieces[-1]))
    async with running(tail_config(tmp_path, str(path)), tmp_path):
        await until(lambda: len(events()) == 1)
    assert messages() == [message]


async def test_a_java_stack_trace_is_one_event(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    trace = ("2026-11-22 17:00:01 ERROR request failed\n"
             "java.lang.IllegalStateException: boom\n"
             "\tat com.example.Service.handle(Service.java:42)\n"
             "\tat com.example.Server.run(Server.java:7)\n"
             "Caused by: java.io.IOException: disk\n"
             "\tat com.example.Disk.write(Disk.java:3)\n"
             "\t... 12 more\n")
    path.write_text("2026-11-22 17:00:00 INFO starting\n" + trace + "2026-11-22 17:00:02 INFO next\n")
    async with running(tail_config(tmp_path, str(path), multiline={"preset": "java"}, format="raw"), tmp_path):
        await until(lambda: len(events()) == 3)
    assert messages() == ["2026-11-22 17:00:00 INFO starting", trace.rstrip("\n"), "2026-11-22 17:00:02 INFO next"]


async def test_a_10mb_line_is_truncated_flagged_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "huge.log"
    with path.open("wb") as f:
        f.write(b"before\n" + b"x" * 10_000_000 + b"\nafter\n")
    text = tail_config(tmp_path, str(path), format="raw", max_line_bytes="64KiB", read_bytes="64KiB")
    async with running(text, tmp_path) as topo:
        await until(lambda: len(events()) == 3)
        truncations = topo.nodes["files"].stats.counters[("truncations", (("what", "line"),))]
    assert messages()[0] == "before" and messages()[2] == "after"
    assert len(messages()[1]) == 65536
    assert truncations == 1


@pytest.mark.parametrize("fmt", ["docker", "cri", "raw"])
async def test_offsets_after_a_cut_line_are_where_the_lines_start_and_the_cut_one_says_truncated(
        tmp_path: Path, fmt: str) -> None:
    make = {"docker": docker_line, "raw": lambda m: m.encode() + b"\n",
            "cri": lambda m: f"2026-11-22T17:00:00.000000001Z stdout F {m}\n".encode()}[fmt]
    lines = [make(m) for m in ("first", "long " + "x" * 3000, "after", "long " + "y" * 3000, "last")]
    path = tmp_path / "app.log"
    path.write_bytes(b"".join(lines))
    text = tail_config(tmp_path, str(path), format=fmt, max_line_bytes="1KiB", read_bytes="2KiB")
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 5)
    assert [e["offset"] for e in events()] == [sum(map(len, lines[:i])) for i in range(5)]
    assert [e.get("truncated", False) for e in events()] == [False, True, False, True, False]
    assert [messages()[i] for i in (0, 2, 4)] == ["first", "after", "last"]


async def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "bad.log"
    path.write_bytes(b"ok line\nbad \xff\xfe line\n" + b'{"log":"caf\xc3\xa9 \xff\\n","stream":"stdout","time":"t"}\n')
    async with running(tail_config(tmp_path, str(path), format="raw"), tmp_path):
        await until(lambda: len(events()) == 3)
    assert messages()[:2] == ["ok line", "bad \ufffd\ufffd line"]


async def test_read_from_end_skips_what_was_there_and_new_files_start_at_the_beginning(tmp_path: Path) -> None:
    old = tmp_path / "old.log"
    old.write_text("old 1\nold 2\n")
    async with running(tail_config(tmp_path, str(tmp_path / "*.log"), format="raw", read_from="end"), tmp_path):
        await asyncio.sleep(0.3)
        with old.open("a") as f:
            f.write("old 3\n")
        (tmp_path / "new.log").write_text("new 1\n")
        await until(lambda: len(events()) == 2)
    assert sorted(messages()) == ["new 1", "old 3"]


async def test_restart_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    text = tail_config(tmp_path, str(path), format="raw")
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 1000)
    with path.open("a") as f:
        f.write("".join(f"line {i}\n" for i in range(1000, 1500)))
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 500)
        await asyncio.sleep(0.2)
    assert messages() == [f"line {i}" for i in range(1000, 1500)]


async def test_a_corrupt_checkpoint_snapshot_is_counted_and_reading_resumes_where_it_was(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    text = tail_config(tmp_path, str(path), format="raw", read_from="end")
    async with running(text.replace("read_from: \"end\"", "read_from: \"beginning\""), tmp_path):
        await until(lambda: len(events()) == 100)
    state = tmp_path / "data" / "tail" / "files"
    snapshot = max(state.glob("snapshot.*[0-9]"), key=lambda p: int(p.name.split(".")[1]))
    snapshot.write_bytes(snapshot.read_bytes()[:-3])  # a torn or bit-rotten snapshot
    with path.open("a") as f:
        f.write("".join(f"line {i}\n" for i in range(100, 150)))
    async with running(text, tmp_path) as topo:  # read_from: end must not skip what came since
        await until(lambda: len(events()) == 50)
        await asyncio.sleep(0.2)
        errors = topo.nodes["files"].stats.errors
    assert messages() == [f"line {i}" for i in range(100, 150)]
    assert errors[("checkpoint_corrupt", "receiving")] == 1


class Writer(threading.Thread):
    """Appends numbered lines to a file until stopped; can rotate it by rename or copytruncate."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.written = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.fh = path.open("ab", buffering=0)

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                self.fh.write(b"".join(b"line %07d\n" % (self.written + i) for i in range(50)))
                self.written += 50
            time.sleep(0.001)

    def rename_rotate(self, to: Path) -> None:
        with self.lock:
            self.fh.close()
            os.rename(self.path, to)
            self.fh = self.path.open("ab", buffering=0)

    def copytruncate(self, to: Path) -> None:
        with self.lock:
            to.write_bytes(self.path.read_bytes())
            os.truncate(self.path, 0)

    def finish(self) -> None:
        self.stop.set()
        self.join(5)
        self.fh.close()


async def test_rename_rotation_under_a_continuous_writer_loses_and_repeats_nothing(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    writer = Writer(path)
    writer.start()
    try:
        async with running(tail_config(tmp_path, str(path), format="raw"), tmp_path) as topo:
            for n in range(3):
                await asyncio.sleep(0.3)
                writer.rename_rotate(tmp_path / f"app.log.{n}")
            await asyncio.sleep(0.3)
            writer.finish()
            await until(lambda: len(events()) == writer.written)
            await asyncio.sleep(0.5)
            rotations = topo.nodes["files"].stats.counters[("rotations", (("kind", "rename"),))]
    finally:
        writer.finish()
    assert sorted(messages()) == [f"line {i:07d}" for i in range(writer.written)]
    assert rotations == 3


async def test_copytruncate_under_a_continuous_writer_reads_every_line_it_can(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    writer = Writer(path)
    writer.start()
    copies: list[Path] = []
    try:
        async with running(tail_config(tmp_path, str(path), format="raw"), tmp_path):
            for n in range(3):
                await asyncio.sleep(0.3)
                copies.append(tmp_path / f"app.log.{n}")
                writer.copytruncate(copies[-1])
            await asyncio.sleep(0.3)
            writer.finish()
            await until(lambda: messages()[-1:] == [f"line {writer.written - 1:07d}"])
            await asyncio.sleep(0.3)
    finally:
        writer.finish()
    got = messages()
    assert len(got) == len(set(got)), "no line twice"
    written = [f"line {i:07d}" for i in range(writer.written)]
    assert set(got) <= set(written)
    copied = [line.decode() for c in copies for line in c.read_bytes().splitlines()]
    # copytruncate can only hide lines written between the agent's last read and the truncation:
    # everything missing must be in a copy, at its end
    missing = sorted(set(written) - set(got))
    assert set(missing) <= set(copied)
    for copy in copies:
        lines = [line.decode() for line in copy.read_bytes().splitlines()]
        hidden = [line for line in lines if line in set(missing)]
        assert hidden == lines[len(lines) - len(hidden):]


async def test_a_deleted_file_and_a_new_one_with_the_same_inode(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("".join(f"first {i}\n" for i in range(100)))
    text = tail_config(tmp_path, str(path), format="raw")
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 100)
    inode = path.stat().st_ino
    path.unlink()
    for attempt in range(50):  # the filesystem hands the freed inode to the next file
        candidate = tmp_path / f"probe{attempt}"
        candidate.write_text("")
        if candidate.stat().st_ino == inode:
            candidate.rename(path)
            break
        candidate.unlink()
    assert path.exists() and path.stat().st_ino == inode, "could not reuse the inode on this filesystem"
    path.write_text("".join(f"second {i}\n" for i in range(30)))
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 30)
        await asyncio.sleep(0.2)
    assert messages() == [f"second {i}" for i in range(30)]


async def test_a_thousand_files_with_fewer_descriptors_are_all_read(tmp_path: Path) -> None:
    for n in range(1000):
        (tmp_path / f"f{n:04d}.log").write_text("".join(f"{n} {i}\n" for i in range(5)))
    text = tail_config(tmp_path, str(tmp_path / "*.log"), format="raw", max_open_files=100)
    async with running(text, tmp_path) as topo:
        await until(lambda: len(events()) == 5000, timeout=30)
        assert topo.nodes["files"].stats.gauge_values()["files_open"] <= 100
    assert len(set(messages())) == 5000


async def test_files_that_never_reach_their_end_take_turns_for_descriptors(tmp_path: Path) -> None:
    """Four files written faster than a slow sink takes them, two descriptors: all four get read."""
    paths = [tmp_path / f"busy{n}.log" for n in range(4)]
    for path in paths:
        path.write_bytes(b"")
    text = tail_config(tmp_path, str(tmp_path / "*.log"), format="raw", max_open_files=2,
                       read_bytes="4KiB").replace("open: true", "open: true, delay: 0.02, buffer: {max_events: 200}")
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set() and n < 2000:  # ~20 s at most; each round outruns the sink
            for k, path in enumerate(paths):
                with path.open("ab") as f:
                    f.write(b"".join(b"file%d line %06d %s\n" % (k, n * 100 + i, b"x" * 60) for i in range(100)))
            n += 1
            time.sleep(0.01)

    writer = threading.Thread(target=write)
    async with running(text, tmp_path) as topo:
        writer.start()
        try:
            await until(lambda: {m[:5] for m in messages()} == {"file0", "file1", "file2", "file3"}, timeout=10)
            assert topo.nodes["files"].stats.gauge_values()["files_open"] <= 2
        finally:
            stop.set()
            writer.join()
        GateSink.instances["got"].delay = 0.0  # then the rest, parked mid-line or not, arrives once
        written = [line for path in paths for line in path.read_text().splitlines()]
        await until(lambda: len(events()) >= len(written), timeout=30)
    assert sorted(messages()) == sorted(written)


async def test_a_stalled_pipeline_stops_reading_and_memory_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"".join(b"line %07d %s\n" % (i, b"y" * 100) for i in range(200_000)))  # 22 MB
    text = tail_config(tmp_path, str(path), format="raw", read_bytes="64KiB").replace(
        "open: true", "buffer: {max_bytes: 1MiB}")
    async with running(text, tmp_path) as topo:
        await asyncio.sleep(0.5)
        read = topo.nodes["files"].stats.received_bytes
        assert read <= 1024 * 1024 + 2 * 65536
        lag = topo.nodes["files"].stats.gauge_values()["checkpoint_lag_bytes"]
        assert lag == read
        GateSink.instances["got"].gate.set()
        await until(lambda: len(events()) == 200_000, timeout=30)
        await until(lambda: topo.nodes["files"].stats.gauge_values()["checkpoint_lag_bytes"] == 0)


async def test_tail_metrics_are_exported(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from agent.observe.metrics import AgentCollector, build_registry

    path = tmp_path / "app.log"
    path.write_text("a\nb\n")
    registry = StatsRegistry()
    topo = Topology(pipeline(tail_config(tmp_path, str(path), format="raw"), tmp_path), registry)
    task = asyncio.create_task(topo.run())
    await until(lambda: len(events()) == 2)
    await asyncio.sleep(0.1)
    page = generate_latest(build_registry(AgentCollector(registry, dict, {}))).decode()
    topo.request_stop()
    assert await asyncio.wait_for(task, 10) == 0
    labels = 'component_id="files",component_kind="source",component_type="tail"'
    assert f"agent_tail_files_open{{{labels}}} 1.0" in page
    assert f"agent_tail_checkpoint_lag_bytes{{{labels}}} 0.0" in page
    assert f'agent_tail_read_lines_total{{{labels},group="{path}"}} 2.0' in page
    assert f'agent_tail_read_bytes_total{{{labels},group="{path}"}} 4.0' in page


async def test_symlinks_are_followed_and_exclude_globs_apply(tmp_path: Path) -> None:
    pods = tmp_path / "pods" / "prod_web_uid" / "nginx"
    pods.mkdir(parents=True)
    (pods / "0.log").write_bytes(b"".join(docker_line(f"via link {i}") for i in range(3)))
    (tmp_path / "noisy").mkdir()
    (tmp_path / "noisy" / "0.log").write_bytes(docker_line("excluded"))
    containers = tmp_path / "containers"
    containers.mkdir()
    (containers / f"web_prod_nginx-{CONTAINER_ID}.log").symlink_to(pods / "0.log")
    (containers / f"chatty_kube-system_x-{CONTAINER_ID}.log").symlink_to(tmp_path / "noisy" / "0.log")
    text = tail_config(tmp_path, str(containers / "*.log"), exclude=["*_kube-system_*"])
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 3)
        await asyncio.sleep(0.3)
    assert messages() == ["via link 0", "via link 1", "via link 2"]
    assert events()[0]["kubernetes"]["namespace"] == "prod"


async def test_a_file_deleted_while_open_is_read_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("one\n")
    async with running(tail_config(tmp_path, str(path), format="raw", rotate_wait="1s"), tmp_path) as topo:
        await until(lambda: len(events()) == 1)
        with path.open("a") as f:
            f.write("two\nthree\n")
            path.unlink()  # the writer still holds it; so do we
            f.write("four\n")
        await until(lambda: len(events()) == 4)
        await until(lambda: topo.nodes["files"].stats.gauge_values()["files_open"] == 0)
    assert messages() == ["one", "two", "three", "four"]


async def test_inotify_wakes_the_reader_long_before_the_poll_interval(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("first\n")
    text = tail_config(tmp_path, str(path), format="raw", poll_interval="30s", glob_interval="30s")
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 1)
        await asyncio.sleep(0.2)  # the loop is now asleep for up to 30 s
        with path.open("a") as f:
            f.write("second\n")
        await until(lambda: len(events()) == 2, timeout=3)


class _Output:
    """Takes batches as the topology would and acknowledges them at once."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def send(self, batch: Batch) -> None:
        self.events += batch.events
        batch.finalize(AckStatus.DELIVERED)


class _NoWakeup:
    def watch(self, path: str) -> None:
        pass

    def retain(self, directories: set[str]) -> None:
        pass


def direct_source(tmp_path: Path, include: str, **options: Any) -> tuple[TailSource, Any, ComponentStats]:
    """A tail source driven step by step by the test (no topology), its output acknowledging at once."""
    config = msgspec.convert({"type": "tail", "include": [include], "format": "raw", "read_from": "beginning",
                              **options}, TailConfig)
    stats = StatsRegistry().get("files", "source", "tail")
    source = TailSource(config, BuildContext("files", tmp_path, tmp_path, stats))
    source.store = CheckpointStore(tmp_path / "checkpoints")
    source.store.load()
    return source, SimpleNamespace(out=_Output(), shutdown=asyncio.Event()), stats


async def park_one_of_two_busy_files(tmp_path: Path) -> tuple[TailSource, Any, ComponentStats, TailedFile]:
    """Two files of 1000 lines, one descriptor: the first is read 1 KiB, then parked for the other's turn."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.log").write_bytes(b"".join(b"%s line %05d\n" % (name.encode(), i) for i in range(1000)))
    source, ctx, stats = direct_source(tmp_path, str(tmp_path / "*.log"), max_open_files=1, read_bytes=1024)
    source._scan(True, _NoWakeup())  # type: ignore[arg-type]
    await source._read_round(ctx)
    first = next(f for f in source.files.values() if f.fd >= 0)
    await source._housekeeping(ctx, time.monotonic() + 2 * DESCRIPTOR_SLICE)
    assert first.fd < 0 and first in source.waiting  # parked mid-file: the other file's turn
    return source, ctx, stats, first


async def test_a_busy_file_renamed_while_parked_is_found_and_read_to_its_end(tmp_path: Path) -> None:
    source, ctx, stats, first = await park_one_of_two_busy_files(tmp_path)
    os.rename(first.path, first.path + ".1")  # rotated while it waits
    Path(first.path).write_bytes(b"the new file\n")
    for _ in range(100):  # bounded: each round reads 1 KiB of each open file
        source._scan(False, _NoWakeup())  # type: ignore[arg-type]
        await source._read_round(ctx)  # type: ignore[arg-type]
        await source._housekeeping(ctx, time.monotonic() + 100)  # type: ignore[arg-type]
    source.store.close()
    letter = Path(first.path).name[0]
    got = [e["message"] for e in ctx.out.events if e["message"].startswith(f"{letter} line")]
    assert got == [f"{letter} line {i:05d}" for i in range(1000)]  # every line of the renamed file, once
    assert ("rotated_while_parked", "receiving") not in stats.errors


def reuse_inode(path: Path, inode: int) -> None:
    """Create ``path`` anew on the inode a just deleted file had (the filesystem hands it to the next file)."""
    for attempt in range(50):
        candidate = path.with_name(f"probe{attempt}")
        candidate.write_bytes(b"")
        if candidate.stat().st_ino == inode:
            candidate.rename(path)
            return
        candidate.unlink()
    pytest.skip("this filesystem does not hand a freed inode to the next file")


async def test_a_new_file_on_the_inode_of_one_deleted_while_parked_is_read_from_its_start(tmp_path: Path) -> None:
    source, ctx, stats, first = await park_one_of_two_busy_files(tmp_path)
    path = Path(first.path)
    inode = path.stat().st_ino
    path.unlink()
    reuse_inode(path, inode)
    path.write_bytes(b"".join(b"new line %05d\n" % i for i in range(300)))
    for _ in range(100):  # bounded: each round reads 1 KiB of each open file
        source._scan(False, _NoWakeup())  # type: ignore[arg-type]
        await source._read_round(ctx)  # type: ignore[arg-type]
        await source._housekeeping(ctx, time.monotonic() + 100)  # type: ignore[arg-type]
    source.store.close()
    got = [e["message"] for e in ctx.out.events if not e["message"].startswith(("a line", "b line"))]
    assert got == [f"new line {i:05d}" for i in range(300)]  # from its start, not from where the old one stopped
    assert stats.errors[("rotated_while_parked", "receiving")] == 1  # what the deleted file still had is lost


def kernel_watches(wakeup: Wakeup) -> int:
    """How many watches the kernel holds for the wakeup's inotify descriptor."""
    fd = wakeup._inotify.fileno()  # type: ignore[union-attr]
    return Path(f"/proc/self/fdinfo/{fd}").read_text().count("inotify wd:")


async def test_directory_watches_end_with_the_files_in_them(tmp_path: Path) -> None:
    pods = [tmp_path / "pods" / f"pod{n}" for n in range(5)]
    for pod in pods:
        pod.mkdir(parents=True)
        (pod / "0.log").write_bytes(b"a line\n")
    source, ctx, _ = direct_source(tmp_path, str(tmp_path / "pods" / "*" / "*.log"))
    wakeup = Wakeup(True)
    try:
        source._scan(True, wakeup)
        assert kernel_watches(wakeup) == 5
        (pods[1] / "0.log").unlink()  # pods that ended: their files go, some of their directories too
        (pods[2] / "0.log").rename(pods[2] / "0.log.gz")
        for pod in pods[3:]:
            shutil.rmtree(pod)
        for _ in range(5):  # bounded: the files are read to their end, finished and forgotten
            source._scan(False, wakeup)
            await source._read_round(ctx)  # type: ignore[arg-type]
            await source._housekeeping(ctx, time.monotonic() + 100)  # type: ignore[arg-type]
            await asyncio.sleep(0.01)  # inotify events are read by the loop
        source._scan(False, wakeup)
        assert kernel_watches(wakeup) == 1
        assert list(wakeup._watched) == [str(pods[0])]
    finally:
        wakeup.close()
        source.store.close()


async def test_a_file_created_after_the_first_start_is_read_whole_even_if_nothing_of_it_was_committed(
        tmp_path: Path) -> None:
    """User trial: a SIGKILL before a new file's first ack lost all of it (read_from: end skipped it on restart)."""
    (tmp_path / "old.log").write_text("old 1\n")
    text = tail_config(tmp_path, str(tmp_path / "*.log"), format="raw", read_from="end")
    topo = Topology(pipeline(text.replace("open: true", "open: false"), tmp_path, "500ms"), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    (tmp_path / "new.log").write_text("".join(f"new {i}\n" for i in range(100)))
    await until(lambda: topo.nodes["files"].stats.sent_events == 100)
    topo.request_stop()  # the sink never acknowledged: nothing of new.log is committed (as after a SIGKILL)
    assert await asyncio.wait_for(run, 10) == 1
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 100)
        await asyncio.sleep(0.2)
    assert messages() == [f"new {i}" for i in range(100)]  # and nothing of old.log: it was recorded at its end


async def test_a_file_skipped_to_its_end_at_the_first_start_is_not_read_again_after_a_restart(
        tmp_path: Path) -> None:
    path = tmp_path / "idle.log"
    path.write_text("before 1\nbefore 2\npartial line without its newline")
    text = tail_config(tmp_path, str(path), format="raw", read_from="end")
    async with running(text, tmp_path):
        await asyncio.sleep(0.3)  # idle: nothing read, nothing acknowledged
    with path.open("a") as f:
        f.write(" ends here\nafter 1\n")
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 1)
        await asyncio.sleep(0.2)
    assert messages() == ["after 1"]


async def test_when_every_checkpoint_file_is_corrupt_files_are_read_from_their_start_not_skipped(
        tmp_path: Path) -> None:
    """User trial: with every state file damaged, read_from: end skipped what was written while stopped."""
    path = tmp_path / "app.log"
    path.write_text("".join(f"line {i}\n" for i in range(10)))
    text = tail_config(tmp_path, str(path), format="raw", read_from="end")
    async with running(text, tmp_path):
        await asyncio.sleep(0.3)
    for state in (tmp_path / "data" / "tail" / "files").iterdir():
        state.write_bytes(b"\x00garbage" * 7)
    with path.open("a") as f:
        f.write("".join(f"line {i}\n" for i in range(10, 15)))
    async with running(text, tmp_path):
        await until(lambda: len(events()) == 15)  # duplicates rather than loss
        await asyncio.sleep(0.2)
    assert messages() == [f"line {i}" for i in range(15)]


async def test_a_checkpoint_directory_that_cannot_be_used_stops_start_up_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "data" / "tail").mkdir(parents=True)
    (tmp_path / "data" / "tail" / "files").write_text("a file where the checkpoints' directory should be")
    topo = Topology(pipeline(tail_config(tmp_path, str(tmp_path / "*.log")), tmp_path), StatsRegistry())
    with pytest.raises(StartupError, match=r'source "files": cannot keep checkpoints in .*/data/tail/files: '):
        await asyncio.wait_for(topo.run(), 5)
