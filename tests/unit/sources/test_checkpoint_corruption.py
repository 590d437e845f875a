"""Every state file of the checkpoint store, damaged at every byte: load never raises, never goes back
further than the damage forces, never invents or skips ahead, and what it writes back holds."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.sources.tail import checkpoint
from agent.sources.tail.checkpoint import CheckpointStore, Entry

GARBAGE = [
    b"\x00\xff\xfe not a record\n",
    b'00000000 ["a","/logs/a.log",256,"abababababababab",999999,1.0]\n',  # far ahead, wrong checksum
    b"\n\n{}",
]


@dataclass
class Record:
    """Committed offsets a stretch of a state file holds: a log line, or a whole snapshot."""

    file: str
    start: int  # first byte
    end: int  # its newline (a log record) or the file's last byte (a snapshot)
    offsets: dict[str, int]


State = tuple[dict[str, bytes], list[Record], dict[str, list[int]]]
BEFORE = (("a", 100), ("b", 50), ("a", 200), ("c", 10))  # committed before the compaction
AFTER = (("b", 80), ("a", 300), ("d", 5))  # and after it began


def build_state(directory: Path) -> State:
    """A few files, commits before and after a compaction, no clean close (the process died)."""
    store = CheckpointStore(directory)
    store.load()
    history = commit(store, BEFORE)
    store.compact()
    commit(store, AFTER, history)
    store.close(compact=False)
    return describe(directory, ["commits.1.log", "commits.2.log", "snapshot.1", "snapshot.2"], history)


def build_killed_state(directory: Path) -> State:
    """A compaction commit() started, commits made while its worker thread wrote the snapshot, and the
    process killed between the snapshot's rename and the switch to its generation."""
    held, release = threading.Event(), threading.Event()

    def fsync_directory(path: Path) -> None:  # the worker, right after the rename
        held.set()
        release.wait(10)

    async def run() -> dict[str, list[int]]:
        store = CheckpointStore(directory.with_name("live"))
        store.load()
        history = commit(store, BEFORE)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(checkpoint, "_fsync_directory", fsync_directory)
            store._compact_in_background()
            assert held.wait(10)
            commit(store, AFTER, history)
            shutil.copytree(store.directory, directory)  # what the SIGKILL leaves
            release.set()
            store.close(compact=False)
        return history

    history = asyncio.run(run())
    return describe(directory, ["commits.1.log", "snapshot.1", "snapshot.2"], history)


def commit(store: CheckpointStore, offsets: tuple[tuple[str, int], ...],
           history: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    history = {} if history is None else history
    for key, offset in offsets:
        store.commit(Entry(key, f"/logs/{key}.log", 256, "ab" * 8, offset, time.time()))
        history.setdefault(key, []).append(offset)
    return history


def describe(directory: Path, names: list[str], history: dict[str, list[int]]) -> State:
    """The files, and the committed offsets each record of them holds."""
    files = {p.name: p.read_bytes() for p in directory.iterdir()}
    assert sorted(files) == names
    records = [Record("snapshot.2", 0, len(files["snapshot.2"]) - 1, {"a": 200, "b": 50, "c": 10})]
    for name in (n for n in names if n.endswith(".log")):
        start = 0
        for line in files[name].split(b"\n")[:-1]:
            key, offset = line.split(b'"')[1].decode(), int(line.split(b",")[-2])
            records.append(Record(name, start, start + len(line), {key: offset}))
            start += len(line) + 1
    return files, records, history


def intact(record: Record, name: str, mutation: str, position: int) -> bool:
    """Whether ``record`` (with the newline before it, its framing) survives ``mutation`` of file ``name``."""
    if record.file != name or mutation == "append":
        return True
    if mutation == "truncate":
        return record.end < position
    if record.file.startswith("snapshot"):
        return False
    return not record.start - 1 <= position <= record.end


def mutations(data: bytes) -> list[tuple[str, int, bytes]]:
    cases = [("truncate", p, data[:p]) for p in range(len(data))]
    cases += [("flip", p, data[:p] + bytes([data[p] ^ (1 << p % 8)]) + data[p + 1:]) for p in range(len(data))]
    cases += [("append", len(data), data + garbage) for garbage in GARBAGE]
    return cases


def loaded(directory: Path) -> dict[str, int]:
    store = CheckpointStore(directory)
    store.load()
    store.close(compact=False)
    return {key: entry.offset for key, entry in store.entries.items()}


@pytest.mark.parametrize("build", [build_state, build_killed_state])
def test_every_byte_of_every_state_file_truncated_flipped_or_followed_by_garbage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build: Callable[[Path], State]) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # loads are in-process: no power loss to guard against
    files, records, history = build(tmp_path / "original")
    final = {key: offsets[-1] for key, offsets in history.items()}
    work = tmp_path / "work"
    checked = 0
    for name, data in files.items():
        for mutation, position, damaged in mutations(data):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            for other, content in files.items():
                (work / other).write_bytes(damaged if other == name else content)
            case = f"{name} {mutation} at {position}"
            got = loaded(work)
            floor: dict[str, int] = {}
            for record in records:
                if intact(record, name, mutation, position):
                    for key, offset in record.offsets.items():
                        floor[key] = max(floor.get(key, 0), offset)
            assert set(floor) <= set(got) <= set(history), case  # nothing valid forgotten, nothing invented
            for key, offset in got.items():
                assert offset in history[key], case  # a position that was committed
                assert offset <= final[key], case  # never past what was committed: nothing skipped
                assert offset >= floor.get(key, 0), case  # never older than the newest intact record
            assert loaded(work) == got, case  # what the load wrote back holds
            checked += 1
    assert checked > 1000
