"""Source `tail`: container and host log files, read once, in order, across rotations and restarts.

Each round reads at most ``read_bytes`` from every open file that has new
data (so one chatty file cannot starve the others), frames complete lines,
decodes them (Docker json-file, CRI or raw, with partial-line reassembly,
then multiline), and sends one batch per file read. The send waits while the
pipeline is full: the file is the buffer, and memory stays bounded.

Every batch carries an ack whose token is the file offset up to which all
bytes have been turned into events; the offset is committed to the
checkpoint store only when every sink acknowledged the batch and all earlier
ones of that file. A partial record (a Docker piece without its ``\n``, CRI
``P`` lines) that nothing completes within ``partial_flush_timeout`` is
emitted marked ``partial``; one still held at shutdown is not committed, so
a restart reads it again. Rotation by rename or deletion keeps the old file
open to its end (up to ``rotate_wait`` after the rename); a shrinking file
(copytruncate) is read again from its start; a file is known by device,
inode and a fingerprint of its first bytes, so a reused inode is a new file.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import stat
import time
from collections import deque
from functools import partial
from typing import Any, Literal

from agent.codecs.container import DECODERS, detect_format
from agent.codecs.multiline import Multiline, MultilineConfig
from agent.config.model import SourceConfig
from agent.config.registry import BuildContext, register
from agent.config.units import ByteSize, Duration
from agent.core.ack import OrderedAcks
from agent.core.batch import Batch, Kind
from agent.core.component import SourceContext
from agent.core.errors import BuildError, StartupError
from agent.core.footprint import decoded_bytes
from agent.kubernetes import files as container_logs
from agent.observe.stats import ComponentStats
from agent.sources.tail.checkpoint import CheckpointStore, Entry
from agent.sources.tail.files import FINGERPRINT_BYTES, TailedFile, file_key, kubernetes_fields, starts_with
from agent.sources.tail.wakeup import Wakeup

log = logging.getLogger("agent.sources.tail")

# With more files than max_open_files, a file that never reaches its end gives its descriptor up after this
# long, so that every file gets read in turn (idle files at their end give it up at once).
DESCRIPTOR_SLICE = 1.0


class TailConfig(SourceConfig, tag="tail"):
    """Follow the files matching ``include`` (globs; symlinks followed), minus ``exclude``.

    Docker json-file and CRI lines are decoded (``format: auto`` decides per file) into ``message``, ``stream``,
    ``time``, ``file``, ``inode``, ``offset`` and, from a kubelet file name, ``kubernetes.{pod, namespace, container,
    container_id}``; Docker's 16 KiB pieces and CRI partial lines are joined. Rotation (rename, copytruncate) is
    followed and a renamed file read to its end. Positions are checkpointed under ``data_dir`` only once every sink
    delivered the lines, so a crash loses nothing; while the pipeline is full the source stops reading (the file is the
    buffer).
    """

    include: list[str]
    """Globs of the files to read; symlinks (into /var/log/pods) are followed."""
    exclude: list[str] = []
    """Globs of files to leave out, matched against the path."""
    format: Literal["auto", "docker", "cri", "raw"] = "auto"
    """How lines are framed: docker (json-file), cri, raw (as they are), or auto (decided per file from its first line).
    """
    read_from: Literal["beginning", "end"] = "end"
    """Where files found at the very first start are read from; every later file is read from its beginning."""
    glob_interval: Duration = Duration(1.0)
    """How often the globs are matched again for new files."""
    poll_interval: Duration = Duration(0.25)
    """How often files are checked for new data when inotify is off or misses a change."""
    inotify: bool = True
    """Wake up on inotify events instead of waiting for the next poll (Linux)."""
    max_open_files: int = 1024
    """Open descriptors at most; with more files, they take turns."""
    max_line_bytes: ByteSize = ByteSize(256 * 1024)
    """Longer lines are cut to this size, marked truncated: true and counted; the offsets after them stay exact."""
    read_bytes: ByteSize = ByteSize(256 * 1024)
    """Bytes read from one file per round, so a chatty file cannot starve the others."""
    rotate_wait: Duration = Duration(5.0)
    """How long a renamed or deleted file is still read to its end."""
    partial_flush_timeout: Duration = Duration(4.0)
    """A partial record nothing completes (a CRI P line, a Docker piece without its newline) is emitted after this long,
    marked partial: true (Fluent Bit's docker_mode_flush).
    """
    checkpoint_grace: Duration = Duration(3600.0)
    """Checkpoints of files not seen for this long are forgotten."""
    multiline: MultilineConfig | None = None
    """Joins continuation lines (stack traces) into one event; none by default."""


@register("source", "tail", TailConfig, "Tails log files: Docker json-file, CRI or plain lines.")
class TailSource:
    """Discovers, reads and checkpoints files; see the module docstring for the guarantees."""

    output_type = "logs"

    def __init__(self, config: TailConfig, ctx: BuildContext) -> None:
        if not config.include:
            raise BuildError("include must name at least one glob")
        if config.max_open_files < 1:
            raise BuildError("max_open_files must be at least 1")
        self.config = config
        self.files: dict[str, TailedFile] = {}  # by key, open or parked
        # new (path, group, at start-up, watched directory), and parked
        self.waiting: deque[tuple[str, str, bool, str] | TailedFile] = deque()
        self.stats: ComponentStats = ctx.stats
        self.store: CheckpointStore | None = None
        self._id = ctx.component_id
        self._store_dir = ctx.data_dir / "tail" / ctx.component_id
        self._round = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the checkpoints; a directory that cannot hold them stops start-up with one line."""
        store = CheckpointStore(self._store_dir, grace=self.config.checkpoint_grace,
                                report=partial(self.stats.error, stage="receiving"))
        try:
            store.load()
        except OSError as exc:
            raise StartupError(f'source "{self._id}": cannot keep checkpoints in {self._store_dir}: '
                               f"{exc.strerror or exc}; check that data_dir is a writable directory") from None
        self.store = store

    async def run(self, ctx: SourceContext) -> None:
        self.stats.gauges.update(files_open=self._open_count, files_waiting=lambda: len(self.waiting),
                                 checkpoint_lag_bytes=self._checkpoint_lag)
        if self.store is None:
            await self.start()
        assert self.store is not None
        wakeup = Wakeup(self.config.inotify)
        next_scan = next_housekeeping = 0.0
        first_scan = True
        try:
            while not ctx.shutdown.is_set():
                now = time.monotonic()
                if now >= next_scan:
                    self._scan(first_scan, wakeup)
                    first_scan = False
                    next_scan = now + self.config.glob_interval
                progressed = await self._read_round(ctx)
                if now >= next_housekeeping:  # stat and fingerprint checks: at most once a poll interval
                    await self._housekeeping(ctx, now)
                    next_housekeeping = now + self.config.poll_interval
                if not progressed:
                    await wakeup.wait(min(self.config.poll_interval, max(0.0, next_scan - time.monotonic())),
                                      ctx.shutdown)
            await self._wait_for_acks()
        finally:
            wakeup.close()
            for tailed in self.files.values():
                tailed.close()
                container_logs.closed(tailed.extra.get("kubernetes"))
            self.store.close()

    async def _wait_for_acks(self) -> None:
        """Let in-flight batches finish so their offsets are committed (the drain deadline bounds this)."""
        for tailed in list(self.files.values()):
            await tailed.acks.wait_idle()

    # -- discovery --------------------------------------------------------------------------

    def _scan(self, first_scan: bool, wakeup: Wakeup) -> None:
        """Match globs: open new files, notice rotated and deleted ones."""
        found: dict[str, tuple[str, str]] = {}  # key -> (path, group)
        for pattern in self.config.include:
            for path in glob.glob(pattern):
                if any(fnmatch.fnmatch(path, ex) for ex in self.config.exclude):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.setdefault(file_key(st), (path, pattern))
        now = time.monotonic()
        for key, tailed in self.files.items():
            if key in found:
                tailed.path = found[key][0]
            elif tailed.rotated_at is None:
                tailed.rotated_at = now
                kind = "delete" if not os.path.exists(tailed.path) else "rename"
                self.stats.count("rotations", kind=kind)
        waiting_paths = {item[0] for item in self.waiting if isinstance(item, tuple)}
        for key, (path, group) in found.items():
            if key not in self.files and path not in waiting_paths:
                directory = os.path.dirname(os.path.realpath(path))
                self.waiting.append((path, group, first_scan, directory))
                wakeup.watch(directory)
        self._open_waiting()
        wakeup.retain({f.directory for f in self.files.values()}
                      | {item[3] for item in self.waiting if isinstance(item, tuple)})
        assert self.store is not None
        self.store.touch(list(found), time.time())

    def _open_waiting(self) -> None:
        room = self.config.max_open_files - self._open_count()
        while self.waiting and room > 0:
            item = self.waiting.popleft()
            opened = self._unpark(item) if isinstance(item, TailedFile) else self._open_new(*item)
            room -= opened

    def _checkpoint_lag(self) -> int:
        """Bytes read but not yet acknowledged end to end (what a crash now would re-read)."""
        return sum(max(0, f.read_offset - f.committed) for f in self.files.values())

    def _open_count(self) -> int:
        return sum(1 for f in self.files.values() if f.fd >= 0)

    def _open_new(self, path: str, group: str, at_startup: bool, directory: str) -> bool:
        try:
            tailed = TailedFile.open(path, group, self.config.max_line_bytes)
        except OSError as exc:
            self.stats.error("open_failed", "receiving")
            log.warning("cannot open file", extra={"component_id": self.stats.component_id, "path": path,
                                                   "error": exc.strerror})
            return False
        if tailed.key in self.files:  # raced with a rename: already followed under another name
            tailed.close()
            return False
        tailed.opened_at = time.monotonic()
        tailed.directory = directory
        tailed.extra = self._fields_for(path, int(tailed.key.rsplit(":", 1)[1]))
        tailed.acks = OrderedAcks(partial(self._commit, tailed))
        self._position(tailed, at_startup)
        self.files[tailed.key] = tailed
        container_logs.opened(tailed.extra.get("kubernetes"))  # the pod cache keeps its pod while it is read
        return True

    def _fields_for(self, path: str, inode: int) -> dict[str, Any]:
        """Fields every event of a file carries: path and inode (with ``offset``, where it was read)."""
        fields: dict[str, Any] = {"file": path, "inode": inode}
        k8s = kubernetes_fields(path)
        if k8s is not None:
            fields["kubernetes"] = k8s
        return fields

    def _position(self, tailed: TailedFile, at_startup: bool) -> None:
        """Where reading starts: the checkpoint, else the start or (for files present at start-up) the end."""
        assert self.store is not None
        entry = self.store.get(tailed.key)
        size = tailed.size()
        if entry is not None and tailed.matches(entry.fp_len, entry.fp):
            _seek_to_line(tailed, entry.offset if entry.offset <= size else 0)  # (read_from: end records mid-line)
        elif at_startup and self.config.read_from == "end" and size and self.store.first_start:
            _seek_to_line(tailed, size)
            # recorded at once: after a restart, a file with no record is read from its start
            self.store.commit(Entry(tailed.key, tailed.path, tailed.fp_len, tailed.fp, size, time.time()))
        else:
            tailed.seek(0)

    def _unpark(self, tailed: TailedFile) -> bool:
        """Reopen a parked file by its path or, renamed while parked, under its new name in the same directory.

        As for open files, a file is the same only if its dev:inode and its fingerprint match: a new file
        that reuses the inode of one deleted while parked is a new file, read from its start.
        """
        fd = _open_if(tailed.path, tailed)
        if fd < 0:
            renamed = _renamed(tailed.path, tailed.key)
            fd = _open_if(renamed, tailed) if renamed is not None else -1
            if fd < 0:
                tailed.finished = True  # deleted while parked: what it still had is out of reach
                self.stats.error("rotated_while_parked", "receiving")
                return False
            assert renamed is not None
            tailed.path = renamed
            if tailed.rotated_at is None:
                tailed.rotated_at = time.monotonic()  # read to its end, as any rotated file
        tailed.fd = fd
        tailed.opened_at = time.monotonic()
        return True

    # -- reading ----------------------------------------------------------------------------

    async def _read_round(self, ctx: SourceContext) -> bool:
        """One read from every open file with new data, starting one file later each round."""
        files = [f for f in self.files.values() if f.fd >= 0]
        if not files:
            return False
        self._round += 1
        start = self._round % len(files)
        progressed = False
        for tailed in files[start:] + files[:start]:
            if ctx.shutdown.is_set():
                break
            chunk = tailed.read(self.config.read_bytes)
            tailed.eof = len(chunk) < self.config.read_bytes
            if not chunk:
                continue
            progressed = True
            await self._emit(ctx, tailed, *self._decode(tailed, chunk), nbytes=len(chunk))
        return progressed

    def _decode(self, tailed: TailedFile, chunk: bytes) -> tuple[list[dict[str, Any]], int]:
        """Events completed by ``chunk`` and the offset up to which the file is fully turned into events."""
        splitter = tailed.splitter
        lines = splitter.feed(chunk)
        if splitter.truncated:
            self.stats.count("truncations", splitter.truncated, what="line")
            splitter.truncated = 0
        if tailed.fp_len < FINGERPRINT_BYTES:
            tailed.refresh_fingerprint()
        if not lines:
            return [], self._safe_offset(tailed)
        self.stats.count("read_lines", len(lines), group=tailed.group)
        return self._decode_lines(tailed, lines)

    def _decode_lines(self, tailed: TailedFile, lines: list[bytes]) -> tuple[list[dict[str, Any]], int]:
        """Decode what the splitter just returned (its ``starts`` and ``cut`` describe ``lines``)."""
        decoder = tailed.decoder
        if decoder is None:
            tailed.format = self.config.format if self.config.format != "auto" else detect_format(lines[0])
            decoder = tailed.decoder = DECODERS[tailed.format](tailed.extra, self.config.max_line_bytes)
            if self.config.multiline is not None:
                tailed.multiline = Multiline(self.config.multiline)
        events: list[dict[str, Any]] = []
        errors, truncated = decoder.errors, decoder.truncated
        splitter = tailed.splitter
        starts = splitter.starts(lines)
        if splitter.cut:
            safe = decoder.decode_cut(lines, starts, splitter.cut, events)
        else:
            safe = decoder.decode(lines, starts, events)
        tailed.decoder_safe = safe
        if decoder.errors != errors:
            self.stats.error("parse_failed", "receiving", decoder.errors - errors)
        if decoder.truncated != truncated:
            self.stats.count("truncations", decoder.truncated - truncated, what="message")
        if tailed.multiline is not None:
            grouped: list[dict[str, Any]] = []
            tailed.multiline.feed(events, grouped, time.monotonic())
            events = grouped
            safe = tailed.multiline.safe_offset(safe)
        return events, safe

    @staticmethod
    def _safe_offset(tailed: TailedFile) -> int:
        """Offset below which every byte is in an emitted event (nothing held by decoder or multiline)."""
        safe = tailed.decoder_safe
        return tailed.multiline.safe_offset(safe) if tailed.multiline is not None else safe

    async def _emit(self, ctx: SourceContext, tailed: TailedFile, events: list[dict[str, Any]], offset: int,
                    nbytes: int) -> None:
        stats = self.stats
        stats.received_bytes += nbytes
        stats.count("read_bytes", nbytes, group=tailed.group)
        if not events:
            return
        stats.received_events += len(events)
        batch = Batch(events, Kind.LOGS, decoded_bytes(nbytes or sum(len(e.get("message", "")) for e in events),
                                                       len(events)))  # what the dicts hold, not just the bytes read
        batch.acks.append(tailed.acks.track(offset))
        await ctx.out.send(batch)

    def _commit(self, tailed: TailedFile, offset: int) -> None:
        tailed.committed = offset
        if self.store is not None:
            self.store.commit(Entry(tailed.key, tailed.path, tailed.fp_len, tailed.fp, offset, time.time()))

    # -- rotation, truncation, timeouts, fairness -------------------------------------------

    async def _housekeeping(self, ctx: SourceContext, now: float) -> None:
        for tailed in list(self.files.values()):
            if tailed.fd < 0:
                continue
            if tailed.decoder is not None:
                await self._flush_expired(ctx, tailed, now)
            if not tailed.eof:
                continue
            if tailed.rotated_at is not None:
                if now - tailed.rotated_at >= self.config.rotate_wait:
                    await self._finish(ctx, tailed)
            elif self._truncated(tailed):
                await self._restart_truncated(ctx, tailed)
        self._forget_finished()
        self._share_descriptors(now)
        self._open_waiting()

    async def _flush_expired(self, ctx: SourceContext, tailed: TailedFile, now: float) -> None:
        """Emit the partial records (marked ``partial``) and multiline groups that nothing extended in time.

        What is emitted is committed once delivered, as any event; what is still held at shutdown is not, so a
        restart reads it again.
        """
        assert tailed.decoder is not None
        held: list[dict[str, Any]] = []
        safe = tailed.decoder.flush_expired(now - self.config.partial_flush_timeout, held)
        if safe is not None:
            tailed.decoder_safe = safe
        events = held
        if tailed.multiline is not None:
            events = []
            tailed.multiline.feed(held, events, now)
            tailed.multiline.flush_expired(now, events)
        if events:
            await self._emit(ctx, tailed, events, self._safe_offset(tailed), 0)

    def _truncated(self, tailed: TailedFile) -> bool:
        """Copytruncate: the file is shorter than what was read, or its first bytes changed."""
        shrunk = tailed.size() < tailed.read_offset
        return shrunk or (tailed.fp_len > 0 and not tailed.matches(tailed.fp_len, tailed.fp))

    async def _flush_held(self, ctx: SourceContext, tailed: TailedFile) -> None:
        """Emit what the file will never complete: its unterminated last line and held partial records."""
        events: list[dict[str, Any]] = []
        tail_lines = tailed.splitter.flush()
        if tail_lines:
            events, _ = self._decode_lines(tailed, tail_lines)
        if tailed.decoder is not None:
            held: list[dict[str, Any]] = []
            tailed.decoder.flush(held)
            if tailed.multiline is not None:
                tailed.multiline.feed(held, events, time.monotonic())
                tailed.multiline.flush(events)
            else:
                events.extend(held)
        tailed.decoder_safe = tailed.read_offset
        await self._emit(ctx, tailed, events, tailed.read_offset, 0)

    async def _finish(self, ctx: SourceContext, tailed: TailedFile) -> None:
        await self._flush_held(ctx, tailed)
        tailed.close()
        tailed.finished = True

    async def _restart_truncated(self, ctx: SourceContext, tailed: TailedFile) -> None:
        self.stats.count("rotations", kind="truncate")
        await self._flush_held(ctx, tailed)
        tailed.fp_len, tailed.fp = 0, ""
        tailed.refresh_fingerprint()
        tailed.read_offset = tailed.decoder_safe = tailed.splitter.offset = 0

    def _forget_finished(self) -> None:
        for key, tailed in list(self.files.items()):
            if tailed.finished and not tailed.acks.in_flight:
                del self.files[key]
                container_logs.closed(tailed.extra.get("kubernetes"))

    def _share_descriptors(self, now: float) -> None:
        """With files waiting for a descriptor, park open ones at the back of the queue (their state is kept).

        Idle files at their end go first; then files that had a descriptor for DESCRIPTOR_SLICE or longer,
        longest first, so that files which never reach their end cannot keep the others from being read.
        Renamed or deleted files keep theirs until they are read to the end.
        """
        excess = self._open_count() - self.config.max_open_files + len(self.waiting)
        if excess <= 0:
            return
        idle: list[TailedFile] = []
        busy: list[TailedFile] = []
        for f in self.files.values():
            if f.fd >= 0 and f.rotated_at is None and _key_of(f.path) == f.key:  # open, not renamed since
                if f.eof and not f.splitter.pending:
                    idle.append(f)
                elif now - f.opened_at >= DESCRIPTOR_SLICE:
                    busy.append(f)
        busy.sort(key=lambda f: f.opened_at)
        for tailed in (idle + busy)[:excess]:
            tailed.close()
            self.waiting.append(tailed)


def _key_of(path: str) -> str | None:
    """``dev:inode`` of what ``path`` leads to now, or None."""
    try:
        return file_key(os.stat(path))
    except OSError:
        return None


def _seek_to_line(tailed: TailedFile, offset: int) -> None:
    """Read on from ``offset``; if it falls inside a line, from the start of the next one."""
    tailed.seek(offset)
    if offset and os.pread(tailed.fd, 1, offset - 1) != b"\n":
        tailed.splitter.skip_to_next_line()


def _open_if(path: str, tailed: TailedFile) -> int:
    """A descriptor on ``path`` if it is still the file ``tailed`` (dev:inode and fingerprint), else -1."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1
    if file_key(os.fstat(fd)) != tailed.key or not starts_with(fd, tailed.fp_len, tailed.fp):
        os.close(fd)
        return -1
    return fd


def _renamed(path: str, key: str) -> str | None:
    """Where the file ``key`` names went, if rotation renamed it within its directory (or its link target's)."""
    inode = int(key.rsplit(":", 1)[1])
    for directory in dict.fromkeys((os.path.dirname(os.path.realpath(path)), os.path.dirname(path))):
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.inode() == inode and _key_of(entry.path) == key:
                        return entry.path
        except OSError:
            continue
    return None
