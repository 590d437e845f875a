"""Sink `file`: NDJSON or text files, path templated by time and event fields, optionally compressed.

Each batch is written and flushed to the OS before it is acknowledged, so a
crash of the agent loses nothing acknowledged. Compressed streams are
sync-flushed per batch for the same reason; after a crash a file may lack its
trailer but every acknowledged batch is decodable. A file that grows past
``max_bytes`` is closed and renamed ``<path>.1``, ``<path>.2``... (the highest
number is the newest) and a new one started.

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
import re
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import zstandard

from agent.codecs.encoding import encode_batch
from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.config.units import ByteSize, Duration
from agent.core.batch import Batch, Kind
from agent.core.component import SinkContext
from agent.core.errors import BuildError
from agent.sinks.delivery import deliver_each

log = logging.getLogger("agent.sinks.file")

_FIELD = re.compile(r"\{\{\s*([A-Za-z0-9_.@-]+)\s*\}\}")


class FileConfig(SinkConfig, tag="file"):
    """Write events to files; ``path`` may hold strftime codes and ``{{ field }}`` templates."""

    path: str
    encoding: Literal["json", "text"] = "json"
    compression: Literal["none", "gzip", "zstd"] = "none"
    max_bytes: ByteSize | None = None
    idle_timeout: Duration = Duration(30.0)


class PathTemplate:
    """Renders a path from the current time and, if it names any, the event's fields."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.fields = [name.split(".") for name in _FIELD.findall(template)]

    def render(self, event: Any = None, now: float | None = None) -> str:
        path = time.strftime(self.template, time.gmtime(now)) if "%" in self.template else self.template
        if self.fields:
            path = _FIELD.sub(lambda m: _lookup(event, m.group(1).split(".")), path)
        return path


def _lookup(event: Any, keys: list[str]) -> str:
    value = event
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return "unknown"
        value = value[key]
    return str(value).replace("/", "_")


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
    """One output file with its compressor and the bytes written to it."""

    def __init__(self, path: str, compression: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fh = open(path, "ab")
        self.size = self.fh.tell()
        self.compression = compression
        if self.size and compression == "none" and not _ends_with_newline(path):
            self.fh.write(b"\n")  # a line torn by a crash stays apart from the next one
            self.size += 1
        self.last_write = time.monotonic()
        if compression == "gzip":
            self._gzip = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif compression == "zstd":
            self._zstd = zstandard.ZstdCompressor(level=3).compressobj()

    def write(self, data: bytes) -> None:
        if self.compression == "gzip":
            data = self._gzip.compress(data) + self._gzip.flush(zlib.Z_SYNC_FLUSH)
        elif self.compression == "zstd":
            data = self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        self.fh.write(data)
        self.fh.flush()
        self.size += len(data)
        self.last_write = time.monotonic()

    def close(self) -> None:
        if self.compression == "gzip":
            self.fh.write(self._gzip.flush())
        elif self.compression == "zstd":
            self.fh.write(self._zstd.flush())
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
        self.files: dict[str, OpenFile] = {}
        self.closed: set[str] = set()  # compressed files this instance finished: no need to check them again
        self.stats = ctx.stats
        self.component_id = ctx.component_id

    async def healthcheck(self) -> None:
        return None

    def _groups(self, batch: Batch) -> dict[str, Batch]:
        if not self.template.fields or batch.kind is not Kind.LOGS:
            return {self.template.render(None): batch}
        parts: dict[str, list[Any]] = defaultdict(list)
        for event in batch.events:
            parts[self.template.render(event)].append(event)
        if len(parts) == 1:
            return {next(iter(parts)): batch}
        share = batch.byte_size // max(1, len(batch.events))
        return {path: Batch(events, batch.kind, share * len(events)) for path, events in parts.items()}

    async def _write(self, batch: Batch) -> int:
        written = 0
        for path, part in self._groups(batch).items():
            data = encode_batch(part, self.config.encoding)
            out = self.files.get(path) or await self._open(path)
            out.write(data)
            written += len(data)
            if self.config.max_bytes is not None and out.size >= self.config.max_bytes:
                self._rotate(out)
        self._close_idle()
        return written

    async def _open(self, path: str) -> OpenFile:
        compression = self.config.compression
        if compression != "none" and path not in self.closed and _size(path) > 0:
            await self._set_aside_if_torn(path, compression)
        out = self.files[path] = OpenFile(path, compression)
        return out

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
        cutoff = time.monotonic() - self.config.idle_timeout
        for out in list(self.files.values()):
            if out.last_write < cutoff:
                self._close(out)

    async def run(self, ctx: SinkContext) -> None:
        try:
            await deliver_each(ctx, self._write)
        finally:
            for out in self.files.values():
                out.close()
            self.files.clear()
