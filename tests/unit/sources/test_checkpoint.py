from __future__ import annotations

import time
from pathlib import Path

from agent.sources.tail.checkpoint import CheckpointStore, Entry


def entry(key: str, offset: int, seen: float = 1000.0) -> Entry:
    return Entry(key, f"/logs/{key}.log", 256, "ab" * 8, offset, seen)


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


def test_a_torn_last_log_line_is_ignored(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.load()
    store.commit(entry("1:2", 100))
    log = tmp_path / "checkpoints.0.log"
    log.write_bytes(log.read_bytes() + b'["1:2","/logs/1:2.log",256,"ab')
    again = CheckpointStore(tmp_path)
    again.load()
    assert again.get("1:2").offset == 100  # type: ignore[union-attr]


def test_compaction_starts_a_new_generation_and_forgets_files_gone_past_the_grace(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, grace=60, compact_bytes=200)
    store.load()
    store.commit(entry("old", 1, seen=1000))
    store.touch(["old"], now=1000)
    for offset in range(5):  # grows the log past compact_bytes
        store.commit(entry("live", offset, seen=1100))
    store.compact(now=1100)
    assert store.get("old") is None and store.get("live").offset == 4  # type: ignore[union-attr]
    logs = sorted(p.name for p in tmp_path.glob("checkpoints.*.log"))
    assert logs == [f"checkpoints.{store.generation}.log"]
    store.commit(entry("live", 99, seen=1100))
    again = CheckpointStore(tmp_path)
    again.load()
    assert again.get("live").offset == 99  # type: ignore[union-attr]


def test_a_stale_log_from_an_interrupted_compaction_is_not_replayed(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.load()
    store.commit(entry("k", 10, seen=time.time()))
    store.compact()  # snapshot at generation 1 holds offset 10
    (tmp_path / "checkpoints.0.log").write_bytes(b'["k","/logs/k.log",256,"abababababababab",3,1000.0]\n')
    again = CheckpointStore(tmp_path)
    again.load()
    assert again.get("k").offset == 10  # type: ignore[union-attr]
    assert not (tmp_path / "checkpoints.0.log").exists()


def test_a_corrupt_snapshot_is_set_aside_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "checkpoints.json").write_text("{not json")
    store = CheckpointStore(tmp_path)
    store.load()
    assert store.entries == {}
    assert (tmp_path / "checkpoints.broken").exists()
