"""Where each tailed file has been read to: safe across SIGKILL, and never trusted blindly.

Storage, by generation ``N``: a snapshot ``snapshot.N`` (the entries as the generation began: a line
with the CRC32 of the rest, then JSON) and a commit log ``commits.N.log`` (one line per commit,
``<CRC32 hex> <JSON entry>``). A commit is one small ``write`` to an O_APPEND descriptor, done in the
same step of the event loop as the sink's acknowledgement, so a SIGKILL can only land before or after
it: on restart a file is re-read from its last acknowledged offset, and nothing acknowledged is lost.
Replay is "last valid record per file wins"; a torn last line (a crash of the machine mid-write) is
dropped. Entries of files not seen for ``grace`` seconds are dropped at compaction. Commits are not
fsynced: the page cache survives the process; a power loss may cost the last few seconds of commits
(re-read, not lost).

Compaction. When the log of generation ``N`` grows past ``compact_bytes``, ``commit()`` captures the
entries (encoded at once, in the loop) together with the log's current length ``X``, and a worker
thread writes them as ``snapshot.N+1`` (fsynced, renamed into place, directory fsynced, read back
and compared): a busy disk's fsync never stalls the event loop. Meanwhile commits go on to log ``N``;
the keys they touch are remembered. Once the thread reports the snapshot verified, the loop starts
``commits.N+1.log`` with one record per key committed since the capture, switches to it, and only
then deletes files older than generation ``N``. One compaction runs at a time; if it fails nothing
switches, ``checkpoint_write_failed`` is reported and it is tried again after ``compact_bytes`` more.
A snapshot records the log it was captured from and ``X`` (``log_generation``, ``log_offset``), so a
SIGKILL between the rename and the switch loses nothing: load replays that log from ``X`` on, then
every log from the snapshot's generation on. ``compact()`` called directly (load, shutdown, after a
failed commit write) is synchronous, and ``close()`` first waits for a compaction in flight and
applies it; a late report from its thread is then ignored.

Loading takes the newest snapshot that passes its checksum and validation, replays the logs named
above (a record that fails its checksum is skipped, the others kept), and writes the result as a
new generation. A corrupt file is renamed to ``<name>.corrupt``, logged and reported
(``checkpoint_corrupt``); since the previous generation is kept until the next one is verified (and
with it any log the kept snapshot was captured from), a corrupt snapshot falls back to the one before
it plus the logs since, never to nothing.

Files of the earlier format (``checkpoints.json`` and ``checkpoints.N.log``, without checksums) are
validated by decoding, loaded the same way, and removed once a newer generation is verified.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import msgspec

log = logging.getLogger("agent.sources.tail")

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Entry(msgspec.Struct, array_like=True):
    """One file's identity and committed offset."""

    key: str  # "dev:inode"
    path: str
    fp_len: NonNegative  # how many leading bytes the fingerprint covers
    fp: str  # hex digest of those bytes
    offset: NonNegative
    seen: float  # last time the file was present (unix seconds)


class Snapshot(msgspec.Struct):
    """Every entry as a generation began, and the log (from ``log_offset`` on) committed after them."""

    generation: NonNegative
    entries: list[Entry]
    log_generation: int = -1  # -1: no log holds commits made after these entries were taken
    log_offset: NonNegative = 0


_encode_entry = msgspec.json.Encoder().encode
_decode_entry = msgspec.json.Decoder(Entry).decode
_decode_snapshot = msgspec.json.Decoder(Snapshot).decode
_INVALID = (msgspec.DecodeError, msgspec.ValidationError)
_FILES = re.compile(r"(?:snapshot\.(\d+)|commits\.(\d+)\.log|checkpoints\.(\d+)\.log)")
LEGACY_SNAPSHOT = "checkpoints.json"


def _record(entry: Entry) -> bytes:
    body = _encode_entry(entry)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _checked(head: bytes, body: bytes) -> bool:
    """Whether ``head`` is the 8-digit hex CRC32 of ``body``."""
    try:
        return len(head) == 8 and int(head, 16) == zlib.crc32(body)
    except ValueError:
        return False


def _parse_record(line: bytes, legacy: bool) -> Entry | None:
    """The entry of one log line, or None if it fails its checksum or does not decode."""
    if not legacy and (line[8:9] != b" " or not _checked(line[:8], line[9:])):
        return None
    try:
        return _decode_entry(line if legacy else line[9:])
    except _INVALID:
        return None


def _snapshot_bytes(snapshot: Snapshot) -> bytes:
    body = msgspec.json.encode(snapshot)
    return b"%08x\n" % zlib.crc32(body) + body


def _parse_snapshot(data: bytes, generation: int) -> Snapshot | None:
    """A ``snapshot.N`` file's bytes decoded, or None if they are not a valid snapshot of ``generation``."""
    head, newline, body = data.partition(b"\n")
    if not newline or not _checked(head, body):
        return None
    try:
        snapshot = _decode_snapshot(body)
    except _INVALID:
        return None
    if snapshot.generation != generation or not -1 <= snapshot.log_generation < generation:
        return None
    return snapshot


def _persist(path: Path, data: bytes) -> bool:
    """Write a snapshot durably (fsynced, renamed into place, directory fsynced) and read it back; False,
    with nothing left behind, if any of that failed. Runs in a worker thread for ``commit()``'s compactions."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
        if path.read_bytes() == data:
            return True
        log.error("a checkpoint snapshot reads back other than written", extra={"path": str(path)})
    except OSError as exc:
        log.error("cannot write a checkpoint snapshot", extra={"path": str(path), "error": exc.strerror})
    for leftover in (tmp, path):
        leftover.unlink(missing_ok=True)
    return False


@dataclass
class _Compaction:
    """A snapshot being written in a worker thread, and the keys committed since its entries were taken."""

    generation: int
    kept: set[str]  # keys the snapshot holds
    done: Future[bool]
    dirty: set[str] = field(default_factory=set)


class CheckpointStore:
    """Committed offsets by file key, persisted under ``directory``; see the module docstring.

    ``report`` is called with an error type (``checkpoint_corrupt``, ``checkpoint_write_failed``)
    for each state file found corrupt and each write that failed; ``corrupt`` counts the former.
    """

    def __init__(self, directory: Path, grace: float = 3600.0, compact_bytes: int = 1 << 20,
                 report: Callable[[str], None] | None = None) -> None:
        self.directory = directory
        self.grace = grace
        self.compact_bytes = compact_bytes
        self.entries: dict[str, Entry] = {}
        self.generation = 0
        self.corrupt = 0
        self._report = report
        self._log_fd = -1
        self._log_bytes = 0
        self._compact_at = compact_bytes
        self._legacy_generation = -1  # of a valid checkpoints.json, while it is kept
        self._failed = False  # the last commit's write failed: start a clean log before the next
        self._job: _Compaction | None = None  # the compaction a worker thread is writing
        self.first_start = False  # load() found no directory or an empty one: nothing was ever recorded here
        self._executor: ThreadPoolExecutor | None = None

    def _snapshot_path(self, generation: int) -> Path:
        return self.directory / f"snapshot.{generation}"

    def _log_path(self, generation: int) -> Path:
        return self.directory / f"commits.{generation}.log"

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Take the newest valid state (see the module docstring) and start a new generation from it."""
        self.first_start = not self.directory.is_dir() or not any(self.directory.iterdir())
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("snapshot.*.tmp"):  # a compaction a crash interrupted
            stale.unlink(missing_ok=True)
        snapshots, logs = self._listing()
        base, newest = -1, max([*snapshots, *(g for g, _ in logs.values()), 0])
        legacy = self._load_legacy_snapshot()
        if legacy is not None:
            snapshots.setdefault(legacy[0], self.directory / LEGACY_SNAPSHOT)
        tail = (-1, 0)  # the log, and the offset in it, of commits made after the snapshot's entries were taken
        for generation in sorted(snapshots, reverse=True):
            path = snapshots[generation]
            if legacy is not None and path.name == LEGACY_SNAPSHOT:
                base, self.entries = generation, legacy[1]
                break
            snapshot = _parse_snapshot(self._read(path), generation)
            if snapshot is not None:
                base, self.entries = generation, {e.key: e for e in snapshot.entries}
                tail = (snapshot.log_generation, snapshot.log_offset)
                break
            self._quarantine(path, "snapshot fails its checksum")
        in_order = sorted(logs.items(), key=lambda item: (item[1][0], not item[1][1]))  # an earlier format first
        corrupt_logs = [path for path, (generation, legacy_log) in in_order
                        if (generation >= base or (generation, legacy_log) == (tail[0], False))
                        and not self._replay(path, legacy_log, tail[1] if generation == tail[0] else 0)]
        self.generation = max(newest, base)
        keep_from = tail[0] if tail[0] >= 0 else max(base, 0)  # the log the snapshot was captured from too
        if self._advance(self.entries, keep_from):
            for path in corrupt_logs:  # their valid records are in the new snapshot now
                self._quarantine(path, "commit log has records that fail their checksum", count=False)
        else:  # the directory takes no new generation: append to the newest log, on a line of its own
            self._open_log(self.generation, ensure_newline=True)

    def _listing(self) -> tuple[dict[int, Path], dict[Path, tuple[int, bool]]]:
        """Snapshots by generation, and logs with their generation and whether they are of the earlier format."""
        snapshots: dict[int, Path] = {}
        logs: dict[Path, tuple[int, bool]] = {}
        for path in self.directory.iterdir():
            match = _FILES.fullmatch(path.name)
            if match is None:
                continue
            snapshot, log_generation, legacy_generation = match.groups()
            if snapshot is not None:
                snapshots[int(snapshot)] = path
            elif log_generation is not None:
                logs[path] = (int(log_generation), False)
            else:
                logs[path] = (int(legacy_generation), True)
        return snapshots, logs

    def _load_legacy_snapshot(self) -> tuple[int, dict[str, Entry]] | None:
        path = self.directory / LEGACY_SNAPSHOT
        if not path.exists():
            return None
        try:
            snapshot = _decode_snapshot(self._read(path))
        except _INVALID:
            self._quarantine(path, "snapshot does not decode")
            return None
        self._legacy_generation = snapshot.generation
        return snapshot.generation, {e.key: e for e in snapshot.entries}

    def _read(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            log.warning("cannot read checkpoint file", extra={"path": str(path), "error": exc.strerror})
            return b""

    def _replay(self, path: Path, legacy: bool, start: int = 0) -> bool:
        """Apply a log's valid records from byte ``start`` on; False if a complete record of those was corrupt."""
        lines = self._read(path)[start:].split(b"\n")
        if lines.pop():
            log.info("a torn last commit (a crash mid-write) is dropped", extra={"path": str(path)})
        entries = self.entries
        bad = 0
        for line in lines:
            entry = _parse_record(line, legacy)
            if entry is None:
                bad += 1
            else:
                entries[entry.key] = entry
        if bad:
            self._corrupt(path, f"{bad} commit records fail their checksum; the others are kept")
        return not bad

    def _corrupt(self, path: Path, reason: str) -> None:
        self.corrupt += 1
        log.error("corrupt checkpoint file", extra={"path": str(path), "reason": reason})
        if self._report is not None:
            self._report("checkpoint_corrupt")

    def _quarantine(self, path: Path, reason: str, count: bool = True) -> None:
        """Rename a corrupt file aside (for a human), so that it is never read again."""
        if count:
            self._corrupt(path, reason)
        try:
            os.replace(path, path.with_name(path.name + ".corrupt"))
        except OSError as exc:
            log.warning("cannot move a corrupt checkpoint file aside", extra={"path": str(path),
                                                                              "error": exc.strerror})

    # -- writing ---------------------------------------------------------------------------

    def _advance(self, entries: dict[str, Entry], keep_from: int) -> bool:
        """Write ``entries`` as the next generation here and now, start its log, then delete files older
        than ``keep_from``."""
        generation = self.generation + 1
        data = _snapshot_bytes(Snapshot(generation, list(entries.values())))
        if not _persist(self._snapshot_path(generation), data):
            return self._write_failed()
        return self._switch(generation, entries, b"", keep_from)

    def _switch(self, generation: int, entries: dict[str, Entry], carried: bytes, keep_from: int) -> bool:
        """Start the log of the verified ``snapshot.<generation>`` with the ``carried`` records, make that
        generation current and delete files older than ``keep_from``; False if its log could not be started."""
        path = self._log_path(generation)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if carried and os.write(fd, carried) != len(carried):
                    raise OSError(0, "short write")
            except OSError:
                os.close(fd)
                raise
        except OSError as exc:
            log.error("cannot start a checkpoint log", extra={"path": str(path), "error": exc.strerror})
            for leftover in (path, self._snapshot_path(generation)):  # the current generation goes on
                leftover.unlink(missing_ok=True)
            return self._write_failed()
        if self._log_fd >= 0:
            os.close(self._log_fd)
        self._log_fd, self._log_bytes, self._compact_at = fd, len(carried), self.compact_bytes
        self.generation, self.entries, self._failed = generation, entries, False
        self._remove_before(keep_from)
        return True

    def _write_failed(self) -> bool:
        if self._report is not None:
            self._report("checkpoint_write_failed")
        return False

    def _remove_before(self, generation: int) -> None:
        snapshots, logs = self._listing()
        old = [path for g, path in snapshots.items() if g < generation]
        old += [path for path, (g, _) in logs.items() if g < generation]
        if 0 <= self._legacy_generation < generation:
            old.append(self.directory / LEGACY_SNAPSHOT)
            self._legacy_generation = -1
        for path in old:
            path.unlink(missing_ok=True)

    def _open_log(self, generation: int, ensure_newline: bool = False) -> None:
        fd = os.open(self._log_path(generation), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        if self._log_fd >= 0:
            os.close(self._log_fd)
        self._log_fd = fd
        self._log_bytes = os.fstat(self._log_fd).st_size
        self._compact_at = self.compact_bytes
        if ensure_newline and self._log_bytes and os.pread(self._log_fd, 1, self._log_bytes - 1) != b"\n":
            try:
                self._log_bytes += os.write(self._log_fd, b"\n")  # a torn last line stays a line of its own
            except OSError as exc:  # a full disk: the next commit starts a clean generation instead
                log.error("cannot write a checkpoint", extra={"error": exc.strerror})
                self._failed = True
                self._write_failed()

    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def commit(self, entry: Entry) -> None:
        """Record ``entry`` (durable against a crash of the process on return); ignored once closed."""
        if self._log_fd < 0:
            return
        self.entries[entry.key] = entry
        if self._job is not None:
            self._job.dirty.add(entry.key)
        if self._failed:  # the log may end in a torn record: the entry goes into a new generation instead
            self._failed = not self.compact()
            return
        data = _record(entry)
        try:
            written = os.write(self._log_fd, data)
        except OSError as exc:
            log.error("cannot write a checkpoint", extra={"error": exc.strerror})
            written = -1
        if written != len(data):
            self._failed = True
            self._write_failed()
            return
        self._log_bytes += written
        if self._log_bytes >= self._compact_at and self._job is None:
            self._compact_in_background()

    def _compact_in_background(self) -> None:
        """Capture the entries and have a worker thread write them as the next snapshot (module docstring)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop to stall (a tool, a test): compact here
            if not self.compact():
                self._compact_at = self._log_bytes + self.compact_bytes  # try again later, not at every commit
            return
        entries = self._live(None)
        generation = self.generation + 1
        data = _snapshot_bytes(Snapshot(generation, list(entries.values()), self.generation, self._log_bytes))
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        done = self._executor.submit(_persist, self._snapshot_path(generation), data)
        job = _Compaction(generation, set(entries), done)
        self._job = job
        job.done.add_done_callback(lambda _: _call_in(loop, self._settle, job))

    def _settle(self, job: _Compaction) -> None:
        """Apply a finished compaction: switch to its generation, carrying what was committed since its
        capture, or count its failure and try again after ``compact_bytes`` more. Ignored once settled."""
        if job is not self._job:
            return
        self._job = None
        error = job.done.exception()
        if error is not None:
            log.error("a checkpoint compaction failed", exc_info=error)
        if error is None and job.done.result():
            keep = job.kept | job.dirty
            entries = {key: e for key, e in self.entries.items() if key in keep}
            carried = b"".join(_record(self.entries[key]) for key in job.dirty)
            switched = self._switch(job.generation, entries, carried, keep_from=self.generation)
        else:
            switched = self._write_failed()
        if not switched:
            self._compact_at = self._log_bytes + self.compact_bytes

    def _settle_now(self) -> None:
        """Wait for a compaction in flight (blocking; for the synchronous paths only) and apply it."""
        if self._job is not None:
            wait((self._job.done,))
            self._settle(self._job)

    def touch(self, keys: list[str], now: float | None = None) -> None:
        """Mark files as present (their entries survive compaction)."""
        now = time.time() if now is None else now
        for key in keys:
            entry = self.entries.get(key)
            if entry is not None:
                entry.seen = now

    def _live(self, now: float | None) -> dict[str, Entry]:
        """The entries of files seen within ``grace`` seconds."""
        now = time.time() if now is None else now
        return {k: e for k, e in self.entries.items() if now - e.seen <= self.grace}

    def compact(self, now: float | None = None) -> bool:
        """Start a new generation without entries unseen for ``grace`` seconds, synchronously (after a
        compaction in flight); False if it could not be written."""
        self._settle_now()
        return self._advance(self._live(now), keep_from=self.generation)

    def close(self, compact: bool = True) -> None:
        """Wait for a compaction in flight and apply it, compact (a short snapshot for the next start)
        unless told not to, and close the log."""
        if self._log_fd >= 0:
            self._settle_now()
            if compact:
                self.compact()
            os.close(self._log_fd)
            self._log_fd = -1
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None


def _call_in(loop: asyncio.AbstractEventLoop, callback: Callable[[_Compaction], None], job: _Compaction) -> None:
    try:
        loop.call_soon_threadsafe(callback, job)
    except RuntimeError:  # the loop is closed: close() settled the compaction, or the process is ending
        pass


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
