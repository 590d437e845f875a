"""Where each tailed file has been read to, safe across SIGKILL.

Storage: a snapshot (``checkpoints.json``, rewritten atomically by write to a
temporary file and rename) plus an append-only commit log
(``checkpoints.<generation>.log``, one JSON line per commit). A commit is one
small ``write`` to an O_APPEND descriptor, done in the same step of the event
loop as the sink's acknowledgement, so a SIGKILL can only land before or after
it: on restart a file is re-read from its last acknowledged offset, and
nothing acknowledged is lost. Each line is a complete entry, so replay is
"last line per file wins"; a torn last line (a crash of the machine mid-write)
is ignored. When the log grows past ``compact_bytes`` the entries are written
into a new snapshot that names the next generation, then the old log is
deleted; a crash between the two steps only leaves a stale log that is never
replayed. Entries of files not seen for ``grace`` seconds are dropped at
compaction. No fsync: the page cache survives the process; a power loss may
cost the last few seconds of commits (re-read, not lost).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec


class Entry(msgspec.Struct, array_like=True):
    """One file's identity and committed offset."""

    key: str  # "dev:inode"
    path: str
    fp_len: int  # how many leading bytes the fingerprint covers
    fp: str  # hex digest of those bytes
    offset: int
    seen: float  # last time the file was present (unix seconds)


class Snapshot(msgspec.Struct):
    generation: int
    entries: list[Entry]


_encode_entry = msgspec.json.Encoder().encode
_decode_entry = msgspec.json.Decoder(Entry).decode


class CheckpointStore:
    """Committed offsets by file key, persisted under ``directory``."""

    def __init__(self, directory: Path, grace: float = 3600.0, compact_bytes: int = 1 << 20) -> None:
        self.directory = directory
        self.grace = grace
        self.compact_bytes = compact_bytes
        self.entries: dict[str, Entry] = {}
        self.generation = 0
        self._log_fd = -1
        self._log_bytes = 0

    @property
    def _snapshot_path(self) -> Path:
        return self.directory / "checkpoints.json"

    def _log_path(self, generation: int) -> Path:
        return self.directory / f"checkpoints.{generation}.log"

    def load(self) -> None:
        """Read the snapshot and replay its log; remove logs of other generations."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            snapshot = msgspec.json.decode(self._snapshot_path.read_bytes(), type=Snapshot)
            self.generation = snapshot.generation
            self.entries = {e.key: e for e in snapshot.entries}
        except FileNotFoundError:
            pass
        except (msgspec.DecodeError, msgspec.ValidationError):
            broken = self._snapshot_path.with_suffix(".broken")
            os.replace(self._snapshot_path, broken)  # keep it for a human; start from the log
        log_path = self._log_path(self.generation)
        if log_path.exists():
            for line in log_path.read_bytes().splitlines():
                try:
                    entry = _decode_entry(line)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue  # a torn last line
                self.entries[entry.key] = entry
        for stale in self.directory.glob("checkpoints.*.log"):
            if stale != log_path:
                stale.unlink(missing_ok=True)
        self._open_log()

    def _open_log(self) -> None:
        if self._log_fd >= 0:
            os.close(self._log_fd)
        path = self._log_path(self.generation)
        self._log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._log_bytes = os.fstat(self._log_fd).st_size

    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def commit(self, entry: Entry) -> None:
        """Record ``entry`` (durable against a crash of the process on return); ignored once closed."""
        if self._log_fd < 0:
            return
        self.entries[entry.key] = entry
        data = _encode_entry(entry) + b"\n"
        os.write(self._log_fd, data)
        self._log_bytes += len(data)
        if self._log_bytes >= self.compact_bytes:
            self.compact()

    def touch(self, keys: list[str], now: float | None = None) -> None:
        """Mark files as present (their entries survive compaction)."""
        now = time.time() if now is None else now
        for key in keys:
            entry = self.entries.get(key)
            if entry is not None:
                entry.seen = now

    def compact(self, now: float | None = None) -> None:
        """Write a new snapshot without entries unseen for ``grace`` seconds, then start a new log."""
        now = time.time() if now is None else now
        self.entries = {k: e for k, e in self.entries.items() if now - e.seen <= self.grace}
        old = self.generation
        self.generation += 1
        tmp = self._snapshot_path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(Snapshot(self.generation, list(self.entries.values()))))
        os.replace(tmp, self._snapshot_path)
        self._open_log()
        self._log_path(old).unlink(missing_ok=True)

    def close(self) -> None:
        """Compact (a short snapshot for the next start) and close the log."""
        if self._log_fd >= 0:
            self.compact()
            os.close(self._log_fd)
            self._log_fd = -1
