"""Compression levels of aiokafka's record batches, set to librdkafka's defaults (what Fluent Bit and most
clients send): lz4 at its fast level, gzip at zlib's default 6.

aiokafka compresses lz4 and gzip at level 9 (lz4 HC): on 200-byte log lines that is about 25 ms of CPU per MiB
of records for lz4, against 1 ms at the fast level, for a frame about 1.7 times smaller; the producer does it
on the event loop. aiokafka takes no level, so :func:`use_default_levels` replaces its two encoders in the
modules that build record batches (the C one and the pure-Python one). zstd (level 3) and snappy are kept.
These are aiokafka internals (pyproject pins the tested minor version): a module that no longer has the two
encoders is left alone and named in a warning (its batches stay correct, at level 9).
"""

from __future__ import annotations

import gzip
import logging
from typing import Any

import cramjam

LZ4_LEVEL = 0  # LZ4F's default preferences: the fast compressor
GZIP_LEVEL = 6
ENCODERS = ("lz4_encode", "gzip_encode")  # the names aiokafka's record batch builders call

log = logging.getLogger("agent.kafka")

_installed = False


def lz4_frame(payload: Any, level: int = LZ4_LEVEL) -> bytes:
    """An LZ4 frame as Kafka reads it (independent blocks, no content checksum: KIP-57)."""
    compressor = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
    compressor.compress(payload)
    return bytes(compressor.finish())


def gzip_member(payload: Any, compresslevel: int | None = None) -> bytes:
    """A gzip member at :data:`GZIP_LEVEL` (no file name, no time: the same bytes for the same records)."""
    return gzip.compress(bytes(payload), compresslevel=compresslevel or GZIP_LEVEL, mtime=0)


def use_default_levels() -> None:
    """Make aiokafka's record batch builders use :func:`lz4_frame` and :func:`gzip_member` (idempotent)."""
    global _installed
    if _installed:
        return
    from aiokafka.record import default_records as python_records

    modules: list[Any] = [python_records]
    try:
        from aiokafka.record._crecords import default_records as c_records

        modules.append(c_records)
    except ImportError:  # aiokafka without its C extension
        pass
    for module in modules:
        replace_encoders(module)
    _installed = True


def replace_encoders(module: Any) -> bool:
    """Point ``module``'s two encoders at :func:`lz4_frame` and :func:`gzip_member`; False (and a warning) when
    it does not have them (an aiokafka that changed its internals)."""
    missing = [name for name in ENCODERS if not callable(getattr(module, name, None))]
    if missing:
        log.warning("aiokafka changed: its record batches keep aiokafka's compression levels (slower lz4 and gzip)",
                    extra={"aiokafka_module": module.__name__, "missing": missing})
        return False
    module.lz4_encode = lz4_frame
    module.gzip_encode = gzip_member
    return True
