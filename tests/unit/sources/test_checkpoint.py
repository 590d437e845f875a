from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec
import pytest

from agent.sources.tail.checkpoint import CheckpointStore, Entry, Snapshot


def entry(key: str, offset: int, seen: float | None = None) -> Entry:
    return Entry(key, f"/logs/{key}.log", 256, "ab" * 8, offset, time.time() if seen is None else seen)


def test_commits_survive_a_crash_without_close(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.load()
    store.commit(entry("1:2", 100))
    store.commit(entry("1:2", 250))
    store.commit(entry("1:3", 7))
    # no close(): the process died; a new one replays the log
    again = CheckpointStore(tmp_path)
    again.load()
    assert again.get("1:2").offset == 250  # type: ignore[union-attr]
    assert again.get("1:3").offset == 7  # type: ignore[union-attr]


def test_a_torn_last_log_line_is_ignored_and_the_next_commit_is_kept(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.load()
    store.commit(entry("1:2", 100))
    log = tmp_path / f"commits.{store.generation}.log"
    with log.open("ab") as f:
        f.write(b'0123abcd ["1:2","/logs/1:2.log",256,"ab')  # a crash mid-write
    again = CheckpointStore(tmp_path)
    again.load()
    assert again.get("1:2").offset == 100  # type: ignore[union-attr]
    assert again.corrupt == 0  # a torn last line is what a crash leaves, not corruption


def test_compaction_starts_a_new_generation_and_forgets_files_gone_past_the_grace(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, grace=60, compact_bytes=200)
    store.load()
    store.commit(entry("old", 1, seen=1000))
    store.touch(["old"], now=1000)
    for offset in range(5):  # grows the log past compact_bytes
        store.commit(entry("live", offset, seen=1100))
    store.compact(now=1100)
    assert store.get("old") is None and store.get("live").offset == 4  # type: ignore[union-attr]
    generation = store.generation
    kept = sorted(p.name for p in tmp_path.iterdir())  # this generation and the one before it, as a fallback
    assert kept == sorted([f"commits.{generation - 1}.log", f"commits.{generation}.log",
                           f"snapshot.{generation - 1}", f"snapshot.{generation}"])
    store.commit(entry("live", 99, seen=1100))
    again = CheckpointStore(tmp_path)
    again.load()
    assert again.get("live").offset == 99  # type: ignore[union-attr]


def legacy_state(directory: Path, generation: int, snapshot: list[Entry], logs: dict[int, list[Entry]]) -> None:
    """Files as the previous release wrote them: plain JSON, no checksums."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "checkpoints.json").write_bytes(msgspec.json.encode(Snapshot(generation, snapshot)))
    for log_generation, entries in logs.items():
        (directory / f"checkpoints.{log_generation}.log").write_bytes(
            b"".join(msgspec.json.encode(e) + b"\n" for e in entries))


def test_files_of_the_previous_release_load_and_are_replaced_at_compaction(tmp_path: Path) -> None:
    legacy_state(tmp_path, 3, [entry("a", 10), entry("b", 20)], {3: [entry("a", 15), entry("c", 5)]})
    store = CheckpointStore(tmp_path)
    store.load()
    assert {k: e.offset for k, e in store.entries.items()} == {"a": 15, "b": 20, "c": 5}
    assert store.generation == 4 and store.corrupt == 0
    store.commit(entry("b", 25))
    store.close()
    names = {p.name for p in tmp_path.iterdir()}
    assert not {"checkpoints.json", "checkpoints.3.log"} & names
    again = CheckpointStore(tmp_path)
    again.load()
    assert {k: e.offset for k, e in again.entries.items()} == {"a": 15, "b": 25, "c": 5}


def test_a_corrupt_snapshot_of_the_previous_release_keeps_its_live_log(tmp_path: Path) -> None:
    """Issue 8.2: the broken snapshot went aside, generation 0 was assumed, and the live log was deleted."""
    legacy_state(tmp_path, 3, [], {3: [entry("a", 15), entry("c", 5)]})
    (tmp_path / "checkpoints.json").write_text("{not json")
    errors: list[str] = []
    store = CheckpointStore(tmp_path, report=errors.append)
    store.load()
    assert {k: e.offset for k, e in store.entries.items()} == {"a": 15, "c": 5}
    assert errors == ["checkpoint_corrupt"]
    assert (tmp_path / "checkpoints.json.corrupt").exists()
    again = CheckpointStore(tmp_path)
    again.load()  # and the state written from it holds
    assert {k: e.offset for k, e in again.entries.items()} == {"a": 15, "c": 5}


def test_a_corrupt_snapshot_falls_back_to_the_previous_generation_and_its_logs(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.load()
    store.commit(entry("a", 10))
    store.compact()
    store.commit(entry("b", 20))
    store.close(compact=False)
    snapshot = tmp_path / f"snapshot.{store.generation}"
    data = bytearray(snapshot.read_bytes())
    data[-5] ^= 0x01
    snapshot.write_bytes(bytes(data))
    errors: list[str] = []
    again = CheckpointStore(tmp_path, report=errors.append)
    again.load()
    assert {k: e.offset for k, e in again.entries.items()} == {"a": 10, "b": 20}
    assert errors == ["checkpoint_corrupt"] and again.corrupt == 1
    assert (tmp_path / f"snapshot.{store.generation}.corrupt").exists()


def test_a_corrupt_log_record_is_skipped_the_others_kept_and_the_log_set_aside(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.load()
    for key, offset in (("a", 1), ("b", 2), ("c", 3)):
        store.commit(entry(key, offset))
    store.close(compact=False)
    log = tmp_path / f"commits.{store.generation}.log"
    lines = log.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b",2,", b",9,")  # b's record no longer matches its checksum
    log.write_bytes(b"\n".join(lines))
    errors: list[str] = []
    again = CheckpointStore(tmp_path, report=errors.append)
    again.load()
    assert {k: e.offset for k, e in again.entries.items()} == {"a": 1, "c": 3}
    assert errors == ["checkpoint_corrupt"]
    assert (tmp_path / (log.name + ".corrupt")).exists() and not log.exists()


def test_a_failed_commit_write_goes_into_a_new_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[str] = []
    store = CheckpointStore(tmp_path, report=errors.append)
    store.load()
    store.commit(entry("a", 1))
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        return real_write(fd, data[:7])  # ENOSPC after a few bytes: a torn record

    monkeypatch.setattr(os, "write", full)
    store.commit(entry("a", 2))
    monkeypatch.setattr(os, "write", real_write)
    store.commit(entry("a", 3))
    store.commit(entry("b", 4))
    assert errors == ["checkpoint_write_failed"]
    store.close(compact=False)
    again = CheckpointStore(tmp_path)
    again.load()
    assert {k: e.offset for k, e in again.entries.items()} == {"a": 3, "b": 4}


def test_a_full_disk_at_start_up_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """User trial: a torn log on a full disk made load() raise ENOSPC, so the source restarted in a loop."""
    store = CheckpointStore(tmp_path)
    store.load()
    store.commit(entry("a", 100))
    store.close(compact=False)
    with (tmp_path / f"commits.{store.generation}.log").open("ab") as f:
        f.write(b"0123abcd [\"a\"")  # torn by the crash that the full disk caused

    def no_space(*_: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    monkeypatch.setattr(CheckpointStore, "_advance", lambda self, entries, keep_from: False)  # no new generation
    errors: list[str] = []
    again = CheckpointStore(tmp_path, report=errors.append)
    again.load()
    assert again.get("a").offset == 100  # type: ignore[union-attr]
    assert errors == ["checkpoint_write_failed"]


def test_first_start_is_only_for_a_directory_that_never_held_checkpoints(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "tail" / "src")
    store.load()
    assert store.first_start
    store.close()
    for path in (tmp_path / "tail" / "src").iterdir():
        path.rename(path.with_name(path.name + ".corrupt"))  # even when nothing valid is left
    again = CheckpointStore(tmp_path / "tail" / "src")
    again.load()
    assert not again.first_start
