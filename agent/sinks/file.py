"""Sink `file`: NDJSON or text files, path templated by time and event fields, optionally compressed.

Each batch is written to the OS before it is acknowledged, so a crash of the
agent loses nothing acknowledged. Compressed, each batch is one complete gzip
member or zstd frame, so a file always ends cleanly between batches. A write
that fails (a full disk) is undone: every file the batch touched is cut back to
where it ended before, and the batch is written again, whole, when retried.
A file that grows past ``max_bytes`` is closed and renamed ``<path>.1``,
``<path>.2``... (the highest number is the newest) and a new one started.

Strftime codes in ``path`` are rendered from the event's time (as the
``elasticsearch`` sink names indices), falling back to now. Field values are
made safe for a path: ``/`` and NUL become ``_``, a value that is empty or only
dots becomes ``_``, long values are cut (counted as ``path_sanitised`` errors).
At most ``max_open_files`` stay open (the least recently written is closed
first), and files idle for ``idle_timeout`` are closed.

A compressed file is continued (a new gzip member or zstd frame appended)
only if every member or frame in it is complete. One that a crash left
unfinished is renamed aside the same way and counted (``torn_files``):
appending to it would make everything after the tear unreadable to
``zcat`` and ``zstdcat``, while aside it still decodes up to the tear.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import zstandard

from agent.codecs.encoding import dumps_lenient, encode_batch
from agent.codecs.template import EventTemplate
from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.config.units import ByteSize, Duration
from agent.core.batch import Batch, Kind
from agent.core.component import SinkContext
from agent.core.errors import BuildError
from agent.delivery.http import compress_async
from agent.sinks.delivery import deliver_each

log = logging.getLogger("agent.sinks.file")

_PATH_UNSAFE = str.maketrans({"/": "_", "\\": "_", **{chr(c): "_" for c in (*range(32), 127)}})
_MAX_VALUE_BYTES = 200  # a file name is at most 255 bytes


class FileConfig(SinkConfig, tag="file"):
    """Write events to files; ``path`` may hold strftime codes (the event's time) and ``{{ field }}`` templates.

    With ``compression`` every batch is one complete gzip member or zstd frame, and a failed write is cut back, so a
    file never holds a broken or repeated batch. Files rotate to ``.1``, ``.2``, ... past ``max_bytes``.
    """

    path: str
    """File to write; strftime codes take the event's time (else now), {{ field }} templates its values, made safe for a
    path.
    """
    encoding: Literal["json", "text"] = "json"
    """json: one JSON object per line; text: the message per line."""
    compression: Literal["none", "gzip", "zstd"] = "none"
    """gzip or zstd: each batch is one complete member or frame."""
    max_bytes: ByteSize | None = None
    """Rotate a file to .1, .2, ... past this size; none: never."""
    idle_timeout: Duration = Duration(30.0)
    """Close a file nothing was written to for this long."""
    max_open_files: int = 256
    """Files kept open at most; the least recently written is closed first."""


class PathTemplate(EventTemplate):
    """Renders a path from the event's time (else now) and fields; ``sanitised`` counts values made safe."""

    def __init__(self, template: str) -> None:
        super().__init__(template, self._path_safe)
        self.sanitised = 0

    def _path_safe(self, value: Any) -> str:
        """``value`` as one path component that stays in its directory: no ``/``, ``\\``, control characters,
        ``..`` or empty name; a value that is not text is its JSON."""
        if value is None:
            return "unknown"
        text = value if type(value) is str else dumps_lenient(value).decode()  # JSON, not a Python repr
        safe = text.translate(_PATH_UNSAFE)
        if len(safe) > _MAX_VALUE_BYTES // 4 and len(encoded := safe.encode()) > _MAX_VALUE_BYTES:
            safe = encoded[:_MAX_VALUE_BYTES].decode("utf-8", "ignore")
        if not safe.strip("."):  # "", ".", "..": a name that is no file of its own
            safe = "_"
        if safe != text:
            self.sanitised += 1
        return safe


def _compressed_file_is_complete(path: str, compression: str) -> bool:
    """Whether the file decodes to its end as complete gzip members or zstd frames (read once, output discarded).

    Input goes in small pieces (and gzip output is capped) so memory stays bounded whatever the ratio.
    """
    new: Callable[[], Any] = (
        (lambda: zlib.decompressobj(31)) if compression == "gzip" else zstandard.ZstdDecompressor().decompressobj)
    decoder, fed = new(), False  # fed: the current member or frame has begun
    with open(path, "rb") as f:
        while chunk := f.read(1 << 14):
            while chunk:
                try:
                    if compression == "gzip":
                        decoder.decompress(chunk, 1 << 20)
                        chunk = decoder.unconsumed_tail
                    else:  # no output cap: small input pieces bound the output (an RLE block is 3 bytes)
                        piece, chunk = chunk[:1024], chunk[1024:]
                        decoder.decompress(piece)
                except (zlib.error, zstandard.ZstdError):
                    return False
                fed = True
                if decoder.eof:  # a member or frame ended: what follows starts the next one
                    chunk = decoder.unused_data + chunk
                    decoder, fed = new(), False
    if fed and compression == "gzip":  # capped output can hold a member's end back: drain it
        while not decoder.eof and decoder.decompress(b"", 1 << 20):
            pass
        return decoder.eof and not decoder.unused_data  # (a next member here: cautious, called torn)
    return not fed


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _move_aside(path: str) -> str:
    """Rename ``path`` to the first free ``<path>.N``; return that name."""
    n = 1
    while os.path.exists(f"{path}.{n}"):
        n += 1
    os.rename(path, f"{path}.{n}")
    return f"{path}.{n}"


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class OpenFile:
    """One output file (unbuffered: what :meth:`write` returns from is with the OS) and its size."""

    def __init__(self, path: str, compression: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fh = open(path, "ab", buffering=0)
        self.size = os.fstat(self.fh.fileno()).st_size
        self.compression = compression
        if self.size and compression == "none" and not _ends_with_newline(path):
            self.append(b"\n")  # a line torn by a crash stays apart from the next one
        self.last_write = time.monotonic()

    async def write(self, data: bytes) -> None:
        """Append ``data``, compressed as one complete gzip member or zstd frame (as HTTP bodies are, in a
        worker thread when large); on an error, see :meth:`cut`."""
        framed, _ = await compress_async(data, self.compression)
        self.append(framed)

    def append(self, data: bytes) -> None:
        """Append bytes as they are."""
        view = memoryview(data)
        while view:
            view = view[self.fh.write(view):]
        self.size += len(data)
        self.last_write = time.monotonic()

    def cut(self, size: int) -> None:
        """Truncate the file back to ``size`` (where it ended cleanly), closed or not."""
        os.truncate(self.path, size)
        self.size = size

    def close(self) -> None:
        self.fh.close()


@register("sink", "file", FileConfig, "Writes events to local files.")
class FileSink:
    """Appends each batch to the file(s) its path template renders to."""

    input_types = FileConfig.input_types

    def __init__(self, config: FileConfig, ctx: BuildContext) -> None:
        if not config.path:
            raise BuildError("path must not be empty")
        self.config = config
        self.template = PathTemplate(config.path)
        self.partition_key = self.template.partition_key()
        self.files: dict[str, OpenFile] = {}  # in the order they were last written to
        self._writing = False
        self.closed: set[str] = set()  # compressed files this instance finished: no need to check them again
        self.stats = ctx.stats
        self.component_id = ctx.component_id

    async def healthcheck(self) -> None:
        return None

    def _groups(self, batch: Batch) -> dict[str, Batch]:
        if self.template.static or batch.kind is not Kind.LOGS:
            return {self.template.render(None): batch}
        parts: dict[str, list[Any]] = defaultdict(list)
        key = self.partition_key
        try:
            for event in batch.events:
                parts[key(event)].append(event)
        except Exception:  # an odd event must not stop the sink: it goes to the path of now, counted
            parts.clear()
            for event in batch.events:
                parts[self._safe_key(event)].append(event)
        if self.template.sanitised:
            self.stats.error("path_sanitised", "sending", self.template.sanitised)
            self.template.sanitised = 0
        if len(parts) == 1:
            return {next(iter(parts)): batch}
        share = batch.byte_size // max(1, len(batch.events))
        return {path: Batch(events, batch.kind, share * len(events)) for path, events in parts.items()}

    def _safe_key(self, event: Any) -> str:
        try:
            return self.partition_key(event)
        except Exception:
            self.stats.error("path_failed", "sending")
            return self.template.render(None)

    async def _write(self, batch: Batch) -> int:
        """Write every part of the batch or none: a failure cuts each file touched back to its previous end."""
        written = 0
        touched: dict[str, tuple[OpenFile, int]] = {}  # path: (file, its size before this batch)
        self._writing = True
        try:
            for path, part in self._groups(batch).items():
                data = encode_batch(part, self.config.encoding)
                out = self.files.pop(path, None) or await self._open(path)
                self.files[path] = out  # the most recently written last: the first one is closed first
                touched.setdefault(path, (out, out.size))
                await out.write(data)
                written += len(data)
        except BaseException:
            self._undo(touched.values())
            raise
        finally:
            self._writing = False
        if self.config.max_bytes is not None:
            for out, _ in touched.values():
                if out.size >= self.config.max_bytes and self.files.get(out.path) is out:
                    self._rotate(out)
        self._close_idle()
        return written

    def _undo(self, touched: Iterable[tuple[OpenFile, int]]) -> None:
        for out, size in touched:
            try:
                out.cut(size)
            except OSError as exc:  # closed without the "ends cleanly" mark: its next opening checks it
                self.stats.error("undo_failed", "sending")
                log.error("cannot cut a file back after a failed write; it may repeat or tear a batch",
                          extra={"component_id": self.component_id, "path": out.path, "error": exc.strerror})
                if self.files.get(out.path) is out:
                    del self.files[out.path]
                out.close()
                self.closed.discard(out.path)

    async def _open(self, path: str) -> OpenFile:
        """Open ``path`` (not yet in ``files``), closing the least recently written file if at the bound."""
        compression = self.config.compression
        if compression != "none" and path not in self.closed and _size(path) > 0:
            await self._set_aside_if_torn(path, compression)
        while len(self.files) >= max(1, self.config.max_open_files):
            self._close(next(iter(self.files.values())))
        return OpenFile(path, compression)

    async def _set_aside_if_torn(self, path: str, compression: str) -> None:
        """Move ``path`` aside if a crash left its last member or frame unfinished; if it cannot be read or
        renamed, say so and append to it (as before this check existed) rather than stall the sink."""
        try:  # reading a large file takes a while: in a thread (zlib and zstd release the GIL)
            if await asyncio.to_thread(_compressed_file_is_complete, path, compression):
                return
            aside = _move_aside(path)
        except OSError as exc:
            self.stats.error("torn_check_failed", "sending")
            log.warning("cannot check or move aside an existing compressed file; appending to it",
                        extra={"component_id": self.component_id, "path": path, "error": exc.strerror})
            return
        self.stats.count("torn_files")
        log.warning("a compressed file was left unfinished (a crash?): moved aside, starting a new one",
                    extra={"component_id": self.component_id, "path": path, "moved_to": aside})

    def _rotate(self, out: OpenFile) -> None:
        self._close(out)
        _move_aside(out.path)

    def _close(self, out: OpenFile) -> None:
        out.close()
        del self.files[out.path]
        if out.compression != "none":
            if len(self.closed) >= 10_000:
                self.closed.clear()
            self.closed.add(out.path)

    def _close_idle(self) -> None:
        if self._writing:
            return
        cutoff = time.monotonic() - self.config.idle_timeout
        for out in list(self.files.values()):
            if out.last_write < cutoff:
                self._close(out)

    async def _close_idle_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._close_idle()

    async def run(self, ctx: SinkContext) -> None:
        closer = asyncio.create_task(self._close_idle_every(max(0.1, self.config.idle_timeout / 2)))
        try:
            await deliver_each(ctx, self._write)
        finally:
            closer.cancel()
            for out in self.files.values():
                out.close()
            self.files.clear()
