"""Compactions that commit() starts: written by a worker thread, never stalling the event loop, and a
SIGKILL at any point of one (before, during or after the thread, between the rename and the switch)
loses no committed offset."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from helpers import wait_for

from agent.sources.tail import checkpoint
from agent.sources.tail.checkpoint import CheckpointStore, Entry


def entry(key: str, offset: int, seen: float | None = None) -> Entry:
    return Entry(key, f"/logs/{key}.log", 256, "ab" * 8, offset, time.time() if seen is None else seen)


class Disk:
    """``os.fsync`` patched: records the threads that called it, and holds a worker thread inside it
    until released (the event loop's thread never waits, so the old synchronous code fails, not hangs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop_thread = threading.get_ident()
        self.threads: list[int] = []
        self.hold = False
        self.held = threading.Event()
        self.release = threading.Event()
        real = os.fsync

        def fsync(fd: int) -> None:
            self.threads.append(threading.get_ident())
            if self.hold and threading.get_ident() != self.loop_thread:
                self.held.set()
                self.release.wait(10)
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


class Committer:
    """A store and every offset committed to it, to check what a load of its directory gives."""

    def __init__(self, directory: Path, compact_bytes: int = 300, **options: object) -> None:
        self.store = CheckpointStore(directory, compact_bytes=compact_bytes, **options)  # type: ignore[arg-type]
        self.store.load()
        self.committed: dict[str, int] = {}

    def commit(self, key: str, offset: int, seen: float | None = None) -> None:
        self.store.commit(entry(key, offset, seen))
        self.committed[key] = offset

    def until_compaction_starts(self) -> int:
        """Commit until the log passes compact_bytes; the generation the compaction started from."""
        generation = self.store.generation
        for offset in range(1, 100):
            self.commit("a", offset * 10)
            if getattr(self.store, "_job", None) is not None or self.store.generation != generation:
                return generation
        raise AssertionError("no compaction started")


def loaded(directory: Path) -> dict[str, int]:
    store = CheckpointStore(directory)
    store.load()
    store.close(compact=False)
    return {key: e.offset for key, e in store.entries.items()}


async def test_a_compaction_commit_starts_fsyncs_in_a_worker_thread_and_commit_does_not_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Committer(tmp_path)
    disk = Disk(monkeypatch)
    disk.hold = True
    generation = c.until_compaction_starts()  # returns while the worker is held inside fsync
    disk.held.wait(5)
    assert disk.threads and disk.loop_thread not in disk.threads
    assert c.store.generation == generation  # nothing switched yet
    disk.release.set()
    await wait_for(lambda: c.store.generation == generation + 1)
    assert disk.loop_thread not in disk.threads  # the directory's fsync too
    c.store.close(compact=False)
    assert loaded(tmp_path) == c.committed


async def test_commits_made_while_a_compaction_is_in_flight_are_all_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Committer(tmp_path, grace=60)
    c.commit("gone", 5, seen=time.time() - 120)  # past the grace at the capture, committed again after it
    disk = Disk(monkeypatch)
    disk.hold = True
    generation = c.until_compaction_starts()
    assert disk.held.wait(5)
    c.commit("b", 7)
    c.commit("a", 999)
    c.commit("gone", 6)
    disk.release.set()
    await wait_for(lambda: c.store.generation == generation + 1)
    assert {k: e.offset for k, e in c.store.entries.items()} == c.committed
    carried = (tmp_path / f"commits.{generation + 1}.log").read_bytes().splitlines()
    assert len(carried) == 3  # one record for each key committed since the capture
    c.commit("b", 8)
    c.store.close(compact=False)
    assert loaded(tmp_path) == c.committed


@pytest.mark.parametrize("moment", ["before the rename", "between the rename and the switch", "after the switch"])
async def test_a_sigkill_at_any_point_of_a_compaction_loses_no_committed_offset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    state, image = tmp_path / "state", tmp_path / "image"
    c = Committer(state)
    c.commit("b", 1)
    disk = Disk(monkeypatch)
    disk.hold = True
    real_fsync_directory = checkpoint._fsync_directory
    expected: dict[str, int] = {}

    def fsync_directory(directory: Path) -> None:
        real_fsync_directory(directory)
        if moment == "between the rename and the switch" and not image.exists():
            shutil.copytree(state, image)  # what a SIGKILL leaves: the process never comes back to switch
            expected.update(c.committed)

    monkeypatch.setattr(checkpoint, "_fsync_directory", fsync_directory)
    generation = c.until_compaction_starts()
    assert disk.held.wait(5)
    c.commit("b", 2)  # made while the snapshot is written: they go to the current log
    c.commit("a", 5000)
    c.commit("c", 3)
    if moment == "before the rename":
        shutil.copytree(state, image)
        expected.update(c.committed)
    disk.release.set()
    await wait_for(lambda: c.store.generation == generation + 1)
    if moment == "after the switch":
        shutil.copytree(state, image)
        expected.update(c.committed)
    c.store.close(compact=False)
    monkeypatch.undo()
    names = {p.name for p in image.iterdir()}
    if moment == "between the rename and the switch":
        assert f"snapshot.{generation + 1}" in names and f"commits.{generation + 1}.log" not in names
        damaged = tmp_path / "damaged"
        shutil.copytree(image, damaged)
        snapshot = damaged / f"snapshot.{generation + 1}"
        snapshot.write_bytes(snapshot.read_bytes()[:-2])
        assert loaded(damaged) == expected  # the snapshot before it and all of its log
    assert loaded(image) == expected == c.committed
    newest = max(image.glob("snapshot.*[0-9]"), key=lambda p: int(p.name.split(".")[1]))  # the load wrote it
    newest.write_bytes(newest.read_bytes()[:-2])
    assert loaded(image) == expected  # the files it was loaded from are kept until a newer one is verified
    assert loaded(state) == c.committed


async def test_a_failed_compaction_switches_nothing_is_counted_and_is_tried_again_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[str] = []
    c = Committer(tmp_path, report=errors.append)
    real_replace = os.replace
    failures = iter([OSError(28, "No space left on device")])

    def replace(src: Path, dst: Path) -> None:
        for failure in failures:
            raise failure
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    generation = c.until_compaction_starts()
    await wait_for(lambda: c.store._job is None)
    assert errors == ["checkpoint_write_failed"] and c.store.generation == generation
    assert not list(tmp_path.glob(f"snapshot.{generation + 1}*"))
    c.commit("b", 1)  # not at every commit: only after compact_bytes more
    assert c.store._job is None
    c.until_compaction_starts()
    await wait_for(lambda: c.store.generation == generation + 1)
    assert errors == ["checkpoint_write_failed"]
    c.store.close(compact=False)
    assert loaded(tmp_path) == c.committed


async def test_close_waits_for_a_compaction_in_flight_and_its_late_report_is_harmless(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Committer(tmp_path)
    disk = Disk(monkeypatch)
    disk.hold = True
    generation = c.until_compaction_starts()
    assert disk.held.wait(5)
    c.commit("b", 2)
    threading.Timer(0.05, disk.release.set).start()
    c.store.close()  # waits for the worker, applies its snapshot, then compacts once more
    assert c.store.generation == generation + 2
    await asyncio.sleep(0.05)  # the worker's report reaches the loop now, after close: ignored
    assert c.store.generation == generation + 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"snapshot.{generation + 1}", f"commits.{generation + 1}.log",
         f"snapshot.{generation + 2}", f"commits.{generation + 2}.log"])
    assert loaded(tmp_path) == c.committed


async def test_an_unexpected_error_in_the_worker_is_a_failed_compaction_not_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[str] = []
    c = Committer(tmp_path, report=errors.append)

    def broken(path: Path, data: bytes) -> bool:
        raise MemoryError

    monkeypatch.setattr(checkpoint, "_persist", broken)
    generation = c.until_compaction_starts()
    await wait_for(lambda: errors == ["checkpoint_write_failed"])
    assert c.store.generation == generation
    c.commit("b", 1)
    c.store.close(compact=False)
    monkeypatch.undo()
    assert loaded(tmp_path) == c.committed
