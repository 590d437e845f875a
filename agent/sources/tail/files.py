"""One tailed file: its identity, read position, framing and decoding state."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from agent.codecs.container import LineDecoder
from agent.codecs.lines import LineSplitter
from agent.codecs.multiline import Multiline
from agent.core.ack import OrderedAcks

FINGERPRINT_BYTES = 256
# /var/log/containers/<pod>_<namespace>_<container>-<64 hex container id>.log
_K8S_NAME = re.compile(r"^(?P<pod>[^_]+)_(?P<namespace>[^_]+)_(?P<container>.+)-(?P<container_id>[0-9a-f]{64})\.log$")


def kubernetes_fields(path: str) -> dict[str, str] | None:
    """Pod, namespace, container and container id from a kubelet log file name, if it is one."""
    match = _K8S_NAME.match(os.path.basename(path))
    return match.groupdict() if match else None


def file_key(st: os.stat_result) -> str:
    """``dev:inode``: what names a file, whatever path leads to it."""
    return f"{st.st_dev}:{st.st_ino}"


def fingerprint(fd: int, length: int) -> str:
    """Digest of the first ``length`` bytes of the open file."""
    return hashlib.blake2b(os.pread(fd, length, 0), digest_size=8).hexdigest() if length else ""


def starts_with(fd: int, fp_len: int, fp: str) -> bool:
    """Whether the fingerprint ``fp`` of ``fp_len`` leading bytes was taken from the open file's first bytes."""
    return fp_len <= os.fstat(fd).st_size and fingerprint(fd, fp_len) == fp


@dataclass(slots=True)
class TailedFile:
    """A file being read: where it is, what has been read, what is held, what is committed.

    ``read_offset`` is how far the file has been read (the splitter keeps the
    bytes of an unterminated line, and where each line starts).
    ``acks`` turns sink acknowledgements into ``committed``, the offset a
    restart resumes from.
    """

    key: str  # "dev:inode"
    path: str
    group: str  # the include pattern that found it (a metrics label)
    fd: int
    fp_len: int
    fp: str
    read_offset: int
    splitter: LineSplitter
    decoder: LineDecoder | None = None  # chosen from the first line when format is auto
    multiline: Multiline | None = None
    acks: OrderedAcks[int] = field(default_factory=OrderedAcks)
    committed: int = 0
    format: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    decoder_safe: int = 0  # offset below which the decoder holds nothing
    rotated_at: float | None = None  # the path no longer leads here (renamed or deleted)
    eof: bool = False
    opened_at: float = 0.0  # monotonic time it last got a descriptor (opened, or unparked)
    finished: bool = False  # read to its end after rotation; forgotten once its acks are in
    directory: str = ""  # where inotify watches for it (its directory, links resolved)

    @classmethod
    def open(cls, path: str, group: str, max_line_bytes: int) -> TailedFile:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            fp_len = min(st.st_size, FINGERPRINT_BYTES)
            return cls(file_key(st), path, group, fd, fp_len, fingerprint(fd, fp_len), 0,
                       LineSplitter(max_line_bytes))
        except BaseException:
            os.close(fd)
            raise

    def matches(self, fp_len: int, fp: str) -> bool:
        """Whether a stored fingerprint was taken from this file's first bytes."""
        return starts_with(self.fd, fp_len, fp)

    def refresh_fingerprint(self) -> None:
        """Extend the fingerprint while the file is shorter than FINGERPRINT_BYTES."""
        if self.fp_len < FINGERPRINT_BYTES:
            size = os.fstat(self.fd).st_size
            if size > self.fp_len:
                self.fp_len = min(size, FINGERPRINT_BYTES)
                self.fp = fingerprint(self.fd, self.fp_len)

    def seek(self, offset: int) -> None:
        self.read_offset = self.committed = self.decoder_safe = self.splitter.offset = offset

    def read(self, size: int) -> bytes:
        data = os.pread(self.fd, size, self.read_offset)
        self.read_offset += len(data)
        return data

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
